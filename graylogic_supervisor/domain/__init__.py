"""The shared vocabulary: values every package may import, and that import no package above.

Failures, action kinds and specs, execution outcomes, the failure memory's records,
and the states of executions, steps, incidents and recommendations as ``StrEnum``s
(equal to the strings the store keeps, so rows and JSON read the same as before).
"""
