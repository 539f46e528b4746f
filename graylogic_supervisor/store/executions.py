"""Execution records, written as they happen (DESIGN.md contract 3).

A step row is inserted when the step starts and updated when it ends, so a
crash loses nothing that finished and leaves a visible ``running`` row that
start-up turns into ``interrupted``. A run writes at its step boundaries
(``record_progress``): the end of the step that finished and the start of the
next go in one transaction, as do the execution's start and its first step's,
and the last step's end and the execution's: one commit per boundary, each
made before the next action runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.outcomes import MANUAL_INTERVENTION
from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.errors import StoreFullError, StoreLockedError
from graylogic_supervisor.store.database import DISK_ERROR_ID, Database, Row, Statement

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
ROOM_RETRY_S = 2.0  # a full disk: how often a step's record tries again


_START_EXECUTION = (
    "INSERT INTO executions (id, playbook_id, playbook_version, failure_id, error_id,"
    " component, status, started_at, incident_id, kind)"
    " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)"
)
_START_STEP = (
    "INSERT INTO execution_steps (execution_id, seq, step_id, name, action, target,"
    " attempt, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')"
)
_FINISH_STEP = (
    "UPDATE execution_steps SET completed_at = ?, duration_seconds = ?, outcome = ?,"
    " result = ?, output = ?, error = ?, transitioned_to = ? WHERE id = ?"
)
_FINISH_EXECUTION = (
    "UPDATE executions SET status = ?, completed_at = ?, duration_seconds = ?,"
    " resolved_by = ?, what_fixed_it = ?, playbook_sufficient = ?, detail = ?"
    " WHERE id = ?"
)


@dataclass(frozen=True)
class StepEnd:
    outcome: StepOutcome
    result: str | None
    output: Mapping[str, Any]
    error: str | None
    transitioned_to: str | None


@dataclass(frozen=True)
class ExecutionEnd:
    status: ExecutionStatus  # resolved | escalated | failed | interrupted
    resolved_by: str | None
    what_fixed_it: str | None
    playbook_sufficient: bool | None
    detail: str


@dataclass(frozen=True)
class ExecutionStart:
    """An execution's row as it begins."""

    execution_id: str
    playbook_id: str
    playbook_version: str
    failure_id: str
    error_id: str
    component: str
    started_at: datetime
    incident_id: str | None = None
    kind: str = "playbook"  # or ``learned_fix``: a fix the failure memory chose

    def statement(self) -> Statement:
        return _START_EXECUTION, (
            self.execution_id,
            self.playbook_id,
            self.playbook_version,
            self.failure_id,
            self.error_id,
            self.component,
            isoformat(self.started_at),
            self.incident_id,
            self.kind,
        )


@dataclass(frozen=True)
class StepStart:
    """A step's row as it starts (``running``)."""

    execution_id: str
    seq: int
    step_id: str
    name: str
    action: str
    target: str | None
    attempt: int
    started_at: datetime

    def statement(self) -> Statement:
        return _START_STEP, (
            self.execution_id,
            self.seq,
            self.step_id,
            self.name,
            self.action,
            self.target,
            self.attempt,
            isoformat(self.started_at),
        )


@dataclass(frozen=True)
class StepFinish:
    """How the step row ``row_id`` ends."""

    row_id: int
    completed_at: datetime
    duration_seconds: float
    end: StepEnd

    def statement(self) -> Statement:
        end = self.end
        return _FINISH_STEP, (
            isoformat(self.completed_at),
            round(self.duration_seconds, 6),
            end.outcome,
            end.result,
            json.dumps(dict(end.output), default=str) if end.output else None,
            end.error,
            end.transitioned_to,
            self.row_id,
        )


@dataclass(frozen=True)
class ExecutionFinish:
    """How the execution ``execution_id`` ends."""

    execution_id: str
    completed_at: datetime
    duration_seconds: float
    end: ExecutionEnd

    def statement(self) -> Statement:
        end = self.end
        sufficient = None if end.playbook_sufficient is None else int(end.playbook_sufficient)
        return _FINISH_EXECUTION, (
            end.status,
            isoformat(self.completed_at),
            round(self.duration_seconds, 6),
            end.resolved_by,
            end.what_fixed_it,
            sufficient,
            end.detail,
            self.execution_id,
        )


