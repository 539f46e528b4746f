"""How an execution ended, as the supervisor, memory, learning and status read it."""

from __future__ import annotations

from dataclasses import dataclass

MANUAL_INTERVENTION = "manual_intervention"
"""An execution's ``resolved_by`` once a technician resolved its failure by hand (the
learning spec's word): its ``what_fixed_it`` is then the technician's fix."""


@dataclass(frozen=True)
class FailedStep:
    """The step an unsuccessful execution ended on: the basis of its failure signature."""

    step_id: str
    action: str
    outcome: str  # failure | timeout | error


@dataclass(frozen=True)
class ExecutionOutcome:
    execution_id: str
    status: str
    resolved_by: str | None
    duration_seconds: float
    detail: str
    failed_step: FailedStep | None = None
