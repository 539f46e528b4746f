"""The event log read in pages: every recorded step as one event of its execution,
and the executions list, both by keyset cursor so that neither an export of a million
step rows nor a script paging the API ever holds more than one page.

A cursor is the sort key of the last row a page returned (never an offset: rows
written meanwhile do not shift the pages).
Events run oldest execution first, then by ``seq`` within it, which is the order a
process-mining tool reads a case in; executions run newest first, as the pages show.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.records import ExecutionRecord

if TYPE_CHECKING:  # views hands out this module's EventLog
    from graylogic_supervisor.store.views import ExecutionFilter

EXPORT_PAGE = 1000
"""Step rows per read of an export: large enough that paging costs little, small
enough that memory stays flat whatever the store holds."""


class BadCursor(ValueError):
    """A cursor that does not have a cursor's form."""


EXECUTION_CURSOR = r"^[0-9TZ:.-]{1,40}~[0-9]{1,18}$"
EVENT_CURSOR = r"^[0-9TZ:.-]{1,40}~[0-9]{1,18}~[0-9]{1,9}$"
"""A cursor's form: the sort key as text (start ``~`` rowid [``~`` seq]). Any string of
this form is a position in the order, so a well-formed cursor never fails: one that was
not handed out just starts wherever it sorts. Scripts should treat it as opaque."""


@dataclass(frozen=True)
class EventCursor:
    """Where a page of events ended: the execution's start, its rowid, the step's seq."""

    started_at: str
    execution_row: int
    seq: int

    def token(self) -> str:
        return f"{self.started_at}~{self.execution_row}~{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventCursor:
        if not re.fullmatch(EVENT_CURSOR, text):
            raise BadCursor("not an events cursor (the X-Next-Cursor of a page of events)")
        started_at, row, seq = text.split("~")
        return cls(started_at, int(row), int(seq))


@dataclass(frozen=True)
class ExecutionCursor:
    """Where a page of executions ended (newest first): the start and the rowid."""

    started_at: str
    execution_row: int

    def token(self) -> str:
        return f"{self.started_at}~{self.execution_row}"

    @classmethod
    def parse(cls, text: str) -> ExecutionCursor:
        if not re.fullmatch(EXECUTION_CURSOR, text):
            raise BadCursor("not an executions cursor (the X-Next-Cursor of a page of them)")
        started_at, row = text.split("~")
        return cls(started_at, int(row))


@dataclass(frozen=True)
class EventFilter:
    """Which executions' steps to export; None: not filtered on. Times are ISO 8601,
    compared with the execution's start."""

    since: str | None = None
    until: str | None = None
    playbook: str | None = None


@dataclass(frozen=True)
class StepEvent:
    """One recorded step attempt as an event of its case (the execution)."""

    case_id: str
    seq: int
    activity: str  # the step id; a compensation is ``step:compensate``
    name: str
    action: str
    target: str | None
    attempt: int
    started_at: str
    completed_at: str | None
    duration_seconds: float | None
    outcome: str
    error: str | None
    playbook_id: str
    playbook_version: str
    component: str
    error_id: str
    case_status: str
    case_started_at: str
    cursor: EventCursor

    def as_row(self) -> dict[str, Any]:
        """The export's and the API's shape (the cursor stays out)."""
        return {
            "case_id": self.case_id,
            "seq": self.seq,
            "activity": self.activity,
            "name": self.name,
            "action": self.action,
            "target": self.target,
            "attempt": self.attempt,
            "start": self.started_at,
            "end": self.completed_at,
            "duration_seconds": self.duration_seconds,
            "outcome": self.outcome,
            "error": self.error,
            "playbook_id": self.playbook_id,
            "playbook_version": self.playbook_version,
            "component": self.component,
            "error_id": self.error_id,
            "case_status": self.case_status,
        }

    @classmethod
    def of(cls, row: Row) -> StepEvent:
        return cls(
            case_id=row["execution_id"],
            seq=int(row["seq"]),
            activity=row["step_id"],
            name=row["name"],
            action=row["action"],
            target=row["target"],
            attempt=int(row["attempt"]),
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            duration_seconds=row["duration_seconds"],
            outcome=row["outcome"],
            error=row["error"],
            playbook_id=row["playbook_id"],
            playbook_version=row["playbook_version"],
            component=row["component"],
            error_id=row["error_id"],
            case_status=row["status"],
            case_started_at=row["case_started_at"],
            cursor=EventCursor(row["case_started_at"], int(row["execution_row"]), int(row["seq"])),
        )


_EVENTS = (
    "SELECT s.execution_id, s.seq, s.step_id, s.name, s.action, s.target, s.attempt,"
    " s.started_at, s.completed_at, s.duration_seconds, s.outcome, s.error,"
    " e.playbook_id, e.playbook_version, e.component, e.error_id, e.status,"
    " e.started_at AS case_started_at, e.rowid AS execution_row"
    " FROM executions AS e JOIN execution_steps AS s ON s.execution_id = e.id"
)


class EventLog:
    """Keyset-paged reads of the steps and executions; nothing here writes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def events(
        self, chosen: EventFilter, after: EventCursor | None, limit: int
    ) -> list[StepEvent]:
        """Up to ``limit`` events after ``after`` (None: from the oldest)."""
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        for clause, value in (
            ("e.started_at >= ?", chosen.since),
            ("e.started_at <= ?", chosen.until),
            ("e.playbook_id = ?", chosen.playbook),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if after is not None:
            # the range on started_at alone lets the index do the work; the rest breaks ties
            clauses.append(
                "e.started_at >= ? AND (e.started_at > ? OR e.rowid > ?"
                " OR (e.rowid = ? AND s.seq > ?))"
            )
            params += [
                after.started_at,
                after.started_at,
                after.execution_row,
                after.execution_row,
                after.seq,
            ]
        rows = await self._db.fetchall(
            f"{_EVENTS} WHERE {' AND '.join(clauses)}"  # fixed clauses, values bound
            " ORDER BY e.started_at, e.rowid, s.seq LIMIT ?",
            (*params, limit),
        )
        return [StepEvent.of(row) for row in rows]

    async def stream(
        self, chosen: EventFilter, page: int = EXPORT_PAGE
    ) -> AsyncIterator[StepEvent]:
        """Every event that matches, one page in memory at a time."""
        after: EventCursor | None = None
        while True:
            events = await self.events(chosen, after, page)
            for event in events:
                yield event
            if len(events) < page:
                return
            after = events[-1].cursor

    async def executions(
        self, chosen: ExecutionFilter, after: ExecutionCursor | None, limit: int
    ) -> list[tuple[ExecutionRecord, ExecutionCursor]]:
        """Up to ``limit`` executions that match, newest first, after ``after``."""
        clauses, params = chosen.where()
        if after is not None:
            clauses.append("started_at <= ? AND (started_at < ? OR rowid < ?)")
            params += [after.started_at, after.started_at, after.execution_row]
        rows = await self._db.fetchall(
            f"SELECT *, rowid AS execution_row FROM executions WHERE {' AND '.join(clauses)}"  # noqa: S608  # fixed clauses, values bound
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [
            (ExecutionRecord.of(row), ExecutionCursor(row["started_at"], int(row["execution_row"])))
            for row in rows
        ]