class ExecutionRepository:
    """Executions and their steps.

    Once an execution has begun, its step rows and its end are written even on a
    full disk: the write waits for room (``room_retry_s``) instead of failing, so
    the run pauses at that boundary and nothing it did goes unrecorded. A database
    another process keeps locked is waited out the same way. (An essential
    component's records are held by the store instead: they never wait here
    unless its hold is at its bound.)
    """

    def __init__(
        self,
        db: Database,
        room_retry_s: float = ROOM_RETRY_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._room_retry_s = room_retry_s
        self._sleep = sleep

    async def _when_room(self, write: Callable[[], Awaitable[_T]]) -> _T:
        """A write that must land: on a full disk, wait for space rather than lose it
        (and for the lock, when another process keeps the database locked)."""
        waited = False
        while True:
            try:
                return await write()
            except StoreFullError as exc:
                if not waited:
                    logger.error(
                        "a step cannot be recorded, the disk is full: the execution waits"
                        " for space (%s)",
                        exc,
                        extra={"error_id": DISK_ERROR_ID},
                    )
                    waited = True
                await self._sleep(self._room_retry_s)
            except StoreLockedError as exc:
                if not waited:
                    logger.error(
                        "a step cannot be recorded, the database is locked by another"
                        " process: the execution waits for it (%s)",
                        exc,
                    )
                    waited = True
                await self._sleep(self._room_retry_s)

    async def record_failure(
        self,
        failure_id: str,
        component: str,
        error_id: str,
        severity: str,
        *,
        message: str,
        detected_at: datetime,
        symptom_of: str | None = None,
        expected: bool = False,
    ) -> None:
        """``symptom_of`` names the failed component that explains this failure, if any;
        ``expected`` marks one a maintenance window covered."""
        await self._db.execute(
            "INSERT INTO failures (id, component, error_id, severity, message, detected_at,"
            " symptom_of, expected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                failure_id,
                component,
                error_id,
                severity,
                message,
                isoformat(detected_at),
                symptom_of,
                int(expected),
            ),
        )

    async def start_execution(
        self,
        execution_id: str,
        playbook_id: str,
        playbook_version: str,
        failure_id: str,
        *,
        error_id: str,
        component: str,
        started_at: datetime,
        incident_id: str | None = None,
        kind: str = "playbook",
    ) -> None:
        """``kind`` is ``playbook``, or ``learned_fix`` for a fix the failure memory chose."""
        start = ExecutionStart(
            execution_id=execution_id,
            playbook_id=playbook_id,
            playbook_version=playbook_version,
            failure_id=failure_id,
            error_id=error_id,
            component=component,
            started_at=started_at,
            incident_id=incident_id,
            kind=kind,
        )
        await self._db.execute(*start.statement())

    async def start_step(
        self,
        execution_id: str,
        seq: int,
        step_id: str,
        name: str,
        *,
        action: str,
        target: str | None,
        attempt: int,
        started_at: datetime,
    ) -> int:
        """Insert the running step's row; returns the row id to finish it with."""
        start = StepStart(
            execution_id=execution_id,
            seq=seq,
            step_id=step_id,
            name=name,
            action=action,
            target=target,
            attempt=attempt,
            started_at=started_at,
        )
        row_id = await self.record_progress(starting=start)
        assert row_id is not None
        return row_id

    async def finish_step(
        self, row_id: int, completed_at: datetime, duration_seconds: float, end: StepEnd
    ) -> None:
        await self.record_progress(
            finished=[StepFinish(row_id, completed_at, duration_seconds, end)]
        )

    async def finish_execution(
        self, execution_id: str, completed_at: datetime, duration_seconds: float, end: ExecutionEnd
    ) -> None:
        await self.record_progress(
            ended=ExecutionFinish(execution_id, completed_at, duration_seconds, end)
        )

    async def record_progress(
        self,
        *,
        begun: ExecutionStart | None = None,
        finished: Sequence[StepFinish] = (),
        starting: StepStart | None = None,
        ended: ExecutionFinish | None = None,
    ) -> int | None:
        """One step boundary of a run, in one transaction: the execution's start, the ends
        of the steps that finished, the next step's start, the execution's end (each if
        given, in that order). Returns the started step's row id.

        Once the execution has begun, it waits for room on a full disk (or for another
        process's lock) rather than fail; an essential's records are held instead. The
        execution's start is refused like any write.
        """
        statements = [record.statement() for record in finished]
        if begun is not None:
            statements.insert(0, begun.statement())
        if starting is not None:
            statements.append(starting.statement())
        if ended is not None:
            statements.append(ended.statement())
        if not statements:
            return None
        if begun is not None:
            # an execution's start is refused, not waited for: nothing has run yet, and
            # the supervisor takes the failure up again later
            written = await self._db.write_together(statements)
        else:
            written = await self._when_room(lambda: self._db.write_together(statements))
        return written[len(finished) + (begun is not None)][1] if starting is not None else None

    async def set_healthy_after(self, execution_id: str, healthy: bool) -> None:
        """The supervisor's verdict on a finished run (a fresh probe): learning counts a
        run a success only when it resolved and the component was healthy after it."""
        await self._when_room(
            lambda: self._db.execute(
                "UPDATE executions SET healthy_after = ? WHERE id = ?",
                (int(healthy), execution_id),
            )
        )

    async def failure(self, failure_id: str) -> Row | None:
        return await self._db.fetchone("SELECT * FROM failures WHERE id = ?", (failure_id,))

    async def running(self) -> list[Row]:
        """Executions whose end was never recorded (the supervisor stopped during them)."""
        return await self._db.fetchall(
            "SELECT * FROM executions WHERE status = 'running' ORDER BY started_at"
        )

    async def steps(self, execution_id: str) -> list[Row]:
        return await self._db.fetchall(
            "SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq", (execution_id,)
        )

    async def interrupt_step(self, row_id: int, now: datetime, why: str) -> None:
        await self._when_room(
            lambda: self._db.execute(
                "UPDATE execution_steps SET outcome = 'interrupted', completed_at = ?, error = ?"
                " WHERE id = ?",
                (isoformat(now), why, row_id),
            )
        )

    async def mark_interrupted(self, now: datetime, keep: Iterable[str] = ()) -> list[str]:
        """At start-up: whatever was running when we died is ``interrupted``,
        except the executions in ``keep`` (they resume)."""
        kept = set(keep)
        rows = await self._db.fetchall("SELECT id FROM executions WHERE status = 'running'")
        ended = [str(row["id"]) for row in rows if row["id"] not in kept]
        stamp = isoformat(now)
        async with self._db.transaction() as conn:
            for execution_id in ended:
                await conn.execute(
                    "UPDATE execution_steps SET outcome = 'interrupted', completed_at = ?,"
                    " error = 'the supervisor stopped while this step ran'"
                    " WHERE outcome = 'running' AND execution_id = ?",
                    (stamp, execution_id),
                )
                await conn.execute(
                    "UPDATE executions SET status = 'interrupted', completed_at = ?,"
                    " detail = 'the supervisor stopped while this execution ran' WHERE id = ?",
                    (stamp, execution_id),
                )
        return ended

    async def resolved_durations(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(playbook, version) -> (sum of durations, count) of resolved runs."""
        rows = await self._db.fetchall(
            "SELECT playbook_id, playbook_version, SUM(duration_seconds) AS total,"
            " COUNT(*) AS n FROM executions WHERE status = 'resolved'"
            " GROUP BY playbook_id, playbook_version"
        )
        return {
            (row["playbook_id"], row["playbook_version"]): (float(row["total"]), int(row["n"]))
            for row in rows
        }

    async def recent(self, limit: int = 20, status: str | None = None) -> list[Row]:
        if status is None:
            return await self._db.fetchall(
                "SELECT * FROM executions ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            )
        return await self._db.fetchall(
            "SELECT * FROM executions WHERE status = ?"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (status, limit),
        )

    async def record(self, execution_id: str) -> dict[str, Any] | None:
        """The execution in the shape of the learning spec's execution record."""
        execution = await self._db.fetchone(
            "SELECT * FROM executions WHERE id = ?", (execution_id,)
        )
        if execution is None:
            return None
        steps = await self._db.fetchall(
            "SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq", (execution_id,)
        )
        return execution_record(execution, steps)

    # -- read-only, for rebuilding the recovery policy at start-up ------------------

    async def finished_since(self, since: datetime) -> list[tuple[datetime, str, str | None]]:
        """Executions that ended at or after ``since``: (completed at, status, the outcome
        of their last unsuccessful step, undo steps aside: None when every step succeeded)."""
        rows = await self._db.fetchall(
            "SELECT e.completed_at, e.status, (SELECT s.outcome FROM execution_steps AS s"
            " WHERE s.execution_id = e.id AND s.outcome IN ('failure', 'timeout', 'error')"
            " AND s.step_id NOT LIKE '%:compensate' ORDER BY s.seq DESC LIMIT 1) AS failed"
            " FROM executions AS e WHERE e.completed_at >= ? ORDER BY e.completed_at",
            (isoformat(since),),
        )
        return [
            (
                datetime.fromisoformat(row["completed_at"].replace("Z", "+00:00")),
                str(row["status"]),
                row["failed"],
            )
            for row in rows
        ]


async def resolve_by_hand_in(
    conn: aiosqlite.Connection, failure_id: str, what_fixed_it: str
) -> int:
    """Inside the caller's transaction (a technician's resolution, ``memory/fixes.py``):
    the finished executions of ``failure_id`` that no step of theirs resolved become
    ``resolved_by: manual_intervention`` with the technician's ``what_fixed_it``, so the
    next person reading one learns what fixed it. An execution a step resolved keeps its
    credit; a running one is left to its run. Returns how many were written."""
    async with conn.execute(
        "UPDATE executions SET resolved_by = ?, what_fixed_it = ?"
        " WHERE failure_id = ? AND status != 'running'"
        " AND (resolved_by IS NULL OR resolved_by = ?)",
        (MANUAL_INTERVENTION, what_fixed_it, failure_id, MANUAL_INTERVENTION),
    ) as cursor:
        return cursor.rowcount


def execution_record(execution: Row, steps: list[Row]) -> dict[str, Any]:
    sufficient = execution["playbook_sufficient"]
    return {
        "id": execution["id"],
        "playbook_id": execution["playbook_id"],
        "playbook_version": execution["playbook_version"],
        "incident_id": execution["incident_id"],
        "kind": execution["kind"],
        "trigger": {
            "failure_id": execution["failure_id"],
            "error_id": execution["error_id"],
            "component": execution["component"],
        },
        "started_at": execution["started_at"],
        "completed_at": execution["completed_at"],
        "duration_seconds": execution["duration_seconds"],
        "steps": [
            {
                "step": step["seq"],
                "id": step["step_id"],
                "name": step["name"],
                "action": step["action"],
                "target": step["target"],
                "attempt": step["attempt"],
                "started_at": step["started_at"],
                "completed_at": step["completed_at"],
                "duration_seconds": step["duration_seconds"],
                "outcome": step["outcome"],
                "result": step["result"],
                "output": json.loads(step["output"]) if step["output"] else {},
                "error": step["error"],
                "transitioned_to": step["transitioned_to"],
            }
            for step in steps
        ],
        "outcome": {
            "status": execution["status"],
            "resolved_by": execution["resolved_by"],
            "what_fixed_it": execution["what_fixed_it"],
            "playbook_sufficient": None if sufficient is None else bool(sufficient),
            "detail": execution["detail"],
        },
    }
