"""An essential component's records held in memory while the store cannot write them.

Real causes only: a tmpfs the test mounts and fills (the kernel's ENOSPC, past
any reserve), and a second sqlite3 connection holding ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import StoreFullError, StoreLockedError
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionEnd, ExecutionRepository, StepEnd
from graylogic_supervisor.store.hold import HeldRowId, HoldLimits, WriteHold, recording_for
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.filesystems import fill, small_filesystem

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
PLAYBOOK = "PLAY-MQTT-RECOVER-001"
BUDGET_S = 60.0  # generous: only there so that a broken hold fails instead of hanging


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "fs", size_kib=2048) as mount_point:
        yield mount_point


def essential_store(
    path: Path,
    limits: HoldLimits | None = None,
    hold_retry_s: float = 0.05,
    busy_timeout_ms: int = 5000,
) -> Database:
    """A store that holds the records of ``mqtt`` (essential), not of ``bridge``."""
    db = Database(
        path,
        hold=WriteHold(limits or HoldLimits()),
        hold_retry_s=hold_retry_s,
        busy_timeout_ms=busy_timeout_ms,
    )
    db.holds_for = {"mqtt"}.__contains__
    return db


async def repository(db: Database, room_retry_s: float = 0.05) -> ExecutionRepository:
    """Executions, with the playbook version they name already in the store."""
    playbook = Playbook.model_validate(
        {
            "id": PLAYBOOK,
            "name": "MQTT",
            "version": "1.0.0",
            "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
            "steps": [{"id": "check", "name": "Check", "action": "log", "on_success": "done"}],
        }
    )
    await PlaybookVersions(db).seed(playbook, "yaml", "mqtt.yaml", NOW)
    return ExecutionRepository(db, room_retry_s=room_retry_s)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(BUDGET_S):
        while not condition():
            await asyncio.sleep(0.02)


async def fill_store(db: Database, small_fs: Path) -> None:
    """Fill the filesystem, then the WAL's spare room, until a plain write is refused."""
    fill(small_fs / "filler")
    for number in range(10_000):
        try:
            await db.execute(
                "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
                " VALUES (?, 'bridge', 'ERR-X', 'low', ?, ?)",
                (f"filler-{number}", "x" * 400, isoformat(NOW)),
            )
        except StoreFullError:
            return
    raise AssertionError("the store never filled")


async def record_a_recovery(repo: ExecutionRepository) -> None:
    """What a recovery writes, with the times it happened at."""
    await repo.record_failure(
        "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "critical", message="down", detected_at=NOW
    )
    await repo.start_execution(
        "exec-1",
        PLAYBOOK,
        "1.0.0",
        "fail-1",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )
    for seq, step in enumerate(("check", "restart"), start=1):
        began = NOW + timedelta(seconds=seq)
        row = await repo.start_step(
            "exec-1", seq, step, step, action="log", target="mosquitto", attempt=1, started_at=began
        )
        assert isinstance(row, HeldRowId)
        end = StepEnd("success", f"{step} ok", {"n": seq}, None, "done")
        await repo.finish_step(row, began + timedelta(seconds=0.5), 0.5, end)
    await repo.finish_execution(
        "exec-1",
        NOW + timedelta(seconds=3),
        3.0,
        ExecutionEnd("resolved", "restart", "log mosquitto", True, "resolved after restart"),
    )


