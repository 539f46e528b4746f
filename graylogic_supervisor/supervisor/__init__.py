"""The supervisor: from a component's failure to a recorded recovery."""
