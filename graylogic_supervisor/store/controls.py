"""What operators switch by hand: safe mode and maintenance windows.

The daemon and the CLI are two processes; the store is where they meet. The
daemon reads these rows whenever it decides, so a change from the CLI takes
effect at the next decision. Every change goes into the audit log in the
transaction that makes it: a crash leaves both or neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.ids import new_id

SITE = "*"


@dataclass(frozen=True)
class SafeMode:
    active: bool
    since: str | None
    reason: str | None
    changed_by: str | None


@dataclass(frozen=True)
class MaintenanceWindow:
    """A window in which a component's (or, ``component == '*'``, the site's) failures are
    expected: the supervisor records them and does not recover."""

    id: str
    component: str
    starts_at: str
    ends_at: str
    reason: str
    created_by: str
    ended_at: str | None
    ended_by: str | None


class ControlRepository:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    # -- safe mode ------------------------------------------------------------

    async def safe_mode(self) -> SafeMode:
        row = await self._db.fetchone("SELECT * FROM safe_mode WHERE id = 1")
        if row is None:
            return SafeMode(False, None, None, None)
        return SafeMode(bool(row["active"]), row["since"], row["reason"], row["changed_by"])

    async def set_safe_mode(self, active: bool, reason: str, by: str, now: datetime) -> bool:
        """Enter or leave, with its audit entry, in one transaction; False when it already
        was so (nothing written)."""
        stamp = isoformat(now)

        async def switch(conn: aiosqlite.Connection) -> tuple[bool, list[AuditEntry]]:
            async with conn.execute("SELECT active FROM safe_mode WHERE id = 1") as cursor:
                row = await cursor.fetchone()
            if bool(row is not None and row[0]) == active:
                return False, []
            await conn.execute(
                "INSERT INTO safe_mode (id, active, since, reason, changed_by, changed_at)"
                " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " active = excluded.active, since = excluded.since, reason = excluded.reason,"
                " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
                (int(active), stamp if active else None, reason, by, stamp),
            )
            action = "safe_mode.enter" if active else "safe_mode.leave"
            return True, [AuditEntry(by, action, "site", {"reason": reason}, now)]

        return await self._audit.record(switch)

    # -- maintenance windows --------------------------------------------------

    async def start_maintenance(
        self, component: str, duration_s: float, reason: str, *, by: str, now: datetime
    ) -> str:
        """Open a window, with its audit entry, in one transaction; returns its id."""
        window_id = new_id("mw", now)
        ends = now + timedelta(seconds=duration_s)

        async def open_window(conn: aiosqlite.Connection) -> tuple[str, list[AuditEntry]]:
            await conn.execute(
                "INSERT INTO maintenance_windows (id, component, starts_at, ends_at, reason,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?)",
                (window_id, component, isoformat(now), isoformat(ends), reason, by),
            )
            detail = {"window_id": window_id, "until": isoformat(ends), "reason": reason}
            subject = "site" if component == SITE else component
            return window_id, [AuditEntry(by, "maintenance.start", subject, detail, now)]

        return await self._audit.record(open_window)

    async def end_maintenance(self, window_id: str, by: str, now: datetime) -> bool:
        """End a window early, with its audit entry, in one transaction; False if it is
        unknown or already over."""
        stamp = isoformat(now)

        async def close(conn: aiosqlite.Connection) -> tuple[bool, list[AuditEntry]]:
            cursor = await conn.execute(
                "UPDATE maintenance_windows SET ended_at = ?, ended_by = ?"
                " WHERE id = ? AND ended_at IS NULL AND ends_at > ?",
                (stamp, by, window_id, stamp),
            )
            if cursor.rowcount != 1:
                return False, []
            row = await _window(conn, window_id)
            detail = {"window_id": window_id, "early": True}
            return True, [AuditEntry(by, "maintenance.end", _subject(row), detail, now)]

        return await self._audit.record(close)

    async def active_windows(self, now: datetime) -> list[Row]:
        stamp = isoformat(now)
        return await self._db.fetchall(
            "SELECT * FROM maintenance_windows WHERE ended_at IS NULL AND starts_at <= ?"
            " AND ends_at > ? ORDER BY ends_at",
            (stamp, stamp),
        )

    async def window_for(self, component: str, now: datetime) -> Row | None:
        """The active window that covers ``component`` (its own, or the whole site's)."""
        for row in await self.active_windows(now):
            if row["component"] in (component, SITE):
                return row
        return None

    async def close_elapsed(self, now: datetime) -> list[Row]:
        """Windows that ran out on their own: marked ended and audited, once, in one
        transaction."""
        stamp = isoformat(now)

        async def close(conn: aiosqlite.Connection) -> tuple[list[Row], list[AuditEntry]]:
            async with conn.execute(
                "SELECT * FROM maintenance_windows WHERE ended_at IS NULL AND ends_at <= ?",
                (stamp,),
            ) as cursor:
                rows = list(await cursor.fetchall())
            entries = []
            for row in rows:
                await conn.execute(
                    "UPDATE maintenance_windows SET ended_at = ends_at, ended_by = 'supervisor'"
                    " WHERE id = ? AND ended_at IS NULL",
                    (row["id"],),
                )
                detail = {"window_id": row["id"], "early": False}
                entries.append(
                    AuditEntry("supervisor", "maintenance.end", _subject(row), detail, now)
                )
            return rows, entries

        if not await self._db.fetchone(
            "SELECT 1 FROM maintenance_windows WHERE ended_at IS NULL AND ends_at <= ?", (stamp,)
        ):
            return []  # the common case, every decision: no write, no transaction
        return await self._audit.record(close)

    async def planned_windows(self, now: datetime, limit: int = 50) -> list[MaintenanceWindow]:
        """Windows neither ended by hand nor elapsed (current and upcoming), soonest
        first, among the newest ``limit``."""
        rows = await self._db.fetchall(
            "SELECT * FROM (SELECT * FROM maintenance_windows ORDER BY starts_at DESC LIMIT ?)"
            " WHERE ended_at IS NULL AND ends_at > ? ORDER BY starts_at",
            (limit, isoformat(now)),
        )
        return [MaintenanceWindow(**{key: row[key] for key in row.keys()}) for row in rows]  # noqa: SIM118

    async def windows(self, limit: int = 50) -> list[Row]:
        return await self._db.fetchall(
            "SELECT * FROM maintenance_windows ORDER BY starts_at DESC LIMIT ?", (limit,)
        )


async def _window(conn: aiosqlite.Connection, window_id: str) -> Row:
    async with conn.execute(
        "SELECT * FROM maintenance_windows WHERE id = ?", (window_id,)
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return row


def _subject(row: Row) -> str:
    return "site" if row["component"] == SITE else str(row["component"])
