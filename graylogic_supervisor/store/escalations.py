"""Escalations: a human is being called about an incident until someone acknowledges it.

Two processes write this table: the daemon raises escalations, records the
level each has reached and closes them; the CLI acknowledges them. A raise and
an acknowledgement commit with their audit entry. Every write
that must not race is a single guarded ``UPDATE`` (``… WHERE acknowledged_at IS
NULL``, ``… AND level < ?``), so SQLite's own lock decides between the two
processes and the loser sees a rowcount of 0 instead of overwriting the winner.

A component that fails again while its escalation is unacknowledged does not
raise another: ``repeat`` updates the one there is (``occurrences``, the last
incident and detail, ``updated_at``) and reopens it if the component's last
recovery had closed it.

``level`` is the last level fully sent (or given up). A new escalation starts
at ``NOTHING_SENT`` (-1), not the column's default 0, so a daemon that dies
between recording an escalation and sending its first level sends that level
after it restarts instead of believing it went out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.ids import new_id

NOTHING_SENT = -1
SUPERVISOR = "supervisor"

# Every read carries the incident's error id: the escalation row has none of its
# own, and a restarted daemon needs it for the notifications still to send.
_SELECT = (
    "SELECT e.*, i.error_id AS error_id FROM escalations AS e"
    " LEFT JOIN incidents AS i ON i.id = e.incident_id"
)


@dataclass(frozen=True)
class CallingEscalation:
    """An escalation still calling someone, as the chain needs it."""

    id: str
    incident_id: str
    component: str
    error_id: str
    severity: str
    message: str
    raised_at: datetime
    level: int

    @classmethod
    def of(cls, row: Row) -> CallingEscalation:
        return cls(
            id=row["id"],
            incident_id=row["incident_id"] or "",
            component=row["component"],
            error_id=row["error_id"] or "",
            severity=row["severity"],
            message=row["message"],
            raised_at=datetime.fromisoformat(row["raised_at"]),
            level=row["level"],
        )


class EscalationRepository:
    """The escalations table, with its raises and acknowledgements in the audit log."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def raise_(
        self, incident_id: str, component: str, severity: str, message: str, *, now: datetime
    ) -> str:
        """Record a new escalation (nothing sent yet) and its audit entry in one
        transaction; returns its id."""
        escalation_id = new_id("esc", now)
        stamp = isoformat(now)

        async def record(conn: aiosqlite.Connection) -> tuple[str, list[AuditEntry]]:
            await conn.execute(
                "INSERT INTO escalations (id, incident_id, component, severity, message,"
                " raised_at, level, occurrences, last_incident_id, last_detail, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    escalation_id,
                    incident_id,
                    component,
                    severity,
                    message,
                    stamp,
                    NOTHING_SENT,
                    incident_id,
                    message,
                    stamp,
                ),
            )
            detail = {
                "escalation_id": escalation_id,
                "incident_id": incident_id,
                "severity": severity,
                "message": message,
            }
            return escalation_id, [
                AuditEntry(SUPERVISOR, "escalation.raise", component, detail, now)
            ]

        return await self._audit.record(record)

    async def acknowledge(self, escalation_id: str, by: str, now: datetime) -> bool:
        """Someone has taken it; False if there is no such escalation or it was already taken.

        The guarded UPDATE is the decision, in one transaction with its audit entry:
        of two people (or processes) acknowledging at once, exactly one gets True and
        one audit entry.
        """
        if not by.strip():
            raise ValueError("an acknowledgement needs the name of who gave it")

        async def take(conn: aiosqlite.Connection) -> tuple[bool, list[AuditEntry]]:
            cursor = await conn.execute(
                "UPDATE escalations SET acknowledged_at = ?, acknowledged_by = ?"
                " WHERE id = ? AND acknowledged_at IS NULL",
                (isoformat(now), by, escalation_id),
            )
            if cursor.rowcount != 1:
                return False, []
            async with conn.execute(
                "SELECT component, incident_id, message FROM escalations WHERE id = ?",
                (escalation_id,),
            ) as rows:
                row = await rows.fetchone()
            assert row is not None
            detail = {
                "escalation_id": escalation_id,
                "incident_id": row["incident_id"],
                "message": row["message"],
            }
            return True, [AuditEntry(by, "escalation.acknowledge", row["component"], detail, now)]

        return await self._audit.record(take)

    async def set_level(self, escalation_id: str, level: int) -> bool:
        """Record the level reached; never moves backwards (False if it would not advance)."""
        changed = await self._db.execute(
            "UPDATE escalations SET level = ? WHERE id = ? AND level < ?",
            (level, escalation_id, level),
        )
        return changed == 1

    async def record_give_up(
        self,
        escalation_id: str,
        component: str,
        level: int,
        channel: str,
        *,
        attempts: int,
        now: datetime,
    ) -> None:
        """A channel never took the notification: kept, since "was anyone told?" is asked later."""
        await self._audit.append(
            SUPERVISOR,
            "escalation.give_up",
            component,
            {
                "escalation_id": escalation_id,
                "level": level,
                "channel": channel,
                "attempts": attempts,
            },
            now=now,
        )

    async def repeat(
        self, escalation_id: str, incident_id: str, detail: str, now: datetime
    ) -> int | None:
        """The component failed again: update its unacknowledged escalation (and reopen it
        if closed); returns its incidents counted so far, or None if someone acknowledged
        it first."""
        changed = await self._db.execute(
            "UPDATE escalations SET occurrences = occurrences"
            " + (CASE WHEN COALESCE(last_incident_id, incident_id) = ? THEN 0 ELSE 1 END),"
            " last_incident_id = ?, last_detail = ?, updated_at = ?, closed_at = NULL"
            " WHERE id = ? AND acknowledged_at IS NULL",
            (incident_id, incident_id, detail, isoformat(now), escalation_id),
        )
        if changed != 1:
            return None
        row = await self.get(escalation_id)
        return None if row is None else int(row["occurrences"])

    async def close_for_incident(self, incident_id: str, now: datetime) -> int:
        """The incident is over, its component healthy: the component's escalations stop
        (whichever incident raised them); returns how many were open."""
        return await self._db.execute(
            "UPDATE escalations SET closed_at = ? WHERE closed_at IS NULL AND (incident_id = ?"
            " OR last_incident_id = ?"
            " OR component = (SELECT component FROM incidents WHERE id = ?))",
            (isoformat(now), incident_id, incident_id, incident_id),
        )

    async def close_for_component(self, component: str, now: datetime) -> int:
        """The component is healthy with no incident open: whatever is still open for it
        (an acknowledged escalation survives a restart) is over; returns how many."""
        return await self._db.execute(
            "UPDATE escalations SET closed_at = ? WHERE closed_at IS NULL AND component = ?",
            (isoformat(now), component),
        )

    async def close_unacknowledged(self, now: datetime) -> int:
        """At start-up: the incidents behind them are closed, and health is checked anew.

        A failure that is still there opens a new incident and a new escalation;
        the old chain must not page people about an incident that no longer exists.
        """
        return await self._db.execute(
            "UPDATE escalations SET closed_at = ? WHERE closed_at IS NULL"
            " AND acknowledged_at IS NULL",
            (isoformat(now),),
        )

    async def get(self, escalation_id: str) -> Row | None:
        rows = await self._fetchall(f"{_SELECT} WHERE e.id = ?", (escalation_id,))
        return rows[0] if rows else None

    async def open_unacknowledged(self) -> list[Row]:
        """Escalations still calling someone: neither acknowledged nor closed, oldest first."""
        return await self._fetchall(
            f"{_SELECT} WHERE e.acknowledged_at IS NULL AND e.closed_at IS NULL"
            " ORDER BY e.raised_at, e.id"
        )

    async def open_for_incident(self, incident_id: str) -> Row | None:
        """The incident's escalation still calling someone, if any."""
        rows = await self._fetchall(
            f"{_SELECT} WHERE e.incident_id = ? AND e.acknowledged_at IS NULL"
            " AND e.closed_at IS NULL ORDER BY e.raised_at LIMIT 1",
            (incident_id,),
        )
        return rows[0] if rows else None

    async def unacknowledged_for_component(self, component: str, since: datetime) -> str | None:
        """The id of the component's newest escalation nobody acknowledged, still open or
        closed at or after ``since`` (its component recovered only briefly), if any."""
        rows = await self._fetchall(
            f"{_SELECT} WHERE e.component = ? AND e.acknowledged_at IS NULL"
            " AND (e.closed_at IS NULL OR e.closed_at >= ?)"
            " ORDER BY e.raised_at DESC, e.id DESC LIMIT 1",
            (component, isoformat(since)),
        )
        return str(rows[0]["id"]) if rows else None

    async def calling(self) -> list[CallingEscalation]:
        """``open_unacknowledged`` as the chain reads it."""
        return [CallingEscalation.of(row) for row in await self.open_unacknowledged()]

    async def recent(self, limit: int = 20) -> list[Row]:
        """Newest first, whatever their state."""
        return await self._fetchall(
            f"{_SELECT} ORDER BY e.raised_at DESC, e.id DESC LIMIT ?", (limit,)
        )

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # Database translates write errors but not read errors; the chain's loop
        # survives StoreError, so reads are translated here, at the store boundary.
        try:
            return await self._db.fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"reading escalations failed: {exc}") from exc
