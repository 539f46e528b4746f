"""People's feedback on an execution: was the playbook enough, which steps wasted time,
was the escalation timed right, and a note.

Several people may give feedback on one execution, and one person more than once:
each is kept as given, never merged, so the analysis can count who said what and
the pages can show all of it. A feedback and its audit entry commit together; the
execution's step ids it names are checked inside that transaction, so a step id the
execution never ran is refused, not stored. A running execution takes none yet
(nobody can say whether it was enough); feedback leaves with its execution
(retention).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database, Row

Escalation = Literal["too_late", "too_early", "right", "not_escalated_should_have"]
ESCALATION_TIMINGS: tuple[str, ...] = get_args(Escalation)
MAX_NOTE = 2000
MAX_WASTED = 50
AUDIT_ACTION = "execution.feedback"

_SELECT = (
    "SELECT f.*, e.playbook_id AS playbook_id, e.playbook_version AS playbook_version,"
    " e.status AS execution_status FROM execution_feedback AS f"
    " JOIN executions AS e ON e.id = f.execution_id"
)


class FeedbackRefused(StoreError):
    """Why a feedback was not stored: ``kind`` is ``invalid`` (``field`` names what) or
    ``unknown_execution``; the CLI maps it to an exit code, the API to 400 or 404."""

    def __init__(
        self, kind: Literal["invalid", "unknown_execution"], message: str, field: str = ""
    ) -> None:
        self.kind = kind
        self.field = field
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Feedback:
    """What one person says of one execution; None or empty is "not said"."""

    sufficient: bool | None = None
    wasted_steps: tuple[str, ...] = ()
    escalation: str | None = None
    note: str | None = None

    def problem(self) -> tuple[str, str] | None:
        """(field, why) when this cannot be stored, else None: checks all but the step ids,
        which only the execution's record can check."""
        if self.escalation is not None and self.escalation not in ESCALATION_TIMINGS:
            return (
                "escalation",
                f"escalation must be one of {', '.join(ESCALATION_TIMINGS)},"
                f" not {self.escalation!r}",
            )
        if self.note is not None and len(self.note) > MAX_NOTE:
            return "note", f"the note is at most {MAX_NOTE} characters"
        if len(self.wasted_steps) > MAX_WASTED:
            return "wasted_steps", f"at most {MAX_WASTED} wasted steps"
        if (
            self.sufficient is None
            and not self.wasted_steps
            and self.escalation is None
            and not self.note
        ):
            return (
                "feedback",
                "say something: sufficient, steps that wasted time, escalation timing or a note",
            )
        return None


