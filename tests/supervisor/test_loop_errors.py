"""The supervisor loop never ends on a store error or on one incident's exception.

Issue 13: with another process holding the store's write lock, a broker crash
made the symptom's record fail, uncaught, and the daemon exited with
"unhandled errors in a TaskGroup". Here the lock is real (a second SQLite
connection holding a write transaction) and so is the exception (the probe's
``OSError`` for a process out of file descriptors).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from graylogic_supervisor.engine.action import StepContext, StepResult
from graylogic_supervisor.supervisor.loop import MAINTENANCE_CHECK_S, STORE_RETRY_S
from tests.supervisor.test_loop import Harness, bridge, eventually, open_harness

LOOP_LOGGER = "graylogic_supervisor.supervisor.loop"


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process's write transaction on the store, held for the block."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@asynccontextmanager
async def running(h: Harness) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(h.supervisor.run())
    try:
        yield task
    finally:
        h.supervisor.stop_accepting()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def fixes(h: Harness, component: str) -> None:
    """The component's fix works: its probe is healthy afterwards."""

    async def fix(ctx: StepContext) -> StepResult:
        h.probe_health[component] = True
        return StepResult.ok(f"{component} restarted")

    h.fix.answers = [fix]


def loop_errors(caplog: pytest.LogCaptureFixture, component: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == LOOP_LOGGER
        and r.levelno >= logging.ERROR
        and f" of {component}" in r.getMessage()
    ]


async def test_a_locked_store_during_a_broker_crash_never_ends_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOOP_LOGGER)
    async with open_harness(tmp_path, extra=bridge(depends_on=["mqtt"])) as h:
        await h.seed()
        await h.db.fetchall("PRAGMA busy_timeout = 50")  # fail fast; the lock is real
        fixes(h, "mqtt")
        h.probe_health = {"mqtt": False, "bridge-knx": False}
        async with running(h) as task:
            with write_lock(tmp_path / "s.db"):
                h.monitor.report("mqtt", False, "broker killed")
                h.monitor.report("bridge-knx", False, "heartbeat missing")
                await h.clock.sleep(3.5 * STORE_RETRY_S)  # three tries, each one refused
                assert not task.done()
                assert await h.incident_rows() == []  # nothing could be written
            # The lock is gone: the broker is taken up again and recovered.

            async def recovered() -> bool:
                return await h.statuses() == ["resolved"] and "mqtt" not in h.supervisor.recovering

            await eventually(h.clock, recovered, timeout=3 * STORE_RETRY_S)
            assert not task.done()
            [incident] = [r for r in await h.incident_rows() if r["component"] == "mqtt"]
            assert incident["phase"] == "resolved"
    # Logged once each, with the cause, however often it was tried again.
    [broker] = loop_errors(caplog, "mqtt")
    assert broker.getMessage().startswith("cannot record the recovery of mqtt, tried again")
    assert "database is locked" in broker.getMessage()
    [symptom] = loop_errors(caplog, "bridge-knx")
    assert symptom.getMessage().startswith("cannot record the health change of bridge-knx")
    repeats = [
        r for r in caplog.records if r.levelno == logging.DEBUG and "failed again" in r.getMessage()
    ]
    assert len(repeats) >= 2
    assert any("handled normally again" in r.getMessage() for r in caplog.records)


async def test_one_incidents_exception_pauses_that_component_while_others_recover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOOP_LOGGER)
    async with open_harness(tmp_path, grace_s=0.1, extra=bridge()) as h:
        await h.seed()
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001")
        h.healthy_on_probe = False
        # A prober's own bug (an OSError would be "could not tell", health/monitor.py)
        h.probe_raises["mqtt"] = [ValueError("a bug in the prober")] * 2

        async def fix(ctx: StepContext) -> StepResult:
            h.probe_health[ctx.failure.component] = True
            return StepResult.ok("restarted")

        h.fix.answers = [fix]
        async with running(h) as task:
            h.monitor.report("mqtt", False, "broker killed")
            h.monitor.report("bridge-knx", False, "heartbeat missing")

            async def bridge_recovered() -> bool:
                rows = await h.incident_rows()
                return any(
                    r["component"] == "bridge-knx" and r["phase"] == "resolved" for r in rows
                )

            await eventually(h.clock, bridge_recovered)
            assert "mqtt" in h.supervisor.recovering  # paused, not given up
            assert not task.done()

            async def broker_recovered() -> bool:
                rows = await h.incident_rows()
                return any(r["component"] == "mqtt" and r["phase"] == "resolved" for r in rows)

            await eventually(h.clock, broker_recovered, timeout=3 * STORE_RETRY_S)
            assert h.clock.monotonic() >= 2 * STORE_RETRY_S  # two pauses, one per error
            assert not task.done()
    [error] = loop_errors(caplog, "mqtt")
    assert "ValueError: a bug in the prober" in error.getMessage()
    assert error.exc_info is not None  # a bug: its traceback, once


async def test_the_maintenance_check_outlives_a_locked_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOOP_LOGGER)
    async with open_harness(tmp_path) as h:
        await h.db.fetchall("PRAGMA busy_timeout = 50")
        await h.controls.start_maintenance(
            "mqtt", 1, "replacing the switch", by="alice", now=h.clock.now()
        )
        async with running(h) as task:
            with write_lock(tmp_path / "s.db"):
                await h.clock.sleep(4 * MAINTENANCE_CHECK_S)  # each check's write refused
                assert not task.done()
            await h.clock.sleep(2 * MAINTENANCE_CHECK_S)
            assert not task.done()
            [window] = await h.controls.windows()
            assert window["ended_by"] == "supervisor"  # ended once the store took it
    [error] = loop_errors(caplog, "maintenance windows")
    assert "database is locked" in error.getMessage()
    assert any(
        "maintenance windows: handled normally again" in r.getMessage() for r in caplog.records
    )


async def test_a_new_failure_during_the_pause_after_an_error_is_taken_up_at_once(
    tmp_path: Path,
) -> None:
    """The recovery worked but its bookkeeping failed (here a prober's bug after the
    run): the broker dying again meanwhile must not wait out the 10 s pause."""
    async with open_harness(tmp_path) as h:
        await h.seed()

        async def fix(ctx: StepContext) -> StepResult:
            h.monitor.report("mqtt", True, "restarted")
            return StepResult.ok("restarted")

        h.fix.answers = [fix]
        h.probe_health["mqtt"] = True
        h.probe_raises["mqtt"] = [ValueError("a bug after the run")]
        async with running(h) as task:
            h.monitor.report("mqtt", False, "killed")

            async def fixed(times: int) -> bool:
                return h.fix.calls >= times

            await eventually(h.clock, lambda: fixed(1))
            await h.clock.sleep(1.0)
            assert "mqtt" in h.supervisor.recovering  # the pause after the error
            h.monitor.report("mqtt", False, "killed again")
            await eventually(h.clock, lambda: fixed(2), timeout=2)  # not STORE_RETRY_S
            assert not task.done()
