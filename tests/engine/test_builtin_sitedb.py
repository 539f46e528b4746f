"""``check_site_database`` and ``vacuum_site_database`` on real SQLite files of the site."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from graylogic_supervisor.engine.action import StepResult
from graylogic_supervisor.engine.builtins.database import (
    CheckSiteDatabase,
    SiteDatabaseParams,
    VacuumSiteDatabase,
)
from tests.clocks import ManualClock
from tests.engine.step_context import step_context


def run(action: CheckSiteDatabase | VacuumSiteDatabase, name: str) -> StepResult:
    ctx = step_context(SiteDatabaseParams(database=name), ManualClock())
    return asyncio.run(action.run(ctx))


@pytest.fixture
def bloated(tmp_path: Path) -> Path:
    """A site's history database with most of its rows deleted: free pages to give back."""
    path = tmp_path / "knx-history.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE telegrams (id INTEGER PRIMARY KEY, body BLOB)")
    conn.executemany("INSERT INTO telegrams (body) VALUES (?)", [(b"x" * 1000,)] * 2000)
    conn.commit()
    conn.execute("DELETE FROM telegrams WHERE id > 100")
    conn.commit()
    conn.close()
    return path


def test_vacuum_gives_the_free_pages_back_and_keeps_the_rows(bloated: Path) -> None:
    before = bloated.stat().st_size

    result = run(VacuumSiteDatabase({"knx": bloated}), "knx")

    assert result.success, result
    assert result.output["bytes_before"] == before
    assert result.output["bytes_freed"] == before - bloated.stat().st_size > 1_000_000
    with sqlite3.connect(bloated) as conn:
        assert conn.execute("SELECT count(*) FROM telegrams").fetchone() == (100,)


def test_the_integrity_check_passes_a_sound_file_and_fails_a_damaged_one(bloated: Path) -> None:
    assert run(CheckSiteDatabase({"knx": bloated}), "knx").result == f"{bloated}: integrity ok"
    with bloated.open("r+b") as raw:  # overwrite pages past the header: the table's b-tree
        raw.seek(4096)
        raw.write(b"\xff" * 8192)

    result = run(CheckSiteDatabase({"knx": bloated}), "knx")

    assert not result.success
    assert "integrity check" in result.result


def test_an_unknown_or_missing_database_is_a_clear_failure(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"
    actions = (CheckSiteDatabase({"gone": missing}), VacuumSiteDatabase({"gone": missing}))

    for action in actions:
        assert run(action, "other").result == ("no database 'other' in actions.databases (gone)")
        failed = run(action, "gone")
        assert not failed.success and str(missing) in failed.result
    assert not missing.exists()  # never created
