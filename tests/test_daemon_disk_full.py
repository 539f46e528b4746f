"""The state directory on a small filesystem that fills up, with a real daemon and broker.

Once the disk is full the daemon keeps supervising (a killed broker is restarted
and recorded, thanks to the store's reserve), reports ERR-SYS-DISK-001, loses
nothing it had committed, and carries on writing when space returns. Past the
reserve, a recovery waits for space rather than running unrecorded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, write_config
from tests.filesystems import fill, small_filesystem

pytestmark = pytest.mark.slow

POLICY = {"rearm_after_s": 0, "flap_changes": 1000, "safe_mode_failures": 1000}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """The state directory is a 24 MiB tmpfs; each test starts its daemon on it."""
    started: list[Daemon] = []
    with small_filesystem(tmp_path / "state", size_kib=24 * 1024):
        yield started
        for daemon in started:
            daemon.cleanup()


def start(
    daemons: list[Daemon],
    tmp_path: Path,
    reserve_mb: float,
    disk_component: bool = False,
    playbooks: Path | None = None,
) -> Daemon:
    config = write_config(
        tmp_path,
        free_port(),
        playbooks,
        policy=POLICY,
        store={"reserve_mb": reserve_mb, "space_check_s": 0.5},
    )
    if disk_component:
        data = yaml.safe_load(config.read_text())
        data["components"]["disk"] = {  # watches the state directory's filesystem
            "kind": "disk",
            "error_id": "ERR-SYS-DISK-001",
            "check_interval_s": 1,
            # the 2 MiB reserve is 8% of this small filesystem: once it is given back the
            # disk must still read as too full (92%), whichever of the probe and a write
            # meets the full disk first
            "max_percent": 80,
        }
        config.write_text(yaml.safe_dump(data))
    daemon = Daemon(config).start()
    daemons.append(daemon)
    daemon.wait_for_log(r"mqtt is healthy")
    return daemon


def settling_playbooks(tmp_path: Path) -> Path:
    """The shipped playbooks, the broker's with a 2 s pause first (time to fill the disk)."""
    directory = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", directory)
    mqtt = directory / "mqtt-recover.yaml"
    mqtt.write_text(
        mqtt.read_text().replace(
            "steps:\n",
            "steps:\n  - {id: settle, name: Let it settle, action: sleep,"
            " params: {seconds: 2}, on_success: check_broker}\n",
            1,
        )
    )
    return directory


def _resolved(daemon: Daemon) -> int:
    rows = daemon.query(
        "SELECT count(*) AS n FROM executions WHERE status = 'resolved'"
        " AND playbook_id = 'PLAY-MQTT-RECOVER-001'"
    )
    return int(rows[0]["n"])


def _kill_broker_and_wait_for_recovery(daemon: Daemon, resolved_before: int) -> None:
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(lambda: _resolved(daemon) == resolved_before + 1, timeout=20)
    daemon.wait_for_log(r"mqtt is healthy", after=len(daemon.log) - 2000)


def test_a_full_disk_is_reported_and_recoveries_are_still_recorded(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = start(daemons, tmp_path, reserve_mb=2, disk_component=True)
    reserve = daemon.state_dir / "store.reserve"
    daemon.wait_for(reserve.exists)

    _kill_broker_and_wait_for_recovery(daemon, 0)
    committed = daemon.query("SELECT id, status FROM executions ORDER BY id")

    # Someone else fills the disk: the disk component notices, its failure is recorded
    # in the room the reserve gives back, and the alarm says what it is.
    fill(daemon.state_dir / "filler")
    daemon.wait_for_log(r"disk is unhealthy: disk .* used > 80%", timeout=10)
    daemon.wait_for_log(r"the disk holding the store is full", timeout=10)
    assert not reserve.exists()
    daemon.wait_for(
        lambda: daemon.query("SELECT id FROM failures WHERE error_id = 'ERR-SYS-DISK-001'")
    )

    # still supervising: a broker killed on a full disk is restarted, and recorded
    mark = len(daemon.log)
    _kill_broker_and_wait_for_recovery(daemon, 1)
    assert "Traceback" not in daemon.log[mark:]

    # space returns: the reserve is taken back and writing carries on as before
    (daemon.state_dir / "filler").unlink()
    daemon.wait_for_log(r"space is back under the store", timeout=10)
    assert reserve.exists()
    _kill_broker_and_wait_for_recovery(daemon, 2)

    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log
    # nothing committed before the disk filled was lost or changed
    after = {row["id"]: row["status"] for row in daemon.query("SELECT id, status FROM executions")}
    for row in committed:
        assert after[row["id"]] == row["status"]
    assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"
    verify = daemon.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_with_no_room_left_a_recovery_waits_for_space_and_records_everything(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = start(daemons, tmp_path, reserve_mb=0, playbooks=settling_playbooks(tmp_path))
    broker = daemon.broker_pid()

    # the disk fills while a recovery is under way: its next step waits for room
    os.kill(broker, signal.SIGKILL)
    daemon.wait_for(lambda: daemon.query("SELECT id FROM execution_steps WHERE step_id = 'settle'"))
    fill(daemon.state_dir / "filler")
    daemon.wait_for_log(r"a step cannot be recorded, the disk is full", timeout=10)
    assert daemon.process is not None and daemon.process.poll() is None
    [running] = daemon.query("SELECT id, status FROM executions")
    assert running["status"] == "running"
    with pytest.raises(AssertionError):
        daemon.broker_pid()  # nothing is done that could not be written down
    # the admin page still reads; a login, which must be recorded, is refused as such
    base = f"http://127.0.0.1:{yaml.safe_load(daemon.config.read_text())['admin']['port']}"
    with httpx.Client(base_url=base, timeout=5) as web:
        assert web.get("/healthz").status_code == 200
        [token] = re.findall(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
        login = web.post("/login", data={"csrf_token": token, "user": "admin", "password": "x"})
        assert login.status_code == 503, login.text
        assert "disk is full" in login.text and "Traceback" not in login.text
    # a reload's record cannot be written either: said so, and the daemon carries on
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log(r"the reload could not be recorded, send SIGHUP again", timeout=10)

    # space returns: the run goes on from where it waited, and every step is there
    (daemon.state_dir / "filler").unlink()
    daemon.wait_for(lambda: _resolved(daemon) == 1, timeout=20)
    rows = daemon.query(
        "SELECT step_id, outcome FROM execution_steps WHERE execution_id = ? ORDER BY seq",
        (running["id"],),
    )
    assert [r["step_id"] for r in rows][:2] == ["settle", "check_broker"]
    assert "restart" in [r["step_id"] for r in rows]
    assert all(r["outcome"] not in ("running", "interrupted") for r in rows)
    daemon.wait_for(daemon.broker_pid)

    # full before a failure can even be recorded: the daemon keeps running and
    # takes the failure up again once it can write
    daemon.wait_for_log(r"mqtt is healthy", after=len(daemon.log) - 3000)
    fill(daemon.state_dir / "filler")
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for_log(r"cannot record the recovery of mqtt, tried again", timeout=10)
    (daemon.state_dir / "filler").unlink()
    daemon.wait_for(lambda: _resolved(daemon) == 2, timeout=30)

    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log
    assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"
