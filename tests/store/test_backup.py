"""Backup while the store is written, and a restore that checks before it swaps."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.statelock import StateLock
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.backup import RestoreRefused, backup, restore
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import (
    ExecutionEnd,
    ExecutionFinish,
    ExecutionRepository,
    StepEnd,
    StepFinish,
)
from tests.store.test_executions import begun, starting
from tests.store.test_hold import repository

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
DONE = StepEnd(StepOutcome.SUCCESS, "ok", {}, None, None)
END = ExecutionEnd(ExecutionStatus.RESOLVED, "s1", "log", True, "resolved after step s1")


async def one_execution(repo: ExecutionRepository, audit: AuditLog, n: int) -> None:
    """A whole recovery as the runner writes it, and an audit entry."""
    execution_id = f"exec-{n}"
    row = await repo.record_progress(begun=begun(execution_id), starting=starting(1, execution_id))
    assert row is not None
    await repo.record_progress(
        finished=[StepFinish(row, NOW, 0.1, DONE)],
        ended=ExecutionFinish(execution_id, NOW, 0.2, END),
    )
    await audit.append("supervisor", "execution.end", execution_id, {"n": n}, now=NOW)


async def seeded_store(path: Path, executions: int) -> None:
    async with Database(path) as db:
        repo = await repository(db)
        await repo.record_failure(
            "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
        )
        audit = AuditLog(db)
        for n in range(executions):
            await one_execution(repo, audit, n)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def execution_ids(path: Path) -> set[str]:
    return {str(row[0]) for row in rows(path, "SELECT id FROM executions")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_backup_during_a_stream_of_executions_restores_every_committed_row(
    tmp_path: Path,
) -> None:
    live, dest = tmp_path / "state" / "supervisor.db", tmp_path / "backups" / "store.db"
    await seeded_store(live, 150)
    committed: list[str] = []
    async with Database(live) as db:
        repo, audit = ExecutionRepository(db), AuditLog(db)
        copying = asyncio.create_task(
            asyncio.to_thread(backup, live, dest, pages=4, pause_s=0.002), name="backup"
        )
        n = 150
        while not copying.done():
            await one_execution(repo, audit, n)
            committed.append(f"exec-{n}")
            n += 1
        result = await copying
    before = {f"exec-{n}" for n in range(150)}
    assert len(committed) > 5  # the daemon's writer went on while the copy ran
    in_backup = execution_ids(dest)
    assert before <= in_backup  # every row committed before the backup began
    assert in_backup <= before | set(committed)  # and nothing half-written
    assert result.size == dest.stat().st_size and result.audit_head is not None
    assert rows(dest, "PRAGMA integrity_check") == [("ok",)]
    assert not (dest.parent / "store.db-wal").exists()  # one file, whole on its own

    fresh = tmp_path / "fresh"
    restored = await restore(dest, fresh / "supervisor.db", state_dir=fresh, now=NOW, actor="ida")
    assert restored.kept is None
    assert execution_ids(fresh / "supervisor.db") == in_backup
    assert rows(fresh / "supervisor.db", "PRAGMA integrity_check") == [("ok",)]
    async with Database(fresh / "supervisor.db") as db:
        check = await AuditLog(db).verify()
        newest = (await AuditLog(db).entries(limit=1))[0]
    assert check.clean, check
    assert check.entries == restored.check.entries + 1 >= result.audit_head.seq + 1
    assert (newest["actor"], newest["action"], newest["subject"]) == (
        "ida",
        "store.restore",
        str(dest),
    )
    assert not list(fresh.glob("*.restore-tmp*"))


async def test_restore_keeps_the_old_store_whole_and_the_chain_verifies(tmp_path: Path) -> None:
    live, dest = tmp_path / "supervisor.db", tmp_path / "b.db"
    await seeded_store(live, 3)
    backup(live, dest)
    async with Database(live) as db:  # written after the backup: the restore rolls back
        await one_execution(ExecutionRepository(db), AuditLog(db), 3)
    newer = execution_ids(live)

    restored = await restore(dest, live, state_dir=tmp_path, now=NOW, actor="ida")

    assert restored.kept == tmp_path / "supervisor.db.before-restore-20261206T200000Z"
    assert execution_ids(live) == newer - {"exec-3"}
    assert execution_ids(restored.kept) == newer  # nothing of the old one is lost
    for path in (live, restored.kept):
        async with Database(path) as db:
            check = await AuditLog(db).verify()
        assert check.clean, (path, check)  # each with its own head file


def corrupt_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = bytes(range(256)) * (page // 256)
    path.write_bytes(bytes(data))


def tamper_an_audit_entry(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TRIGGER audit_log_no_update;"
        " UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 2;"
    )
    raw.close()


def cut_the_audit_tail(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TRIGGER audit_log_no_delete;"
        " DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log);"
    )
    raw.close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (corrupt_the_middle, "integrity check failed|cannot open it"),
        (tamper_an_audit_entry, "audit chain broken at entry 2: its content was changed"),
        (cut_the_audit_tail, "audit chain broken at entry 60: entry 60 was deleted"),
    ],
)
async def test_a_damaged_backup_is_refused_and_the_live_store_is_untouched(
    tmp_path: Path, damage: object, reason: str
) -> None:
    live, dest = tmp_path / "supervisor.db", tmp_path / "b.db"
    await seeded_store(live, 60)
    backup(live, dest)
    assert callable(damage)
    damage(dest)
    before = digest(live)

    with pytest.raises(RestoreRefused, match=reason):
        await restore(dest, live, state_dir=tmp_path, now=NOW, actor="ida")

    assert digest(live) == before
    assert sorted(p.name for p in tmp_path.iterdir() if "restore" in p.name) == []


async def test_restore_is_refused_while_a_daemon_holds_the_state_directory(
    tmp_path: Path,
) -> None:
    live, dest = tmp_path / "supervisor.db", tmp_path / "b.db"
    await seeded_store(live, 2)
    backup(live, dest)
    before = digest(live)
    with (
        StateLock(tmp_path, NOW, pid=4242, argv=["graylogic-supervisor", "run"]),
        pytest.raises(RestoreRefused, match=r"in use by pid 4242.*stop the daemon first"),
    ):
        await restore(dest, live, state_dir=tmp_path, now=NOW, actor="ida")
    assert digest(live) == before
    assert not list(tmp_path.glob("*before-restore*"))


async def test_restore_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(RestoreRefused, match="no such file"):
        await restore(
            tmp_path / "nope.db", tmp_path / "s.db", state_dir=tmp_path, now=NOW, actor="ida"
        )


async def test_a_store_left_by_a_crash_is_kept_with_its_wal(tmp_path: Path) -> None:
    """A daemon killed -9 leaves commits in the WAL: they stay with the kept file."""
    live, dest = tmp_path / "live" / "supervisor.db", tmp_path / "b.db"
    crashed = tmp_path / "crashed"
    await seeded_store(live, 2)
    backup(live, dest)
    async with Database(live) as db:
        await one_execution(ExecutionRepository(db), AuditLog(db), 2)
        crashed.mkdir()
        for name in ("supervisor.db", "supervisor.db-wal", "supervisor.db.audit-head"):
            (crashed / name).write_bytes((live.parent / name).read_bytes())  # a crash image
    assert (crashed / "supervisor.db-wal").stat().st_size > 0

    first = await restore(dest, crashed / "supervisor.db", state_dir=crashed, now=NOW, actor="a")
    second = await restore(dest, crashed / "supervisor.db", state_dir=crashed, now=NOW, actor="b")

    assert first.kept is not None and second.kept is not None
    assert second.kept.name == first.kept.name + "-2"  # the same second: nothing overwritten
    assert not (crashed / "supervisor.db-wal").exists()
    assert "exec-2" in execution_ids(first.kept)  # read through its WAL, moved beside it
    assert execution_ids(crashed / "supervisor.db") == {"exec-0", "exec-1"}
