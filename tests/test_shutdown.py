"""A bounded shutdown: every phase has a bound, and the last resort ends the process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from graylogic_supervisor.shutdown import ShutdownDeadline, bounded, run_to_exit
from tests.daemon_process import REPO


async def test_a_phase_that_finishes_in_time_is_clean() -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    assert await bounded("closing the store", quick, 5) is True


async def test_a_phase_that_overruns_is_cancelled_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert await bounded("stopping the services", slow, 0.05) is False
    assert cancelled.is_set()
    assert "stopping the services took longer than 0.1 s; cancelled" in caplog.text


async def test_a_phase_that_ignores_cancellation_is_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # the bug under test

    assert await bounded("flushing the MQTT link", stubborn, 0.05) is False
    assert "flushing the MQTT link ignored cancellation; left behind" in caplog.text
    release.set()


async def test_a_phase_that_fails_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise OSError("disk I/O error")

    assert await bounded("closing the store", broken, 5) is False
    assert "shutdown: closing the store failed: disk I/O error" in caplog.text
    assert "Traceback" in caplog.text


def test_run_to_exit_returns_although_a_task_and_a_thread_will_not_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio.run would wait for ever on both."""
    release = threading.Event()
    stubborn_running = threading.Event()
    left: list[asyncio.Task[None]] = []

    async def main() -> str:
        async def stubborn() -> None:
            while not release.is_set():
                stubborn_running.set()
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue

        left.append(asyncio.get_running_loop().create_task(stubborn(), name="stubborn"))
        asyncio.get_running_loop().run_in_executor(None, release.wait)
        await asyncio.sleep(0)
        return "done"

    try:
        assert run_to_exit(main(), leftover_s=0.2) == "done"
    finally:
        release.set()
    assert stubborn_running.is_set()
    assert "left behind at exit, ignoring cancellation: stubborn" in caplog.text
    assert not left[0].done()
    left[0]._log_destroy_pending = False  # type: ignore[attr-defined]  # left behind on purpose


def test_the_deadline_fires_once_after_its_time() -> None:
    fired: list[float] = []
    deadline = ShutdownDeadline(0.05, fired.append)
    deadline.arm()
    deadline.arm()  # a second SIGTERM keeps the first countdown
    end = time.monotonic() + 30
    while not fired and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.1)
    assert fired == [0.05]


def test_a_disarmed_deadline_does_not_fire() -> None:
    fired: list[float] = []
    deadline = ShutdownDeadline(0.05, fired.append)
    deadline.arm()
    deadline.disarm()
    time.sleep(0.3)
    assert fired == []


STUCK_EXIT = textwrap.dedent(
    """
    import logging, subprocess, sys, threading
    from graylogic_supervisor.shutdown import ShutdownDeadline

    logging.basicConfig(level=logging.INFO)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True)
    print(child.pid, flush=True)
    ShutdownDeadline(0.5).arm()
    # A non-daemon thread that never ends: the interpreter's exit waits for it for ever.
    threading.Thread(target=threading.Event().wait).start()
    """
)


def test_the_last_resort_kills_the_children_and_exits_when_the_exit_hangs() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK_EXIT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        child = int(process.stdout.readline())
        _, stderr = process.communicate(timeout=60)  # without the deadline: never
        assert process.returncode == 1
        assert "shutdown still not finished 0.5 s after it began" in stderr
        assert f"killed child processes [{child}]" in stderr
        end = time.monotonic() + 30
        while not gone(child) and time.monotonic() < end:
            time.sleep(0.02)
        assert gone(child)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
