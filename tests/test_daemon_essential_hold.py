"""An essential broker is recovered even when nothing can be written down at once.

A real daemon on a small tmpfs the test mounts, with its real (process-backend)
Mosquitto, ``policy.essentials: [mqtt]`` and no reserve: the disk is full past
the reserve from the start. A broker killed then is restarted and answers; its
records are held in memory (seen on /metrics) and written, with the times they
happened at, once space returns. The same with the database locked by another
process's write transaction instead of a full disk.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config
from tests.filesystems import fill, small_filesystem

pytestmark = pytest.mark.slow

POLICY = {
    "rearm_after_s": 0,
    "flap_changes": 1000,
    "safe_mode_failures": 1000,
    "essentials": ["mqtt"],
}
TOKEN = "hold-test-token"
BUDGET_S = 60.0  # generous: a broken hold leaves the broker down and fails here


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    with small_filesystem(tmp_path / "state", size_kib=24 * 1024):
        yield started
        for daemon in started:
            daemon.cleanup()


class Site:
    """The daemon and what the test reaches it by: its broker's port and its admin port."""

    def __init__(self, tmp_path: Path, daemons: list[Daemon]) -> None:
        self.port = free_port()
        config = write_config(
            tmp_path,
            self.port,
            policy=POLICY,
            store={"reserve_mb": 0, "space_check_s": 0.5},
        )
        data = yaml.safe_load(config.read_text())
        data["admin"]["metrics_token"] = TOKEN
        self.topic_root = data["mqtt"]["topic_root"]
        self.admin = f"http://127.0.0.1:{data['admin']['port']}"
        config.write_text(yaml.safe_dump(data))
        self.daemon = Daemon(config).start()
        daemons.append(self.daemon)
        self.daemon.wait_for_log(r"mqtt is healthy")

    def answers(self) -> bool:
        """A real MQTT round trip on a connection of the test's own."""
        target = ProbeTarget("127.0.0.1", self.port, None, None, f"{self.topic_root}/test")
        try:
            asyncio.run(probe_broker(target, timeout_s=1.0))
        except ProbeError:
            return False
        return True

    def held(self) -> float:
        text = httpx.get(
            f"{self.admin}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        ).text
        found = re.search(r"^graylogic_supervisor_store_held_writes (\S+)$", text, re.M)
        assert found, text
        return float(found.group(1))

    def live_broker(self) -> int | None:
        """The broker the daemon runs now (a killed one not yet reaped is not it)."""
        assert self.daemon.process is not None
        for child in psutil.Process(self.daemon.process.pid).children():
            try:
                if "mosquitto" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def kill_broker(self) -> tuple[float, float]:
        """Kill the broker; returns (wall clock at the kill, seconds until a new one answered).

        The restart can be quicker than this process's first probe, so what is waited
        for is a new broker process that answers, not first a silent port.
        """
        broker = self.daemon.broker_pid()
        killed_at, began = time.time(), time.monotonic()
        os.kill(broker, signal.SIGKILL)
        self.daemon.wait_for(
            lambda: self.live_broker() not in (None, broker) and self.answers(), timeout=BUDGET_S
        )
        return killed_at, time.monotonic() - began

    def recovery(self, execution_id: str) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
        [execution] = self.daemon.query("SELECT * FROM executions WHERE id = ?", (execution_id,))
        steps = self.daemon.query(
            "SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq", (execution_id,)
        )
        return execution, steps

    def check_store(self) -> None:
        daemon = self.daemon
        assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"
        verify = daemon.cli("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr


def fill_the_store(daemon: Daemon) -> Path:
    """Fill the filesystem with the database's WAL emptied first, so that the very
    next commit needs new blocks (a WAL keeps its old frames' room otherwise)."""
    filler = daemon.state_dir / "filler"
    wal = daemon.db_path.with_name(daemon.db_path.name + "-wal")
    for _ in range(50):
        connection = sqlite3.connect(daemon.db_path, timeout=5)
        try:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            connection.close()
        fill(filler)
        if not busy and wal.stat().st_size == 0:
            return filler
        filler.unlink()  # the daemon wrote in between: again
    raise AssertionError("could not empty the WAL before filling the disk")


def _finished_execution(daemon: Daemon, after: int) -> str:
    found = daemon.wait_for_log(
        r"PLAY-MQTT-RECOVER-001 (exec-\S+) for mqtt: resolved", timeout=BUDGET_S, after=after
    )
    return found.group(1)


def test_past_the_reserve_a_killed_essential_broker_is_restarted_and_recorded_later(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    site = Site(tmp_path, daemons)
    daemon = site.daemon
    filler = fill_the_store(daemon)

    mark = len(daemon.log)
    killed_at, answered_after = site.kill_broker()
    execution_id = _finished_execution(daemon, mark)
    daemon.wait_for_log(r"records are held in memory", after=mark)
    held = site.held()
    assert held > 0
    # not in the store yet: held rows are not visible
    assert daemon.query("SELECT id FROM executions WHERE id = ?", (execution_id,)) == []
    print(f"\nfull disk: kill -> broker answering {answered_after:.3f} s; {held:.0f} rows held")

    space_back_at = time.time()
    filler.unlink()
    flushed = daemon.wait_for_log(
        r"the store writes again: (\d+) held rows written in order", timeout=BUDGET_S, after=mark
    )
    print(f"flushed {flushed.group(1)} rows once space returned")
    daemon.wait_for(lambda: site.held() == 0)
    execution, steps = site.recovery(execution_id)
    assert execution["status"] == "resolved"
    # the real times: when it ran, not when it was written
    started = datetime.fromisoformat(execution["started_at"]).timestamp()
    assert killed_at - 1 <= started <= space_back_at
    assert steps and all(s["outcome"] not in ("running", "interrupted") for s in steps)
    assert any(s["action"] in ("restart_service", "start_service") for s in steps)
    for step in steps:
        assert datetime.fromisoformat(step["completed_at"]).timestamp() <= space_back_at
    [failure] = daemon.query("SELECT * FROM failures WHERE id = ?", (execution["failure_id"],))
    assert killed_at - 1 <= datetime.fromisoformat(failure["detected_at"]).timestamp()
    [incident] = daemon.query(
        "SELECT phase, closed_at FROM incidents WHERE id = ?", (execution["incident_id"],)
    )
    assert incident["phase"] == "resolved" and incident["closed_at"] is not None

    # recording goes on as before: the next kill is written at once
    mark = len(daemon.log)
    site.kill_broker()
    next_id = _finished_execution(daemon, mark)
    daemon.wait_for(lambda: daemon.query("SELECT id FROM executions WHERE id = ?", (next_id,)))

    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log
    site.check_store()


def test_with_the_database_locked_by_another_process_a_killed_broker_is_still_recovered(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    site = Site(tmp_path, daemons)
    daemon = site.daemon
    other = sqlite3.connect(daemon.db_path, timeout=5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # held as a stuck CLI or a backup tool would
        mark = len(daemon.log)
        _, answered_after = site.kill_broker()
        execution_id = _finished_execution(daemon, mark)
        held = site.held()
        assert held > 0
        print(f"\nlocked: kill -> broker answering {answered_after:.3f} s; {held:.0f} rows held")
        assert daemon.process is not None and daemon.process.poll() is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    daemon.wait_for(lambda: site.held() == 0, timeout=BUDGET_S)
    execution, steps = site.recovery(execution_id)
    assert execution["status"] == "resolved" and steps

    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log
    site.check_store()


def test_a_daemon_killed_while_records_are_held_loses_those_records_only(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    site = Site(tmp_path, daemons)
    daemon = site.daemon
    mark = len(daemon.log)
    site.kill_broker()
    written = _finished_execution(daemon, mark)
    daemon.wait_for(lambda: site.held() == 0)
    before = daemon.query("SELECT * FROM execution_steps WHERE execution_id = ?", (written,))
    assert before

    other = sqlite3.connect(daemon.db_path, timeout=5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        mark = len(daemon.log)
        site.kill_broker()
        held_id = _finished_execution(daemon, mark)
        assert site.held() > 0
        daemon.kill()  # SIGKILL, with the records of that recovery only in its memory
    finally:
        other.execute("ROLLBACK")
        other.close()

    # what was committed is there, unchanged; the held recovery is not; the store is sound
    after = daemon.query("SELECT * FROM execution_steps WHERE execution_id = ?", (written,))
    assert [tuple(row) for row in after] == [tuple(row) for row in before]
    assert daemon.query("SELECT id FROM executions WHERE id = ?", (held_id,)) == []
    site.check_store()
    # and the next run starts on it as on any other
    daemon.start()
    daemon.wait_for_log(r"mqtt is healthy")
    assert daemon.terminate() == 0
    site.check_store()
