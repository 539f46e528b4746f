"""The failure memory: every failure remembered, and the fix that worked tried first."""
