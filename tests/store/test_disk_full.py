"""The store on a filesystem that fills up: the reserve buys room, nothing committed is lost."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylogic_supervisor.errors import StoreFullError
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.reserve import DiskReserve
from tests.filesystems import fill, small_filesystem

RESERVE = 256 * 1024
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    with small_filesystem(tmp_path / "fs", size_kib=2048) as mount_point:
        yield mount_point


async def _write_until_full(db: Database, first: int) -> int:
    """Insert rows until the store refuses; returns the next unwritten number."""
    number = first
    while True:
        try:
            await db.execute("INSERT INTO notes (n, body) VALUES (?, ?)", (number, "x" * 400))
        except StoreFullError:
            return number
        number += 1


async def test_a_full_disk_frees_the_reserve_and_the_store_keeps_writing(small_fs: Path) -> None:
    reserve = DiskReserve(small_fs / "store.reserve", RESERVE)
    assert reserve.take() and reserve.held
    told: list[bool] = []
    async with Database(small_fs / "s.db", migrations=[], reserve=reserve) as db:
        db.on_full = told.append
        await db.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY, body TEXT)")
        await db.execute("INSERT INTO notes (n, body) VALUES (0, 'before')")
        fill(small_fs / "filler")

        # the very next write finds the disk full, frees the reserve and still lands
        await db.execute("INSERT INTO notes (n, body) VALUES (1, 'while full')")
        assert told == [True]
        assert not reserve.held
        assert (small_fs / "store.reserve").exists() is False

        # the reserve's room is finite: the store refuses clearly once it is used up
        next_number = await _write_until_full(db, 2)
        assert next_number > 40  # each commit adds at least a 4 KiB page to the WAL
        assert told[-1] is False
        with pytest.raises(StoreFullError, match="database or disk is full") as refused:
            await db.execute("INSERT INTO notes (n, body) VALUES (?, 'refused')", (next_number,))
        assert refused.value.room_made is False

        # space returns: writing carries on, the reserve is taken back
        (small_fs / "filler").unlink()
        await db.execute("INSERT INTO notes (n, body) VALUES (?, 'after')", (next_number,))
        assert reserve.take()
        rows = await db.fetchall("SELECT n FROM notes ORDER BY n")
        assert [row["n"] for row in rows] == list(range(next_number + 1))
        assert await db.integrity_check() == "ok"

    # and all of it is there for the next process that opens the file
    with sqlite3.connect(small_fs / "s.db") as plain:
        assert plain.execute("SELECT count(*) FROM notes").fetchone()[0] == next_number + 1


async def test_the_audit_chain_keeps_its_entry_when_the_disk_fills_mid_transaction(
    small_fs: Path,
) -> None:
    reserve = DiskReserve(small_fs / "store.reserve", RESERVE)
    assert reserve.take()
    async with Database(small_fs / "s.db", reserve=reserve) as db:
        audit = AuditLog(db)
        await audit.append("alice", "test.before", "subject", {}, now=NOW)
        fill(small_fs / "filler")
        # a multi-statement transaction: rolled back, room made, run again
        seq = await audit.append("alice", "test.while_full", "subject", {"k": "v"}, now=NOW)
        assert seq == 2
        assert not reserve.held
        assert (await audit.verify()).ok


async def test_without_a_reserve_a_full_disk_is_a_clear_refusal_and_nothing_is_lost(
    small_fs: Path,
) -> None:
    told: list[bool] = []
    async with Database(small_fs / "s.db", migrations=[]) as db:
        db.on_full = told.append
        await db.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY, body TEXT)")
        for number in range(20):
            await db.execute("INSERT INTO notes (n, body) VALUES (?, 'kept')", (number,))
        fill(small_fs / "filler")
        refused_at = await _write_until_full(db, 20)
        assert told and told[0] is False
        (small_fs / "filler").unlink()
        await db.execute("INSERT INTO notes (n, body) VALUES (?, 'after')", (refused_at,))
        count = await db.fetchone("SELECT count(*) AS c FROM notes")
        assert count is not None and count["c"] == refused_at + 1
        assert await db.integrity_check() == "ok"


def test_a_reserve_is_not_taken_when_it_would_leave_the_disk_nearly_full(small_fs: Path) -> None:
    reserve = DiskReserve(small_fs / "store.reserve", 1536 * 1024)  # 1.5 MiB of 2 MiB
    assert reserve.take() is False
    assert not (small_fs / "store.reserve").exists()
    assert not (small_fs / "store.reserve.partial").exists()
    assert reserve.release() is False
