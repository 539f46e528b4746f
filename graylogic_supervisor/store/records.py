"""The records the store's reads return: one frozen dataclass per row shape, so no
``sqlite3.Row`` leaves ``store/``. A field is named after its column; templates and
JSON see the same names the rows had (``dataclasses.asdict``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from graylogic_supervisor.domain.states import ExecutionStatus, IncidentPhase, StepOutcome
from graylogic_supervisor.store.database import Row

_R = TypeVar("_R")


def record_of(cls: type[_R], row: Row) -> _R:
    """The record ``cls`` of ``row``: each field from the column of its name."""
    maker: Any = cls  # a dataclass: its fields are the columns
    names = row.keys()
    record: _R = maker(**{f.name: row[f.name] for f in fields(maker) if f.name in names})
    return record


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _optional_int(value: bool | None) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class ExecutionRecord:
    """One row of ``executions`` (fields in the table's order)."""

    id: str
    playbook_id: str
    playbook_version: str
    failure_id: str | None
    error_id: str
    component: str
    status: ExecutionStatus
    started_at: str
    completed_at: str | None
    duration_seconds: float | None
    resolved_by: str | None
    what_fixed_it: str | None
    playbook_sufficient: bool | None
    detail: str | None
    incident_id: str | None
    kind: str
    learned: bool
    healthy_after: bool | None

    @classmethod
    def of(cls, row: Row) -> ExecutionRecord:
        return cls(
            id=row["id"],
            playbook_id=row["playbook_id"],
            playbook_version=row["playbook_version"],
            failure_id=row["failure_id"],
            error_id=row["error_id"],
            component=row["component"],
            status=ExecutionStatus(row["status"]),
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            duration_seconds=row["duration_seconds"],
            resolved_by=row["resolved_by"],
            what_fixed_it=row["what_fixed_it"],
            playbook_sufficient=_optional_bool(row["playbook_sufficient"]),
            detail=row["detail"],
            incident_id=row["incident_id"],
            kind=row["kind"],
            learned=bool(row["learned"]),
            healthy_after=_optional_bool(row["healthy_after"]),
        )

    def as_row(self) -> dict[str, Any]:
        """The row as the table keeps it (flags as 0 and 1): the JSON API's shape."""
        return {
            **asdict(self),
            "status": str(self.status),
            "playbook_sufficient": _optional_int(self.playbook_sufficient),
            "learned": int(self.learned),
            "healthy_after": _optional_int(self.healthy_after),
        }


@dataclass(frozen=True)
class StepRecord:
    """One row of ``execution_steps``: one attempt of one step."""

    id: int
    execution_id: str
    seq: int
    step_id: str
    name: str
    action: str
    target: str | None
    attempt: int
    started_at: str
    completed_at: str | None
    duration_seconds: float | None
    outcome: StepOutcome
    result: str | None
    output: str | None
    error: str | None
    transitioned_to: str | None

    @classmethod
    def of(cls, row: Row) -> StepRecord:
        return cls(
            id=int(row["id"]),
            execution_id=row["execution_id"],
            seq=int(row["seq"]),
            step_id=row["step_id"],
            name=row["name"],
            action=row["action"],
            target=row["target"],
            attempt=int(row["attempt"]),
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            duration_seconds=row["duration_seconds"],
            outcome=StepOutcome(row["outcome"]),
            result=row["result"],
            output=row["output"],
            error=row["error"],
            transitioned_to=row["transitioned_to"],
        )


@dataclass(frozen=True)
class IncidentRecord:
    """One row of ``incidents``."""

    id: str
    component: str
    error_id: str
    failure_id: str | None
    phase: IncidentPhase
    detail: str | None
    attempts: int
    opened_at: str
    updated_at: str
    closed_at: str | None

    @classmethod
    def of(cls, row: Row) -> IncidentRecord:
        return cls(
            id=row["id"],
            component=row["component"],
            error_id=row["error_id"],
            failure_id=row["failure_id"],
            phase=IncidentPhase(row["phase"]),
            detail=row["detail"],
            attempts=int(row["attempts"]),
            opened_at=row["opened_at"],
            updated_at=row["updated_at"],
            closed_at=row["closed_at"],
        )
