"""One finished execution reduced to what learning needs: its visits, path and fixer.

Built from the store's rows for that execution only. A step that ran several
times in a row (its retries) is one visit with several attempts; a branch of a
parallel group counts as a step of its own (``group.branch``) and the group as
one stop on the path; compensations are not steps of the playbook's flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# How an execution ended, as the last element of its path.
END_OF_STATUS = {
    "resolved": "done",
    "escalated": "escalate",
    "failed": "timeout",
    "interrupted": "interrupted",
}


def simple_outcome(outcome: str) -> str:
    """success, skipped, or failure (failure, timeout and error alike)."""
    if outcome in ("success", "skipped"):
        return outcome
    return "failure"


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
        return self.outcome != "skipped"


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
        return self.status == "resolved"

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


def trace_of(execution: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Trace:
    """``rows`` are the execution's step rows in ``seq`` order."""
    visits: list[Visit] = []
    current: dict[str, Any] | None = None
    for row in rows:
        step_id = str(row["step_id"])
        if ":" in step_id or row["outcome"] in ("running", "interrupted"):
            continue
        duration = float(row["duration_seconds"] or 0.0)
        same_visit = (
            current is not None and current["step_id"] == step_id and int(row["attempt"]) > 1
        )
        if same_visit:
            assert current is not None
            current["outcomes"].append(str(row["outcome"]))
            current["durations"].append(duration)
            continue
        if current is not None:
            visits.append(_visit(current))
        current = {
            "step_id": step_id,
            "name": str(row["name"]),
            "action": str(row["action"]),
            "target": row["target"],
            "outcomes": [str(row["outcome"])],
            "durations": [duration],
        }
    if current is not None:
        visits.append(_visit(current))
    return Trace(
        execution_id=str(execution["id"]),
        playbook_id=str(execution["playbook_id"]),
        version=str(execution["playbook_version"]),
        failure_id=execution["failure_id"],
        status=str(execution["status"]),
        duration_s=float(execution["duration_seconds"] or 0.0),
        completed_at=execution["completed_at"],
        resolved_by=execution["resolved_by"],
        visits=tuple(visits),
        healthy_after=None
        if execution["healthy_after"] is None
        else bool(execution["healthy_after"]),
    )


def _visit(data: Mapping[str, Any]) -> Visit:
    return Visit(
        data["step_id"],
        data["name"],
        data["action"],
        data["target"],
        tuple(data["outcomes"]),
        tuple(data["durations"]),
    )
