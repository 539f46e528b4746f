"""The daemon's periodic loops meet store errors: retried, logged once per streak, never raised."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from graylogic_supervisor import loops
from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.memory.events import EventRing
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from tests.clocks import ManualClock


async def closed_store(tmp_path: Path) -> Database:
    db = Database(tmp_path / "s.db")
    await db.open()
    await db.close()  # every use now raises StoreClosedError, a StoreError
    return db


async def test_a_nightly_job_on_a_failing_store_retries_then_gives_up_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    memory = FailureMemory(MemoryRepository(await closed_store(tmp_path)), MemoryConfig(), clock)
    caplog.set_level(logging.DEBUG, "graylogic_supervisor.loops")

    await loops.consolidate_memory(memory, clock)

    errors = [r.getMessage() for r in caplog.records if mine(r, logging.ERROR)]
    assert errors == [
        "failure memory consolidation failed, tried again every 10 s until it works:"
        " the store is closed",
        f"failure memory consolidation gave up after {loops.JOB_ATTEMPTS} store errors:"
        " the store is closed",
    ]
    assert clock.monotonic() == (loops.JOB_ATTEMPTS - 1) * loops.STORE_RETRY_S


async def test_watching_people_on_a_failing_store_keeps_trying_and_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    audit = AuditLog(await closed_store(tmp_path))
    task = asyncio.create_task(loops.watch_user_actions(audit, EventRing(clock, 10), clock))
    while clock.monotonic() < 20 * loops.STORE_RETRY_S:  # twenty tries
        await asyncio.sleep(0)
    assert not task.done()  # still trying, never raised
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    errors = [r for r in caplog.records if mine(r, logging.ERROR)]
    assert len(errors) == 1
    assert "reading the audit log for people's actions failed" in errors[0].getMessage()


def mine(record: logging.LogRecord, level: int) -> bool:
    return record.name == "graylogic_supervisor.loops" and record.levelno >= level