async def test_past_the_reserve_an_essential_recovery_is_held_then_written_in_order(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graylogic_supervisor.store.hold")
    async with essential_store(small_fs / "s.db") as db:
        repo = await repository(db)
        await fill_store(db, small_fs)

        # it returns at once (it would wait for room forever without the hold)
        with recording_for("mqtt"):
            await asyncio.wait_for(record_a_recovery(repo), BUDGET_S)
        assert db.held_rows == 7  # failure, execution, 2 x (step start, step end), its end
        assert "records are held in memory" in caplog.text
        # held rows are not visible until written
        assert await db.fetchall("SELECT id FROM executions") == []
        # another component's write is refused as before
        with pytest.raises(StoreFullError):
            await repo.record_failure(
                "fail-b", "bridge", "ERR-X", "low", message="down", detected_at=NOW
            )
        await db.flush_held()  # still full: nothing written, nothing lost
        assert db.held_rows == 7
        assert await db.fetchall("SELECT id FROM executions") == []

        (small_fs / "filler").unlink()
        assert await db.flush_held() == 0
        assert await db.flush_held() == 0  # nothing written twice
        record = await repo.record(await _only_execution(db))
        assert record is not None
        assert record["outcome"]["status"] == "resolved"
        assert record["started_at"] == isoformat(NOW)
        assert [(s["id"], s["outcome"], s["started_at"], s["result"]) for s in record["steps"]] == [
            ("check", "success", isoformat(NOW + timedelta(seconds=1)), "check ok"),
            ("restart", "success", isoformat(NOW + timedelta(seconds=2)), "restart ok"),
        ]
        assert [s["output"] for s in record["steps"]] == [{"n": 1}, {"n": 2}]
        failure = await repo.failure("fail-1")
        assert failure is not None and failure["detected_at"] == isoformat(NOW)
        assert await db.integrity_check() == "ok"
        assert "7 held rows written in order" in caplog.text


async def _only_execution(db: Database) -> str:
    rows = await db.fetchall("SELECT id FROM executions")
    assert len(rows) == 1
    return str(rows[0]["id"])


async def test_the_first_write_that_reaches_the_store_writes_the_held_rows_before_itself(
    small_fs: Path,
) -> None:
    async with essential_store(small_fs / "s.db", hold_retry_s=3600) as db:
        repo = await repository(db)
        await fill_store(db, small_fs)
        with recording_for("mqtt"):
            await repo.record_failure(
                "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
            )
            await repo.record_failure(
                "fail-2", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
            )
        (small_fs / "filler").unlink()
        # a non-essential write: the held rows go first, in their order
        await repo.record_failure(
            "fail-3", "bridge", "ERR-X", "low", message="down", detected_at=NOW
        )
        assert db.held_rows == 0
        rows = await db.fetchall(
            "SELECT id FROM failures WHERE id NOT LIKE 'filler-%' ORDER BY rowid"
        )
        assert [r["id"] for r in rows] == ["fail-1", "fail-2", "fail-3"]


async def test_a_non_essential_step_still_waits_for_room_and_lands_after_the_held_rows(
    small_fs: Path,
) -> None:
    async with essential_store(small_fs / "s.db", hold_retry_s=3600) as db:
        repo = await repository(db)
        await db.execute(
            "INSERT INTO executions (id, playbook_id, playbook_version, failure_id, error_id,"
            " component, status, started_at) VALUES ('exec-b', ?, '1.0.0', NULL, 'E', 'bridge',"
            " 'running', ?)",
            (PLAYBOOK, isoformat(NOW)),
        )
        await fill_store(db, small_fs)
        with recording_for("mqtt"):
            await repo.record_failure(
                "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
            )
        with recording_for("bridge"):
            waiting = asyncio.create_task(
                repo.start_step(
                    "exec-b", 1, "s", "s", action="log", target=None, attempt=1, started_at=NOW
                )
            )
        await asyncio.sleep(0.3)
        assert not waiting.done()  # today's behaviour: it waits for room
        (small_fs / "filler").unlink()
        row_id = await asyncio.wait_for(waiting, BUDGET_S)
        assert not isinstance(row_id, HeldRowId) and row_id > 0
        assert db.held_rows == 0
        assert await repo.failure("fail-1") is not None
        assert [r["step_id"] for r in await repo.steps("exec-b")] == ["s"]


async def test_past_its_bound_the_hold_falls_back_to_waiting_for_room(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with essential_store(small_fs / "s.db", HoldLimits(max_rows=2), hold_retry_s=3600) as db:
        repo = await repository(db)
        await fill_store(db, small_fs)
        with recording_for("mqtt"):
            await repo.record_failure(
                "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
            )
            await repo.start_execution(
                "exec-1",
                PLAYBOOK,
                "1.0.0",
                "fail-1",
                error_id="ERR-INFRA-MQTT-001",
                component="mqtt",
                started_at=NOW,
            )
            assert db.held_rows == 2
            with pytest.raises(StoreFullError):
                await repo.record_failure(
                    "fail-2", "mqtt", "ERR-INFRA-MQTT-001", "high", message="x", detected_at=NOW
                )
            step = asyncio.create_task(
                repo.start_step(
                    "exec-1", 1, "s", "s", action="log", target=None, attempt=1, started_at=NOW
                )
            )
        await asyncio.sleep(0.3)
        assert not step.done()
        assert "the store's hold is full (2 rows" in caplog.text
        (small_fs / "filler").unlink()
        await asyncio.wait_for(step, BUDGET_S)
        assert db.held_rows == 0
        assert [r["step_id"] for r in await repo.steps("exec-1")] == ["s"]
        assert await repo.failure("fail-2") is None  # refused, not held: never written


async def test_with_the_database_locked_by_another_connection_essential_records_are_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with essential_store(path, busy_timeout_ms=300) as db:
        repo = await repository(db)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with recording_for("mqtt"):
                await repo.record_failure(
                    "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
                )
                await repo.start_execution(
                    "exec-1",
                    PLAYBOOK,
                    "1.0.0",
                    "fail-1",
                    error_id="ERR-INFRA-MQTT-001",
                    component="mqtt",
                    started_at=NOW,
                )
                row = await repo.start_step(
                    "exec-1",
                    1,
                    "restart",
                    "r",
                    action="log",
                    target=None,
                    attempt=1,
                    started_at=NOW,
                )
            assert isinstance(row, HeldRowId)
            assert db.held_rows == 3
            # anything else meets the lock as before: refused, or (a step) waiting for it
            with pytest.raises(StoreLockedError, match="database is locked"):
                await repo.record_failure(
                    "fail-b", "bridge", "ERR-X", "low", message="down", detected_at=NOW
                )
            with pytest.raises(StoreLockedError):
                async with db.transaction():
                    pass
            other.execute("COMMIT")
        finally:
            other.close()
        await until(lambda: db.held_rows == 0)  # the hold's timer wrote them
        # the step's stand-in id now names the real row
        with recording_for("mqtt"):
            await repo.finish_step(row, NOW, 0.1, StepEnd("success", "ok", {}, None, "done"))
        [step] = await repo.steps("exec-1")
        assert step["id"] == row.written_as and step["outcome"] == "success"
        assert await db.integrity_check() == "ok"


async def test_a_store_closed_while_rows_are_held_loses_only_those_rows(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = small_fs / "s.db"
    async with essential_store(path, hold_retry_s=3600) as db:
        repo = await repository(db)
        await repo.record_failure(
            "fail-0", "mqtt", "ERR-INFRA-MQTT-001", "high", message="before", detected_at=NOW
        )
        await fill_store(db, small_fs)
        with recording_for("mqtt"):
            await repo.record_failure(
                "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="held", detected_at=NOW
            )
        committed = len(await db.fetchall("SELECT id FROM failures"))
    with caplog.at_level(logging.ERROR):
        assert "1 held rows it could not write" in caplog.text
    (small_fs / "filler").unlink()
    with sqlite3.connect(path) as plain:
        ids = {row[0] for row in plain.execute("SELECT id FROM failures")}
        assert plain.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "fail-0" in ids and "fail-1" not in ids and len(ids) == committed
