"""Real collaborators for tests: Mosquitto on a free loopback port, SQLite in tmp_path.

The system broker on 1883 (if any) is never touched: every broker here is ours,
started on a port the kernel picked, and stopped by its fixture.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graylogic_supervisor.store.database import Database
from tests.virtual_time import CountingDatabase, DrivenClock, Timed, driven

if TYPE_CHECKING:  # daemon_process imports this module
    from tests.daemon_process import Daemon

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    port: int
    conf: Path
    process: subprocess.Popen[bytes]

    host: str = "127.0.0.1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_broker(directory: Path, port: int | None = None) -> Broker:
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        "persistence false\nlog_dest stderr\nlog_type error\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Broker(port, conf, process)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {process.returncode}") from None
            time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"mosquitto did not listen on {port}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker shared by the tests that only talk to it (unique topics each)."""
    running = start_broker(tmp_path_factory.mktemp("broker"))
    yield running
    running.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own, for tests that kill or stop it."""
    running = start_broker(tmp_path / "broker")
    yield running
    running.stop()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A real SQLite store in the test's directory, migrated, closed afterwards."""
    async with Database(tmp_path / "s.db") as database:
        yield database


@pytest.fixture
async def timed(tmp_path: Path) -> AsyncIterator[Timed]:
    """Virtual time (its driver running) and a real store file the clock knows to wait for."""
    async with driven(DrivenClock()) as clock, CountingDatabase(tmp_path / "s.db", clock) as db:
        yield clock, db


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemon processes a test starts (``daemon_process.start``), cleaned up after it."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.cleanup()
