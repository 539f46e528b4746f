"""How an execution ended, as the supervisor, memory, learning and status read it."""

from __future__ import annotations

from dataclasses import dataclass


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
