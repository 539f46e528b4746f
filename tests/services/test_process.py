"""The process backend: real child processes, exits noticed at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.services.manager import Readiness, ServiceManager
from graylogic_supervisor.services.process import (
    CHILD_TAG_VARIABLE,
    ProcessService,
    child_environment,
    stop_orphans,
)
from tests.conftest import free_port

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def service(tmp_path: Path, argv: list[str], exits: list[tuple[str, str]]) -> ProcessService:
    return ProcessService(
        "worker",
        argv,
        run_dir=tmp_path / "run",
        log_path=tmp_path / "logs" / "worker.log",
        on_exit=lambda name, detail: exits.append((name, detail)),
        stop_timeout_s=2,
    )


async def test_an_unexpected_exit_is_reported_within_milliseconds(tmp_path: Path) -> None:
    exits: list[tuple[str, str]] = []
    worker = service(tmp_path, SLEEPER, exits)
    status = await worker.start()
    assert status.running and status.pid
    killed_at = time.perf_counter()
    os.kill(status.pid, signal.SIGKILL)
    while not exits:
        await asyncio.sleep(0.0005)
    assert time.perf_counter() - killed_at < 0.1
    assert exits == [("worker", "killed by SIGKILL")]
    after = await worker.status()
    assert not after.running
    assert after.detail == "killed by SIGKILL"
    await worker.close()


async def test_a_requested_stop_or_restart_is_not_reported_as_a_failure(tmp_path: Path) -> None:
    exits: list[tuple[str, str]] = []
    worker = service(tmp_path, SLEEPER, exits)
    first = await worker.start()
    second = await worker.restart()
    assert second.running and second.pid != first.pid
    stopped = await worker.stop()
    assert not stopped.running
    assert exits == []
    assert not (tmp_path / "run" / "worker.pid").exists()


async def test_a_program_that_cannot_start_raises_a_service_error(tmp_path: Path) -> None:
    worker = service(tmp_path, [str(tmp_path / "missing-binary")], [])
    with pytest.raises(ServiceError, match="worker: cannot start"):
        await worker.start()
    assert not (await worker.status()).running


async def test_output_goes_to_the_service_log(tmp_path: Path) -> None:
    exits: list[tuple[str, str]] = []
    worker = service(tmp_path, [sys.executable, "-c", "print('hello from child')"], exits)
    await worker.start()
    while not exits:
        await asyncio.sleep(0.01)
    assert exits == [("worker", "exited with code 0")]
    assert "hello from child" in (tmp_path / "logs" / "worker.log").read_text()


async def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    worker = ProcessService(
        "stubborn",
        stubborn,
        run_dir=tmp_path / "run",
        log_path=tmp_path / "stubborn.log",
        on_exit=lambda *_: None,
        stop_timeout_s=0.3,
    )
    await worker.start()
    await asyncio.sleep(0.2)  # let it install its handler
    began = time.perf_counter()
    status = await worker.stop()
    assert not status.running
    assert status.detail == "killed by SIGKILL"
    assert time.perf_counter() - began < 3


async def test_a_child_spawned_just_before_the_supervisor_died_is_found_by_its_tag(
    tmp_path: Path,
) -> None:
    """Killed between spawning and recording the pid: the record has no pid yet, and the
    child is known by the pid file its environment names; a twin without it is left."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid_file = run_dir / "worker.pid"
    pid_file.write_text(json.dumps({"pid": None, "argv": SLEEPER}))
    orphan = await asyncio.create_subprocess_exec(
        *SLEEPER, env={**os.environ, CHILD_TAG_VARIABLE: str(pid_file)}
    )
    twin = await asyncio.create_subprocess_exec(*SLEEPER)  # same argv, someone else's
    try:
        await until_running(orphan.pid, SLEEPER)
        assert await stop_orphans(run_dir) == ["worker"]
        assert await orphan.wait() == -signal.SIGKILL
        assert psutil.Process(twin.pid).is_running()
        assert list(run_dir.iterdir()) == []
    finally:
        twin.kill()
        await twin.wait()


async def test_a_started_child_carries_its_tag_and_its_record_is_whole(tmp_path: Path) -> None:
    service = ProcessService(
        "worker",
        SLEEPER,
        run_dir=tmp_path / "run",
        log_path=tmp_path / "w.log",
        on_exit=lambda *_: None,
    )
    status = await service.start()
    try:
        assert status.pid is not None
        environ = psutil.Process(status.pid).environ()
        assert environ[CHILD_TAG_VARIABLE] == str(tmp_path / "run" / "worker.pid")
        record = json.loads((tmp_path / "run" / "worker.pid").read_text())
        assert record == {"pid": status.pid, "argv": SLEEPER}
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["worker.pid"]
    finally:
        await service.stop()


async def until_running(pid: int, argv: list[str]) -> None:
    """The child has exec'd: its command line is the argv (not the parent's, briefly)."""
    async with asyncio.timeout(5):
        while psutil.Process(pid).cmdline() != argv:
            await asyncio.sleep(0.01)


async def test_orphans_recorded_in_pid_files_are_stopped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    orphan = await asyncio.create_subprocess_exec(*SLEEPER)
    (run_dir / "worker.pid").write_text(json.dumps({"pid": orphan.pid, "argv": SLEEPER}))
    # A pid file whose process runs something else must not kill that process.
    bystander = await asyncio.create_subprocess_exec(*SLEEPER, "other")
    (run_dir / "other.pid").write_text(json.dumps({"pid": bystander.pid, "argv": SLEEPER}))
    try:
        assert await stop_orphans(run_dir) == ["worker"]
        assert await orphan.wait() == -signal.SIGKILL
        assert psutil.Process(bystander.pid).is_running()
        assert list(run_dir.glob("*.pid")) == []
    finally:
        bystander.kill()
        await bystander.wait()


def test_children_do_not_inherit_our_systemd_notify_socket() -> None:
    env = child_environment(
        {"PATH": "/bin", "NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1"}, {"EXTRA": "1"}
    )
    assert env == {"PATH": "/bin", "EXTRA": "1"}


async def test_manager_waits_for_the_port_and_fails_fast_when_the_child_dies(
    tmp_path: Path,
) -> None:
    port = free_port()
    listener = [
        sys.executable,
        "-c",
        "import socket, time; time.sleep(0.2); s = socket.socket();"
        f" s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)",
    ]
    manager = ServiceManager(SystemClock())
    manager.add(service(tmp_path, listener, []), Readiness("127.0.0.1", port, 5))
    status = await manager.start("worker")
    assert status.running

    dying = ProcessService(
        "dying",
        [sys.executable, "-c", "raise SystemExit(3)"],
        run_dir=tmp_path / "run",
        log_path=tmp_path / "dying.log",
        on_exit=lambda *_: None,
    )
    manager.add(dying, Readiness("127.0.0.1", free_port(), 5))
    began = time.perf_counter()
    with pytest.raises(ServiceError, match="exited with code 3"):
        await manager.start("dying")
    assert time.perf_counter() - began < 2
    await manager.close()
    assert not (await manager.status("worker")).running