@dataclass(frozen=True)
class FeedbackEntry:
    """One stored feedback, with the execution's playbook and status it was given on."""

    id: int
    execution_id: str
    playbook_id: str
    playbook_version: str
    execution_status: str
    given_by: str
    given_at: str
    sufficient: bool | None
    wasted_steps: tuple[str, ...]
    escalation: str | None
    note: str | None

    @classmethod
    def of(cls, row: Row) -> FeedbackEntry:
        sufficient = row["sufficient"]
        return cls(
            id=int(row["id"]),
            execution_id=row["execution_id"],
            playbook_id=row["playbook_id"],
            playbook_version=row["playbook_version"],
            execution_status=row["execution_status"],
            given_by=row["given_by"],
            given_at=row["given_at"],
            sufficient=None if sufficient is None else bool(sufficient),
            wasted_steps=tuple(json.loads(row["wasted_steps"])),
            escalation=row["escalation"],
            note=row["note"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "given_by": self.given_by,
            "given_at": self.given_at,
            "sufficient": self.sufficient,
            "wasted_steps": list(self.wasted_steps),
            "escalation": self.escalation,
            "note": self.note,
        }


class FeedbackRepository:
    """The ``execution_feedback`` table; every feedback with its audit entry."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def give(
        self, execution_id: str, feedback: Feedback, *, by: str, now: datetime
    ) -> FeedbackEntry:
        """Store ``feedback`` by ``by`` and its audit entry in one transaction; raises
        ``FeedbackRefused`` (nothing written) for an unknown execution, or a field that
        does not fit (a wasted step the execution never ran is named)."""
        problem = feedback.problem()
        if problem is not None:
            raise FeedbackRefused("invalid", problem[1], problem[0])

        async def body(conn: aiosqlite.Connection) -> tuple[int, Sequence[AuditEntry]]:
            async with conn.execute(
                "SELECT step_id FROM execution_steps WHERE execution_id = ?", (execution_id,)
            ) as cursor:
                ran = {str(row[0]) for row in await cursor.fetchall()}
            async with conn.execute(
                "SELECT status FROM executions WHERE id = ?", (execution_id,)
            ) as cursor:
                found = await cursor.fetchone()
            if found is None:
                raise FeedbackRefused("unknown_execution", f"no execution {execution_id}")
            if found[0] == "running":
                raise FeedbackRefused(
                    "invalid",
                    f"{execution_id} is still running: give feedback once it has ended",
                    "execution",
                )
            unknown = [step for step in feedback.wasted_steps if step not in ran]
            if unknown:
                raise FeedbackRefused(
                    "invalid",
                    f"{execution_id} ran no step {', '.join(map(repr, unknown))}"
                    f" (its steps: {', '.join(sorted(ran)) or 'none'})",
                    "wasted_steps",
                )
            wasted = list(dict.fromkeys(feedback.wasted_steps))
            values = (
                execution_id,
                by,
                isoformat(now),
                None if feedback.sufficient is None else int(feedback.sufficient),
                json.dumps(wasted),
                feedback.escalation,
                feedback.note or None,
            )
            async with conn.execute(
                "INSERT INTO execution_feedback (execution_id, given_by, given_at, sufficient,"
                " wasted_steps, escalation, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            ) as cursor:
                row_id = int(cursor.lastrowid or 0)
            detail = {
                "feedback_id": row_id,
                "sufficient": feedback.sufficient,
                "wasted_steps": wasted,
                "escalation": feedback.escalation,
                "note": feedback.note or None,
            }
            return row_id, [AuditEntry(by, AUDIT_ACTION, execution_id, detail, now)]

        row_id = await self._audit.record(body)
        row = await self._db.fetchone(f"{_SELECT} WHERE f.id = ?", (row_id,))
        assert row is not None  # just committed, and feedback is never deleted alone
        return FeedbackEntry.of(row)

    async def of_execution(self, execution_id: str) -> list[FeedbackEntry]:
        """Every feedback on the execution, oldest first."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE f.execution_id = ? ORDER BY f.given_at, f.id", (execution_id,)
        )
        return [FeedbackEntry.of(row) for row in rows]

    async def of_playbook(self, playbook_id: str, limit: int = 1000) -> list[FeedbackEntry]:
        """The newest ``limit`` feedbacks on the playbook's executions (any version),
        oldest first: what the analysis counts."""
        rows = await self._db.fetchall(
            f"SELECT * FROM ({_SELECT} WHERE e.playbook_id = ?"  # noqa: S608 - fixed clauses
            " ORDER BY f.given_at DESC, f.id DESC LIMIT ?) ORDER BY given_at, id",
            (playbook_id, limit),
        )
        return [FeedbackEntry.of(row) for row in rows]

    async def refresh_pending_evidence(
        self, recommendation_id: str, feedback: dict[str, Any] | None
    ) -> None:
        """A pending recommendation the analysis found again keeps its row, but shows the
        feedback this analysis counted for it (``evidence.feedback``; removed when none
        bears on it any more)."""
        if feedback is None:
            sql = (
                "UPDATE learning_recommendations SET evidence = json_remove(evidence, '$.feedback')"
            )
            params: tuple[Any, ...] = (recommendation_id,)
        else:
            sql = (
                "UPDATE learning_recommendations"
                " SET evidence = json_set(evidence, '$.feedback', json(?))"
            )
            params = (json.dumps(feedback), recommendation_id)
        await self._db.execute(f"{sql} WHERE id = ? AND status = 'pending'", params)
