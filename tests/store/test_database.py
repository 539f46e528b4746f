"""The store's connection: pragmas, migrations, transactions and close."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from graylogic_supervisor.errors import StoreClosedError, StoreError
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.migrations import MIGRATIONS


async def test_opens_in_wal_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await db.fetchone("PRAGMA synchronous"))[0] == 2  # type: ignore[index]
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        assert await db.integrity_check() == "ok"


async def test_migrations_run_once_and_record_their_number(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path):
        pass
    async with Database(path) as db:
        assert (await db.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)  # type: ignore[index]
    tables = {
        row[0]
        for row in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"playbooks", "playbook_versions", "executions", "execution_steps", "failures"} <= tables


async def test_a_later_migration_is_applied_to_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path):
        pass
    extra = [*MIGRATIONS, "ALTER TABLE executions ADD COLUMN note TEXT;"]
    async with Database(path, migrations=extra) as db:
        assert (await db.fetchone("PRAGMA user_version"))[0] == len(extra)  # type: ignore[index]
        await db.fetchall("SELECT note FROM executions")


async def test_a_database_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path, migrations=[*MIGRATIONS, "CREATE TABLE later (x);"]):
        pass
    with pytest.raises(StoreError, match="newer than this program"):
        async with Database(path):
            pass


async def test_a_failing_migration_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    broken = [*MIGRATIONS, "CREATE TABLE ok_part (x); THIS IS NOT SQL;"]
    with pytest.raises(StoreError, match=f"migration {len(broken)} failed"):
        async with Database(path, migrations=broken):
            pass
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert "ok_part" not in names


async def test_a_failed_transaction_rolls_back_every_write(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        with pytest.raises(StoreError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO playbooks (id, name, created_at) VALUES ('P', 'n', 't')"
                )
                await conn.execute("INSERT INTO nowhere VALUES (1)")
        assert await db.fetchall("SELECT * FROM playbooks") == []


async def test_use_after_close_is_an_error_and_close_is_idempotent(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db")
    await db.open()
    await db.close()
    await db.close()
    with pytest.raises(StoreClosedError):
        await db.fetchall("SELECT 1")


async def test_concurrent_writes_share_commits_and_each_gets_its_own_answer(
    tmp_path: Path,
) -> None:
    import asyncio

    async with Database(tmp_path / "s.db") as db:
        await db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, v TEXT UNIQUE)")

        async def insert(v: str) -> int:
            return await db.insert("INSERT INTO t (v) VALUES (?)", (v,))

        ids = await asyncio.gather(*(insert(f"v{n}") for n in range(200)))
        assert sorted(ids) == list(range(1, 201))
        # One bad write in a batch fails alone; the others in it are committed.
        results = await asyncio.gather(
            insert("new-1"), insert("v7"), insert("new-2"), return_exceptions=True
        )
        assert isinstance(results[1], StoreError)
        assert "UNIQUE" in str(results[1])
        assert all(isinstance(r, int) for r in (results[0], results[2]))
        assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 202  # type: ignore[index]


async def test_a_cancelled_writer_does_not_lose_the_writes_queued_with_it(
    tmp_path: Path,
) -> None:
    import asyncio

    path = tmp_path / "s.db"
    async with Database(path) as db:
        await db.execute("CREATE TABLE t (v TEXT)")
        tasks = [
            asyncio.create_task(db.execute("INSERT INTO t VALUES (?)", (str(n),)))
            for n in range(50)
        ]
        await asyncio.sleep(0)
        tasks[0].cancel()  # the first writer, which started the flush
        await asyncio.gather(*tasks, return_exceptions=True)
    async with Database(path) as db:
        assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 50  # type: ignore[index]
