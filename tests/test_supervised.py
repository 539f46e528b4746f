"""One loop's error never ends the daemon: each loop is restarted, logged once, counted."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.supervised import LoopSupervisor, RestartPolicy
from tests.clocks import ManualClock


class SleepLog(ManualClock):
    """A manual clock that remembers every sleep (the restart backoffs)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


def restarts(metrics: Metrics, loop: str) -> float:
    value = metrics.registry.get_sample_value(
        "graylogic_supervisor_loop_restarts_total", {"loop": loop}
    )
    return value or 0.0


def keeper(clock: SleepLog, metrics: Metrics, **policy: float) -> LoopSupervisor:
    return LoopSupervisor(clock, random.Random(7), metrics, RestartPolicy(**policy))


async def test_a_failing_loop_is_restarted_with_capped_backoff_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = SleepLog(), Metrics("test")
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 8:
            done.set()
            await asyncio.Event().wait()  # the eighth run stays up
        raise OSError(24, "Too many open files")

    caplog.set_level(logging.DEBUG, "graylogic_supervisor.supervised")
    task = asyncio.create_task(
        keeper(clock, metrics, initial_s=1, max_s=8, jitter=0.2).run("probes", flaky)
    )
    await asyncio.wait_for(done.wait(), 30)
    assert restarts(metrics, "probes") == 7
    # 1, 2, 4, 8, 8, 8, 8 seconds, each within 20 % either way: capped and jittered
    for delay, nominal in zip(clock.sleeps, [1, 2, 4, 8, 8, 8, 8], strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert len(set(clock.sleeps)) == len(clock.sleeps)  # jittered, not a fixed cadence
    # The cause is logged once with its traceback; its repeats on one line each.
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1
    assert "loop probes failed: OSError" in with_traceback[0].getMessage()
    assert "Too many open files" in caplog.text
    assert "again (7 times in a row)" in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_loop_that_ran_long_enough_before_failing_restarts_quickly_again() -> None:
    clock, metrics = SleepLog(), Metrics("test")
    runs = 0
    done = asyncio.Event()

    async def fails_after_a_while() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:
            done.set()
            await asyncio.Event().wait()
        if runs == 3:
            clock.advance(600)  # a long healthy stretch, then the same failure
        raise RuntimeError("boom")

    task = asyncio.create_task(
        keeper(clock, metrics, initial_s=1, max_s=30, jitter=0, stable_s=60).run(
            "learning", fails_after_a_while
        )
    )
    await asyncio.wait_for(done.wait(), 30)
    assert clock.sleeps == [1, 2, 1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_loop_that_returns_is_started_again_and_the_hook_runs_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = SleepLog(), Metrics("test")
    events: list[str] = []
    done = asyncio.Event()

    async def returns() -> None:
        events.append("run")
        if len(events) >= 4:
            done.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(
        keeper(clock, metrics).run("web", returns, on_restart=lambda: events.append("hook"))
    )
    await asyncio.wait_for(done.wait(), 30)
    assert events == ["run", "hook", "run", "hook", "run"]
    assert "loop web ended by itself" in caplog.text
    assert restarts(metrics, "web") == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_fatal_error_still_ends_it_and_is_not_counted() -> None:
    clock, metrics = SleepLog(), Metrics("test")

    class Taken(Exception):
        pass

    async def cannot_listen() -> None:
        raise Taken("address in use")

    with pytest.raises(Taken):
        await keeper(clock, metrics).run(
            "web", cannot_listen, fatal=lambda error: isinstance(error, Taken)
        )
    assert restarts(metrics, "web") == 0


async def test_cancelling_it_cancels_the_loop_which_cleans_up() -> None:
    clock, metrics = SleepLog(), Metrics("test")
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def polite() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(keeper(clock, metrics).run("reload", polite))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()
    assert restarts(metrics, "reload") == 0


async def test_a_loop_that_swallows_its_cancellation_is_cancelled_again_then_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = SleepLog(), Metrics("test")
    started = asyncio.Event()
    cancels = 0
    release = asyncio.Event()

    async def stubborn() -> None:
        nonlocal cancels
        started.set()
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1  # the bug under test: a swallowed cancellation

    supervisor = keeper(clock, metrics, cancel_wait_s=0.3, recancel_s=0.05)
    task = asyncio.create_task(supervisor.run("mqtt-link", stubborn))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)  # ends although its loop never does
    assert cancels >= 2  # cancelled again while it swallowed them
    assert "loop mqtt-link ignored cancellation for 0.3 s; left behind" in caplog.text
    [left] = supervisor.abandoned
    assert not left.done()
    release.set()
    left.cancel()
    await asyncio.wait([left], timeout=10)
    assert left.done()


async def test_a_task_groups_unhandled_errors_are_named_by_their_causes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = SleepLog(), Metrics("test")
    runs = 0
    done = asyncio.Event()

    async def group_of_probes() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            done.set()
            await asyncio.Event().wait()

        async def probe() -> None:
            raise OSError(24, "Too many open files")

        async with asyncio.TaskGroup() as group:
            group.create_task(probe())

    task = asyncio.create_task(keeper(clock, metrics).run("health-probes", group_of_probes))
    await asyncio.wait_for(done.wait(), 30)
    assert "loop health-probes failed: OSError: [Errno 24] Too many open files;" in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
