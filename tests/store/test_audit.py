"""The audit log: append-only, and any tampering shows."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_entries_chain_and_verify(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        assert (await audit.verify()).ok  # an empty log verifies
        for n in range(5):
            await audit.append("alice", "maintenance.start", "mqtt", {"n": n}, NOW)
        check = await audit.verify()
        assert (check.ok, check.entries) == (True, 5)
        newest = (await audit.entries(limit=1))[0]
        assert (newest["seq"], newest["actor"], newest["detail"]) == (5, "alice", '{"n": 4}')


async def test_update_and_delete_are_refused(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        await audit.append("supervisor", "safe_mode.enter", "site", {}, NOW)
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("UPDATE audit_log SET actor = 'mallory'")
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("DELETE FROM audit_log")


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 2", "its content was changed"),
        ("DELETE FROM audit_log WHERE seq = 2", "entry 2 is missing"),
    ],
)
async def test_tampering_behind_the_triggers_back_is_detected(
    tmp_path: Path, tamper: str, problem: str
) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        audit = AuditLog(db)
        for n in range(3):
            await audit.append("alice", "x", "site", {"n": n}, NOW)
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;" + tamper
    )
    raw.close()
    async with Database(path) as db:
        check = await AuditLog(db).verify()
    assert not check.ok
    assert check.first_bad_seq in (2, 3)
    assert check.problem == problem


async def test_two_writers_never_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as first, Database(path) as second:

        async def write(db: Database, actor: str) -> None:
            for n in range(20):
                await AuditLog(db).append(actor, "x", "site", {"n": n}, NOW)

        await asyncio.gather(write(first, "daemon"), write(second, "cli"))
        check = await AuditLog(first).verify()
    assert (check.ok, check.entries) == (True, 40)


async def test_the_log_is_queried_by_time_range_actor_and_action(tmp_path: Path) -> None:
    from datetime import timedelta

    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        for hours, actor, action in [
            (0, "alice", "maintenance.start"),
            (1, "supervisor", "memory.decision"),
            (2, "bob", "maintenance.end"),
            (3, "supervisor", "safe_mode.enter"),
        ]:
            await audit.append(actor, action, "site", {}, NOW + timedelta(hours=hours))

        async def actions(**query: object) -> list[str]:
            return [row["action"] for row in await audit.entries(**query)]  # type: ignore[arg-type]

        assert await actions(actor="supervisor") == ["safe_mode.enter", "memory.decision"]
        assert await actions(action="maintenance.") == ["maintenance.end", "maintenance.start"]
        assert await actions(action="maintenance") == []  # a whole action, or a prefix with '.'
        window = await actions(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=3))
        assert window == ["maintenance.end", "memory.decision"]
