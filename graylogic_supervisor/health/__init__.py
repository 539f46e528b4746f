"""Component health: what is known, how it is checked, and who is told."""
