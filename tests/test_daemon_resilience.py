"""The daemon cannot be turned against its site: one per state directory, a bounded SIGTERM,
a burst of SIGHUPs coalesced. Real daemon processes, a real Mosquitto, a real SQLite file."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from graylogic_supervisor.daemon import SHUTDOWN_TAIL_S
from tests.conftest import free_port
from tests.daemon_process import Daemon, accepts, start, write_config
from tests.test_daemon_bridges import bridge_config

pytestmark = pytest.mark.slow

GRACE_S = 2  # write_config's shutdown_grace_s


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_second_daemon_on_the_same_state_dir_names_the_holder_and_touches_nothing(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    first = start(daemons, config)
    first.wait_for_log(r"mqtt is healthy")
    assert first.process is not None
    broker = first.broker_pid()
    pid_file = first.state_dir / "run" / "mosquitto.pid"
    record = pid_file.read_text()
    conf = first.state_dir / "mosquitto" / "mosquitto.conf"
    conf_written = conf.stat().st_mtime_ns
    executions = first.query("SELECT count(*) FROM executions")[0][0]

    # Another broker port and admin port: only the state directory is shared.
    other = tmp_path / "other"
    other.mkdir()
    second = Daemon(
        write_config(
            other, free_port(), state_dir=str(first.state_dir), admin={"port": free_port()}
        )
    )
    daemons.append(second.start())
    assert second.process is not None
    assert second.process.wait(timeout=60) == 1
    assert (
        f"graylogic-supervisor: state directory {first.state_dir} is in use by pid"
        f" {first.process.pid}, started at " in second.log
    )
    assert "Traceback" not in second.log
    assert "orphan" not in second.log and "broker:" not in second.log  # nothing was done
    # The first one's broker, its pid file, its broker config and its store are untouched...
    assert first.broker_pid() == broker
    assert pid_file.read_text() == record
    assert conf.stat().st_mtime_ns == conf_written
    assert first.query("SELECT count(*) FROM executions")[0][0] == executions
    assert accepts(port)
    # ...and it still supervises: a broker kill is recovered.
    os.kill(broker, signal.SIGKILL)
    first.wait_for(
        lambda: first.query("SELECT 1 FROM executions WHERE status = 'resolved'"), timeout=60
    )
    assert first.process.poll() is None

    # kill -9 frees the lock (the kernel drops a flock with its holder): the next daemon
    # on the directory starts, and reclaims the broker the killed one left.
    orphan = first.broker_pid()
    first.kill()
    third = start(daemons, config)
    third.wait_for_log(r"stopping orphaned mosquitto")
    third.wait_for_log(r"mqtt is healthy")
    assert third.broker_pid() != orphan
    assert third.terminate(timeout=60) == 0


STUCK_PLAYBOOK = textwrap.dedent(
    """
    id: PLAY-MQTT-RECOVER-001
    name: An MQTT recovery stuck in a long step
    version: 1.0.0
    trigger: {component: mqtt, error_ids: [ERR-INFRA-MQTT-001]}
    limits: {max_attempts: 3, cooldown_seconds: 1, timeout_seconds: 3600}
    steps:
      - {id: check_broker, name: Check, action: check_service, target: mosquitto,
         on_success: done, on_failure: settle}
      - {id: settle, name: Wait a long time, action: sleep, params: {seconds: 1800},
         timeout_seconds: 3000, on_success: restart}
      - {id: restart, name: Restart, action: restart_service, target: mosquitto,
         on_success: done}
    """
)

# A service of ours that ignores SIGTERM, and asks for two minutes to stop.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)",
]


def test_sigterm_ends_within_the_grace_and_the_tail_with_every_child_stopped(
    tmp_path: Path, daemons: list[Daemon], capsys: pytest.CaptureFixture[str]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "mqtt.yaml").write_text(STUCK_PLAYBOOK)
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        playbooks=playbooks,
        services=[
            {"name": "stubborn", "backend": "process", "argv": STUBBORN, "stop_timeout_s": 120}
        ],
    )
    daemon = start(daemons, config)
    daemon.wait_for_log(r"mqtt is healthy")
    daemon.wait_for_log(r"started stubborn \(pid \d+\)")
    assert daemon.process is not None
    children = [c.pid for c in psutil.Process(daemon.process.pid).children(recursive=True)]
    assert len(children) == 2  # the broker and the stubborn service
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(
        lambda: daemon.query(
            "SELECT 1 FROM execution_steps WHERE step_id = 'settle' AND outcome = 'running'"
        ),
        timeout=60,
    )
    for _ in range(20):  # and its loops busy: reloads parsing YAML
        daemon.process.send_signal(signal.SIGHUP)

    began = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=120)
    took = time.monotonic() - began
    with capsys.disabled():
        print(f"\nSIGTERM to exit: {took:.2f} s (grace {GRACE_S} s, tail {SHUTDOWN_TAIL_S} s)")

    assert code == 0
    # The stubborn service alone would have held it 120 s; the bound is the grace plus
    # the tail, given a generous multiple for a loaded machine.
    assert took < 3 * (GRACE_S + SHUTDOWN_TAIL_S)
    assert "executions still running after 2 s; they are marked interrupted" in daemon.log
    assert "stopping the services took longer than 3.0 s; cancelled" in daemon.log
    assert "killed child processes" in daemon.log
    daemon.wait_for(lambda: not any(alive(pid) for pid in children), timeout=30)


def test_a_burst_of_sighups_is_coalesced_and_the_daemon_keeps_answering(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = start(daemons, config)
    daemon.wait_for_log(r"mqtt is healthy")
    assert daemon.process is not None
    admin = yaml.safe_load(config.read_text())["admin"]["port"]
    signals = 50
    for _ in range(signals):
        daemon.process.send_signal(signal.SIGHUP)
    # it answers while the reloads run
    assert httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=30).status_code == 200
    daemon.wait_for_log(r"reload applied: ")
    time.sleep(1)  # let any reload still queued finish
    daemon.wait_for(
        lambda: daemon.query("SELECT count(*) FROM audit_log WHERE action = 'config.reload'")[0][0]
    )
    reloads = daemon.query("SELECT count(*) FROM audit_log WHERE action LIKE 'config.reload%'")
    assert 1 <= reloads[0][0] < signals
    assert daemon.log.count("reload applied: ") == reloads[0][0]
    assert daemon.process.poll() is None
    assert daemon.terminate(timeout=60) == 0


def test_the_lock_file_names_the_running_daemon(tmp_path: Path, daemons: list[Daemon]) -> None:
    config = write_config(tmp_path, free_port())
    daemon = start(daemons, config)
    daemon.wait_for_log(r"mqtt is healthy")
    assert daemon.process is not None
    record = yaml.safe_load((daemon.state_dir / "supervisor.lock").read_text())
    assert record["pid"] == daemon.process.pid
    assert "run" in record["argv"] and str(config) in record["argv"]
    assert daemon.terminate(timeout=60) == 0
    assert (daemon.state_dir / "supervisor.lock").read_text() == ""  # nobody holds it now


def test_a_store_nobody_can_write_never_ends_the_daemon_and_the_broker_is_recovered_after(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Another process holds the store's write lock while the broker dies and its bridge goes
    silent: the failure and the bridge's symptom cannot be recorded. Before, the daemon
    ended on "unhandled errors in a TaskGroup", its broker left down."""
    port = free_port()
    daemon = start(daemons, bridge_config(tmp_path, port))
    daemon.wait_for_log(r"mqtt is healthy", timeout=60)
    daemon.wait_for_log(r"bridge-knx is healthy", timeout=60)
    assert daemon.process is not None
    # (a loaded machine may start it slower than the bridge's 1 s window: let that settle)
    daemon.wait_for(
        lambda: daemon.query("SELECT count(*) FROM executions WHERE status = 'running'")[0][0] == 0
    )
    holder = sqlite3.connect(daemon.db_path, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        os.kill(daemon.broker_pid(), signal.SIGKILL)
        daemon.wait_for_log(r"bridge-knx is unhealthy", timeout=60)
        daemon.wait_for_log(r"database is locked", timeout=60)
        # Writes keep failing for a while (each after the store's 5 s busy timeout).
        failed = daemon.wait_for_log(r"database is locked", timeout=60)
        daemon.wait_for_log(r"database is locked", timeout=60, after=failed.end())
        assert daemon.process.poll() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    daemon.wait_for(
        lambda: daemon.query(
            "SELECT 1 FROM executions WHERE component = 'mqtt' AND status = 'resolved'"
        ),
        timeout=120,
    )
    assert accepts(port)
    assert daemon.process.poll() is None
    # A loop that failed on the way was restarted, its cause named (not a bare TaskGroup).
    for line in daemon.log.splitlines():
        if re.search(r"loop \S+ failed: ", line):
            assert re.search(r"Store\w*Error: write failed: database is locked", line), line
