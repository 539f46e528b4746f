"""The failure memory end to end: a fix learned from the playbook's runs is tried first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config

pytestmark = pytest.mark.slow

WORKER = [sys.executable, "-c", "import time; time.sleep(3600)"]

# The installer's first playbook waits for the service to settle before restarting it.
SLOW_PLAYBOOK = textwrap.dedent(
    """
    id: PLAY-SVC-RECOVER-001
    name: Worker recovery
    version: 1.0.0
    trigger: {component: worker, error_ids: [ERR-SVC-PROC-001]}
    limits: {max_attempts: 3, cooldown_seconds: 1}
    steps:
      - {id: settle, name: Let it settle, action: sleep, params: {seconds: 1}, on_success: restart}
      - {id: restart, name: Restart, action: restart_service, target: worker, on_success: verify}
      - {id: verify, name: Verify, action: wait_for_health, target: worker, on_success: done}
    """
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "worker.yaml").write_text(SLOW_PLAYBOOK)
    config = write_config(
        tmp_path,
        free_port(),
        playbooks=playbooks,
        services=[{"name": "worker", "backend": "process", "argv": WORKER}],
        components={
            "mqtt": {"kind": "mqtt", "service": "mosquitto", "error_id": "ERR-INFRA-MQTT-001"},
            "worker": {"kind": "service", "service": "worker", "error_id": "ERR-SVC-PROC-001"},
        },
        # this test breaks the same service on purpose, again and again
        policy={"rearm_after_s": 0, "flap_changes": 1000, "safe_mode_failures": 1000},
    )
    running = Daemon(config).start()
    yield running
    running.cleanup()


def worker_pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    for child in psutil.Process(daemon.process.pid).children():
        if child.cmdline() == WORKER:
            return child.pid
    raise AssertionError("no worker")


def kill_and_wait(daemon: Daemon, resolved_before: int) -> dict[str, object]:
    os.kill(worker_pid(daemon), signal.SIGKILL)
    rows = daemon.wait_for(
        lambda: (
            (
                r := daemon.query(
                    "SELECT * FROM executions WHERE component = 'worker' AND status = 'resolved'"
                    " ORDER BY started_at"
                )
            )
            and len(r) > resolved_before
            and r
        )
    )
    return dict(rows[-1])


def test_a_fix_learned_from_three_runs_resolves_the_fourth_faster(daemon: Daemon) -> None:
    daemon.wait_for_log(r"worker is healthy")
    by_playbook = [kill_and_wait(daemon, n) for n in range(3)]
    assert [e["kind"] for e in by_playbook] == ["playbook"] * 3
    assert all(e["resolved_by"] == "restart" for e in by_playbook)
    # learned as the third incident closes, just after its execution is recorded
    [pattern] = daemon.wait_for(lambda: daemon.query("SELECT * FROM memory_patterns"))
    assert (pattern["fix_action"], pattern["fix_target"]) == ("restart_service", "worker")

    learned = kill_and_wait(daemon, 3)
    assert learned["kind"] == "learned_fix"
    assert str(learned["playbook_id"]).startswith("PLAY-LEARNED-")
    slowest_learned = float(learned["duration_seconds"])  # type: ignore[arg-type]
    fastest_playbook = min(float(e["duration_seconds"]) for e in by_playbook)  # type: ignore[arg-type]
    assert fastest_playbook > 1.0  # the settle step
    assert slowest_learned < 0.5, (slowest_learned, fastest_playbook)

    [pattern] = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM memory_patterns WHERE times_matched = 1")
    )
    assert (pattern["times_matched"], pattern["times_resolved"]) == (1, 1)
    decisions = daemon.query(
        "SELECT detail FROM audit_log WHERE action = 'memory.decision' ORDER BY seq"
    )
    assert len(decisions) == 4  # every consultation is on record, chosen or not

    why = subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "why",
            str(learned["id"]),
            "--config",
            str(daemon.config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "memory decision: restart_service worker (pattern) worked before: confidence 0.80" in why
    assert "set aside: PLAY-SVC-RECOVER-001" in why
    assert "matched fail-" in why
    assert f"execution {learned['id']} (learned_fix)" in why
