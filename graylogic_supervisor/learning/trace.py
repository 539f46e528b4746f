"""One finished execution reduced to what learning needs: its visits, path and fixer.

Built from the store's records of that execution only. A step that ran several
times in a row (its retries) is one visit with several attempts; a branch of a
parallel group counts as a step of its own (``group.branch``) and the group as
one stop on the path; compensations are not steps of the playbook's flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord

# How an execution ended, as the last element of its path.
END_OF_STATUS: dict[str, str] = {
    ExecutionStatus.RESOLVED: "done",
    ExecutionStatus.ESCALATED: "escalate",
    ExecutionStatus.FAILED: "timeout",
    ExecutionStatus.INTERRUPTED: "interrupted",
}


def simple_outcome(outcome: str) -> str:
    """success, skipped, or failure (failure, timeout and error alike)."""
    if outcome in (StepOutcome.SUCCESS, StepOutcome.SKIPPED):
        return outcome
    return StepOutcome.FAILURE


@dataclass(frozen=True)
class Visit:
    step_id: str
    name: str
    action: str
    target: str | None
    outcomes: tuple[str, ...]  # per attempt, as recorded (success, failure, timeout, …)
    durations: tuple[float, ...]  # per attempt, seconds

    @property
    def outcome(self) -> str:
        """The visit's result: its last attempt's, simplified."""
        return simple_outcome(self.outcomes[-1])

    @property
    def ran(self) -> bool:
        return self.outcome != StepOutcome.SKIPPED


@dataclass(frozen=True)
class Trace:
    execution_id: str
    playbook_id: str
    version: str
    failure_id: str | None
    status: str
    duration_s: float
    completed_at: str | None
    resolved_by: str | None  # the step that fixed it, as the runner judged
    visits: tuple[Visit, ...]
    healthy_after: bool | None = None  # the supervisor's fresh probe (None: not known)

    @property
    def resolved(self) -> bool:
        """The run reached ``done`` (which alone does not say the component is healthy)."""
        return self.status == ExecutionStatus.RESOLVED

    @property
    def succeeded(self) -> bool:
        """Resolved, and not found unhealthy after the run: what learning counts a success
        (a run that reached ``done`` with its component still failed did not fix it)."""
        return self.resolved and self.healthy_after is not False

    @property
    def path(self) -> tuple[str, ...]:
        stops: list[str] = []
        for visit in self.visits:
            group, dot, _ = visit.step_id.partition(".")
            if dot and stops and stops[-1] == group:
                continue  # another branch of the same group
            stops.append(group)
        return (*stops, END_OF_STATUS.get(self.status, self.status))

    def final_outcomes(self) -> dict[str, str]:
        """Each step's outcome at its last visit."""
        return {visit.step_id: visit.outcome for visit in self.visits}


def trace_of(execution: ExecutionRecord, steps: Sequence[StepRecord]) -> Trace:
    """``steps`` are the execution's steps in ``seq`` order."""
    visits: list[Visit] = []
    current: Visit | None = None
    for step in steps:
        if ":" in step.step_id or step.outcome in (StepOutcome.RUNNING, StepOutcome.INTERRUPTED):
            continue
        duration = float(step.duration_seconds or 0.0)
        if current is not None and current.step_id == step.step_id and step.attempt > 1:
            current = replace(
                current,
                outcomes=(*current.outcomes, str(step.outcome)),
                durations=(*current.durations, duration),
            )
            continue
        if current is not None:
            visits.append(current)
        current = Visit(
            step_id=step.step_id,
            name=step.name,
            action=step.action,
            target=step.target,
            outcomes=(str(step.outcome),),
            durations=(duration,),
        )
    if current is not None:
        visits.append(current)
    return Trace(
        execution_id=execution.id,
        playbook_id=execution.playbook_id,
        version=execution.playbook_version,
        failure_id=execution.failure_id,
        status=str(execution.status),
        duration_s=float(execution.duration_seconds or 0.0),
        completed_at=execution.completed_at,
        resolved_by=execution.resolved_by,
        visits=tuple(visits),
        healthy_after=execution.healthy_after,
    )
