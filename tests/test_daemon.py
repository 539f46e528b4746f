"""The daemon end to end: a real child process, a real Mosquitto, a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiomqtt
import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.daemon_process import (
    REPO,
    Daemon,
    accepts,
    first_admin_password,
    start,
    write_config,
)

pytestmark = pytest.mark.slow


def started_healthy(daemon: Daemon) -> None:
    daemon.wait_for_log(r"mqtt is healthy")


def logged_in_client(daemon: Daemon, base: str) -> httpx.Client:
    """A client logged in as the first-run admin, with the password the daemon wrote."""
    password = first_admin_password(daemon.state_dir)
    web = httpx.Client(base_url=base, timeout=5)
    form = web.get("/login").text
    [token] = re.findall(r'name="csrf_token" value="([^"]+)"', form)
    answer = web.post("/login", data={"csrf_token": token, "user": "admin", "password": password})
    assert answer.status_code == 303, answer.text
    return web


def steps(daemon: Daemon, execution_id: str) -> list[tuple[str, str, str | None]]:
    rows = daemon.query(
        "SELECT step_id, outcome, transitioned_to FROM execution_steps"
        " WHERE execution_id = ? ORDER BY seq",
        (execution_id,),
    )
    return [(r["step_id"], r["outcome"], r["transitioned_to"]) for r in rows]


def test_killed_broker_is_restarted_by_the_tracked_playbook(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    assert f"process backend on 127.0.0.1:{port}" in daemon.log
    old_pid = daemon.broker_pid()

    os.kill(old_pid, signal.SIGKILL)

    execution = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM executions WHERE status != 'running'")
    )[0]
    assert execution["status"] == "resolved"
    assert execution["playbook_id"] == "PLAY-MQTT-RECOVER-001"
    assert execution["playbook_version"] == "1.0.0"
    assert execution["error_id"] == "ERR-INFRA-MQTT-001"
    assert execution["resolved_by"] == "restart"
    assert execution["playbook_sufficient"] == 1
    assert execution["duration_seconds"] < 5
    assert steps(daemon, execution["id"]) == [
        ("check_broker", "failure", "restart"),
        ("restart", "success", "verify"),
        ("verify", "success", "done"),
    ]
    [failure] = daemon.query("SELECT * FROM failures WHERE id = ?", (execution["failure_id"],))
    assert failure["component"] == "mqtt"
    assert failure["severity"] == "critical"
    assert accepts(port)
    assert daemon.broker_pid() != old_pid
    # The learning loop counted it: the version's metrics and its path are in the store.
    [counted] = daemon.wait_for(
        lambda: daemon.query(
            "SELECT * FROM learning_version_metrics WHERE playbook_id = 'PLAY-MQTT-RECOVER-001'"
        )
    )
    assert (counted["executions"], counted["resolutions"]) == (1, 1)
    # counted after the supervisor's fresh probe wrote its verdict on the run
    [judged] = daemon.query("SELECT healthy_after FROM executions WHERE id = ?", (execution["id"],))
    assert judged["healthy_after"] == 1
    [path] = daemon.query("SELECT path FROM learning_paths")
    assert json.loads(path["path"]) == ["check_broker", "restart", "verify", "done"]


async def test_status_topics_show_health_and_the_last_execution(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(lambda: daemon.query("SELECT id FROM executions WHERE status = 'resolved'"))
    # the process exit can be seen (and recovered) before the link notices its loss
    lost = daemon.wait_for_log(r"MQTT link to .* lost: ")
    daemon.wait_for_log(r"MQTT link to .* up", after=lost.end())

    root = f"t{port}"
    wanted = {
        f"{root}/health/supervisor",
        f"{root}/supervisor/health/mqtt",
        f"{root}/supervisor/executions/mqtt",
    }
    seen: dict[str, dict[str, object]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-reader") as client:
        await client.subscribe(f"{root}/#")
        async with asyncio_timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen[str(message.topic)] = json.loads(message.payload)
                if wanted <= seen.keys():
                    break
    assert seen[f"{root}/health/supervisor"]["status"] == "online"
    assert seen[f"{root}/supervisor/health/mqtt"]["status"] == "healthy"
    progress = seen[f"{root}/supervisor/executions/mqtt"]
    assert progress["status"] == "resolved"
    assert progress["playbook"] == "PLAY-MQTT-RECOVER-001"
    assert progress["resolved_by"] == "restart"
    assert (progress["steps_done"], progress["steps_total"]) == (3, 4)
    assert progress["elapsed_s"] >= 0
    assert progress["remaining_s"] is None  # no resolved run of this version before it


def asyncio_timeout(seconds: float):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.timeout(seconds)


def test_a_broker_that_cannot_restart_is_escalated(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    # Break the broker's configuration, as a careless edit would, then kill it.
    (daemon.state_dir / "mosquitto" / "mosquitto.conf").write_text("no_such_option true\n")
    os.kill(daemon.broker_pid(), signal.SIGKILL)

    execution = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM executions WHERE status != 'running'"), timeout=30
    )[0]
    assert execution["status"] == "escalated"
    assert execution["playbook_sufficient"] == 0
    recorded = steps(daemon, execution["id"])
    assert recorded == [
        ("check_broker", "failure", "restart"),
        ("restart", "failure", "retry:restart"),
        ("restart", "failure", "escalate"),
    ]
    [restart] = daemon.query(
        "SELECT error FROM execution_steps WHERE execution_id = ? AND seq = 3", (execution["id"],)
    )
    assert "mosquitto" in restart["error"]
    daemon.wait_for_log(rf"PLAY-MQTT-RECOVER-001 {execution['id']} for mqtt: escalated")
    assert daemon.process is not None and daemon.process.poll() is None  # still supervising


SLOW_PLAYBOOK = textwrap.dedent(
    """
    id: PLAY-MQTT-RECOVER-001
    name: Slow MQTT recovery
    version: 1.0.0
    trigger: {component: mqtt, error_ids: [ERR-INFRA-MQTT-001]}
    limits: {max_attempts: 3, cooldown_seconds: 1}
    steps:
      - {id: check_broker, name: Check, action: check_service, target: mosquitto,
         on_success: done, on_failure: settle}
      - {id: settle, name: Let the bus settle, action: sleep, params: {seconds: 30},
         timeout_seconds: 60, on_success: restart}
      - {id: restart, name: Restart, action: restart_service, target: mosquitto,
         on_success: done}
    """
)


def test_daemon_killed_mid_execution_leaves_an_interrupted_execution(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "slow.yaml").write_text(SLOW_PLAYBOOK)
    port = free_port()
    config = write_config(tmp_path, port, playbooks=playbooks)
    daemon = start(daemons, config)
    started_healthy(daemon)
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(
        lambda: daemon.query(
            "SELECT 1 FROM execution_steps WHERE step_id = 'settle' AND outcome = 'running'"
        )
    )
    daemon.kill()  # kill -9 in the middle of the "settle" step

    [running] = daemon.query("SELECT id, status FROM executions")
    assert running["status"] == "running"
    assert steps(daemon, running["id"]) == [
        ("check_broker", "failure", "settle"),
        ("settle", "running", None),
    ]

    restarted = start(daemons, config)
    restarted.wait_for_log(rf"execution {running['id']} was running .*: interrupted")
    restarted.wait_for_log(r"mqtt is healthy")
    [after] = restarted.query("SELECT * FROM executions WHERE id = ?", (running["id"],))
    assert after["status"] == "interrupted"
    assert after["completed_at"] is not None
    assert steps(restarted, running["id"]) == [
        ("check_broker", "failure", "settle"),
        ("settle", "interrupted", None),
    ]
    assert restarted.query("PRAGMA integrity_check")[0][0] == "ok"
    assert accepts(port)


def test_a_restarted_daemon_reclaims_its_orphaned_broker_and_its_port(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = start(daemons, config)
    started_healthy(daemon)
    orphan = daemon.broker_pid()
    daemon.kill()
    assert accepts(port)  # the orphan still serves

    restarted = start(daemons, config)
    restarted.wait_for_log(r"stopping orphaned mosquitto")
    started_healthy(restarted)
    assert f"process backend on 127.0.0.1:{port}" in restarted.log
    assert restarted.broker_pid() != orphan


def test_sigterm_stops_cleanly_with_the_broker_and_an_offline_status(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    broker = daemon.broker_pid()
    assert daemon.terminate() == 0
    assert "stopped" in daemon.log
    assert not accepts(port)
    with pytest.raises(ProcessLookupError):
        os.kill(broker, 0)


def test_a_port_held_by_another_process_is_left_alone(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        daemon = start(daemons, write_config(tmp_path, taken))
        started_healthy(daemon)
        chosen = int(daemon.wait_for_log(r"process backend on 127\.0\.0\.1:(\d+)").group(1))
        assert chosen != taken
        assert f"port {taken} is held by another process" in daemon.log
    finally:
        holder.close()


async def test_a_killed_daemon_is_marked_offline_by_its_last_will(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    daemon.wait_for_log(r"MQTT link to .* up")
    daemon.kill()  # its broker, in a session of its own, keeps running
    topic = f"t{port}/health/supervisor"
    async with aiomqtt.Client("127.0.0.1", port, identifier="will-reader") as client:
        await client.subscribe(topic)
        async with asyncio_timeout(20):  # the broker gives up on the client after 1.5 keepalives
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if json.loads(message.payload)["status"] == "offline":
                    break


def test_systemd_is_told_ready_watchdog_and_stopping(tmp_path: Path, daemons: list[Daemon]) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = tmp_path / "notify.sock"
    notify.bind(str(address))
    notify.settimeout(10)
    try:
        port = free_port()
        config = write_config(tmp_path, port)
        daemon = Daemon(config, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "200000"})
        daemons.append(daemon.start())
        received: list[str] = []
        while "READY=1" not in received or received.count("WATCHDOG=1") < 2:
            received.append(notify.recv(4096).decode())
        started_healthy(daemon)
        assert daemon.terminate() == 0
        while "STOPPING=1" not in received:
            received.append(notify.recv(4096).decode())
        assert any(m.startswith("STATUS=supervising mqtt") for m in received)
        # The broker, our child, was not given our socket.
        assert "unexpected" not in daemon.log
    finally:
        notify.close()


def test_sigint_stops_as_cleanly_as_sigterm(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port))
    started_healthy(daemon)
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=15) == 0
    assert not accepts(port)


def test_embedded_defaults_run_anywhere_and_say_which_broker_they_chose(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(None, cwd=tmp_path, log_format="json")
    daemons.append(daemon.start())
    daemon.wait_for_log(r'"message": "mqtt is healthy')
    records = [json.loads(line) for line in daemon.log.splitlines() if line.startswith("{")]
    [choice] = [r for r in records if r["message"].startswith("broker: ")]
    if Path("/run/systemd/system").is_dir():
        assert "through systemd" in choice["message"]
    else:
        assert "our own Mosquitto through the process backend on 127.0.0.1:" in choice["message"]
        assert "(systemd is not PID 1" in choice["message"]
    assert (tmp_path / ".state" / "supervisor.db").exists()
    seeded = [r for r in records if r.get("playbook") == "PLAY-MQTT-RECOVER-001"]
    assert seeded, "log records carry the playbook field"
    assert daemon.terminate() == 0


def test_sighup_with_a_broken_playbook_keeps_the_running_configuration(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shipped = (REPO / "playbooks" / "mqtt-recover.yaml").read_text()
    (playbooks / "mqtt.yaml").write_text(shipped)
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port, playbooks=playbooks))
    started_healthy(daemon)
    assert daemon.process is not None

    (playbooks / "mqtt.yaml").write_text(
        shipped.replace("version: 1.0.0", "version: 1.1.0").replace(
            "on_failure: restart", "on_failure: restrat", 1
        )
    )
    daemon.process.send_signal(signal.SIGHUP)
    refused = daemon.wait_for_log(r"reload refused: kept the running configuration: (.*)")
    assert "mqtt.yaml:" in refused.group(1)
    assert "on_failure: transition to unknown step 'restrat'" in refused.group(1)
    [active] = daemon.query("SELECT version FROM playbook_versions WHERE active = 1")
    assert active["version"] == "1.0.0"

    (playbooks / "mqtt.yaml").write_text(shipped.replace("version: 1.0.0", "version: 1.1.0"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log(r"reload applied: 1 playbooks \(PLAY-MQTT-RECOVER-001 1.1.0 added\)")
    [active] = daemon.query("SELECT version FROM playbook_versions WHERE active = 1")
    assert active["version"] == "1.1.0"
    actions = [r["action"] for r in daemon.query("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == ["user.add", "config.reload_refused", "config.reload"]  # first-run admin
    assert daemon.process.poll() is None


async def test_home_assistant_discovers_the_supervisor_sensors(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = start(daemons, write_config(tmp_path, port, site={"name": "villa 7"}))
    started_healthy(daemon)
    root = f"t{port}"
    configs: dict[str, dict[str, object]] = {}
    state: dict[str, object] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="ha") as client:
        await client.subscribe("homeassistant/#")
        await client.subscribe(f"{root}/supervisor/state")
        async with asyncio_timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if str(message.topic).startswith("homeassistant/"):
                    configs[str(message.topic)] = json.loads(message.payload)
                else:
                    state = json.loads(message.payload)
                if len(configs) == 7 and state:
                    break
    node = "graylogic_supervisor_villa_7"
    assert set(configs) == {
        f"homeassistant/sensor/{node}/health/config",
        f"homeassistant/sensor/{node}/termination_rate/config",
        f"homeassistant/binary_sensor/{node}/safe_mode/config",
        f"homeassistant/sensor/{node}/open_incidents/config",
        f"homeassistant/sensor/{node}/pending_recommendations/config",
        f"homeassistant/sensor/{node}/pending_recommendations_high/config",
        f"homeassistant/sensor/{node}/component_mqtt/config",  # one per supervised component
    }
    assert configs[f"homeassistant/sensor/{node}/component_mqtt/config"]["state_topic"] == (
        f"{root}/supervisor/health/mqtt"
    )
    health = configs[f"homeassistant/sensor/{node}/health/config"]
    assert health["availability_topic"] == f"{root}/health/supervisor"
    assert health["unique_id"] == f"{node}_health"
    assert state == {
        "termination_rate_percent": None,  # too few executions to mean anything
        "executions_last_hour": 0,
        "safe_mode": False,
        "open_incidents": 0,
        "recovering": [],
        "pending_recommendations": 0,
        "pending_recommendations_high": 0,
    }


def test_a_broker_killed_over_and_over_is_capped_escalated_then_tried_again(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    import psutil

    port = free_port()
    config = write_config(
        tmp_path, port, policy={"open_cooldown_s": 2, "rearm_after_s": 30, "flap_changes": 100}
    )
    daemon = start(daemons, config)
    started_healthy(daemon)
    assert daemon.process is not None
    rss_before = psutil.Process(daemon.process.pid).memory_info().rss
    for round_ in range(1, 4):  # within budget (max_attempts 3): each one recovered
        os.kill(daemon.broker_pid(), signal.SIGKILL)
        daemon.wait_for(
            lambda n=round_: (
                len(daemon.query("SELECT 1 FROM executions WHERE status = 'resolved'")) == n
            )
        )
        daemon.wait_for(lambda: accepts(port))
    os.kill(daemon.broker_pid(), signal.SIGKILL)  # the fourth in the window: held
    daemon.wait_for_log(r"denied \(attempt_budget\) 3 attempts in the last 3600 s \(budget 3\)")
    assert not accepts(port)
    # The verdict is logged before the incident and its escalation are written.
    daemon.wait_for(lambda: daemon.query("SELECT 1 FROM escalations"))
    [held] = daemon.query("SELECT * FROM incidents ORDER BY opened_at DESC LIMIT 1")
    assert held["phase"] == "escalated"
    [escalation] = daemon.query("SELECT * FROM escalations")
    assert escalation["component"] == "mqtt"
    # After the breaker's cooldown, one trial attempt brings it back on its own.
    daemon.wait_for_log(r"allowed \(trial_attempt\)", timeout=10)
    daemon.wait_for(lambda: accepts(port))
    daemon.wait_for(
        lambda: daemon.query(
            "SELECT 1 FROM incidents WHERE id = ? AND phase = 'resolved'", (held["id"],)
        )
    )
    assert daemon.process.poll() is None
    growth_mb = (psutil.Process(daemon.process.pid).memory_info().rss - rss_before) / 1e6
    assert growth_mb < 20, f"RSS grew {growth_mb:.1f} MB over five incidents"


def test_the_health_api_and_metrics_are_served_and_a_taken_port_is_a_clear_error(
    tmp_path: Path, daemons: list[Daemon]
) -> None:

    port = free_port()
    config = write_config(tmp_path, port)
    daemon = start(daemons, config)
    started_healthy(daemon)
    admin = yaml.safe_load(config.read_text())["admin"]["port"]
    base = f"http://127.0.0.1:{admin}"
    assert httpx.get(f"{base}/api/v1/system/health", timeout=5).status_code == 401
    assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    web = logged_in_client(daemon, base)
    health = web.get(f"{base}/api/v1/system/health", timeout=5).json()
    assert health["status"] == "healthy"
    assert health["components"]["mqtt"]["status"] == "healthy"
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(lambda: daemon.query("SELECT 1 FROM executions WHERE status = 'resolved'"))
    resolved = 'playbook="PLAY-MQTT-RECOVER-001",status="resolved"'
    # The row commits a moment before the runner resumes and counts it (the store's write
    # returns through more than one await): the metric follows, it is not read at once.
    daemon.wait_for(
        lambda: f"executions_total{{{resolved}}}" in web.get(f"{base}/metrics", timeout=5).text
    )
    metrics = web.get(f"{base}/metrics", timeout=5).text
    web.close()
    runs = daemon.query("SELECT id, status, duration_seconds FROM executions")
    assert f"graylogic_supervisor_executions_total{{{resolved}}} 1.0" in metrics, runs
    assert "graylogic_supervisor_broker_restarts_total 1.0" in metrics
    assert 'graylogic_supervisor_component_healthy{component="mqtt"} 1.0' in metrics
    if shutil.which("promtool"):
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")

    # A second daemon on the same admin port says why it cannot start, and exits.
    other = tmp_path / "other"
    other.mkdir()
    second = Daemon(write_config(other, free_port(), admin={"port": admin}))
    daemons.append(second.start())
    assert second.process is not None
    assert second.process.wait(timeout=15) == 1
    assert f"graylogic-supervisor: cannot listen on 127.0.0.1:{admin}" in second.log
    assert "Traceback" not in second.log


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_operators_override_a_running_step_and_stop_everything(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "slow.yaml").write_text(SLOW_PLAYBOOK)
    port = free_port()
    config = write_config(tmp_path, port, playbooks=playbooks, policy={"flap_changes": 100})
    daemon = start(daemons, config)
    started_healthy(daemon)
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    [running] = daemon.wait_for(
        lambda: daemon.query(
            "SELECT execution_id FROM execution_steps WHERE step_id = 'settle'"
            " AND outcome = 'running'"
        )
    )
    execution_id = running["execution_id"]
    done = cli(
        config,
        "executions",
        "override",
        execution_id,
        "settle",
        "--outcome",
        "success",
        "--reason",
        "the bus is quiet",
        "--by",
        "alice",
    )
    assert done.stdout == f"step settle of {execution_id} marked success by alice\n"
    [execution] = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM executions WHERE status = 'resolved'")
    )
    assert execution["resolved_by"] == "restart"
    [settle] = daemon.query(
        "SELECT * FROM execution_steps WHERE execution_id = ? AND step_id = 'settle'",
        (execution_id,),
    )
    assert (settle["outcome"], settle["result"]) == (
        "success",
        "overridden by alice: the bus is quiet",
    )

    os.kill(daemon.broker_pid(), signal.SIGKILL)
    daemon.wait_for(
        lambda: daemon.query(
            "SELECT 1 FROM execution_steps WHERE step_id = 'settle' AND outcome = 'running'"
        )
    )
    stop = cli(config, "emergency-stop", "--reason", "fire alarm", "--by", "bob")
    assert stop.stdout == "emergency stop: 1 execution(s) cancelled\n"
    [cancelled] = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM executions WHERE status = 'interrupted'")
    )
    assert cancelled["detail"] == "cancelled by bob"
    assert cli(config, "safe-mode", "status").stdout.startswith("safe mode ON")
    actions = [r["action"] for r in daemon.query("SELECT action FROM audit_log ORDER BY seq")]
    assert "execution.override" in actions and "execution.emergency_stop" in actions


def test_a_run_stopped_in_an_idempotent_step_resumes_there_after_a_restart(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    resumable = SLOW_PLAYBOOK.replace(
        "params: {seconds: 30},", "params: {seconds: 1}, idempotent: true,"
    )
    assert "idempotent: true" in resumable
    (playbooks / "slow.yaml").write_text(resumable)
    config = write_config(tmp_path, free_port(), playbooks=playbooks)
    daemon = start(daemons, config)
    started_healthy(daemon)
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    [running] = daemon.wait_for(
        lambda: daemon.query(
            "SELECT execution_id FROM execution_steps WHERE step_id = 'settle'"
            " AND outcome = 'running'"
        )
    )
    daemon.kill()

    restarted = start(daemons, config)
    restarted.wait_for_log(r"resuming exec-\S+ of PLAY-MQTT-RECOVER-001 at step settle")
    [execution] = restarted.wait_for(
        lambda: restarted.query(
            "SELECT * FROM executions WHERE id = ? AND status != 'running'",
            (running["execution_id"],),
        )
    )
    assert execution["status"] == "resolved"
    assert steps(restarted, execution["id"]) == [
        ("check_broker", "failure", "settle"),
        ("settle", "interrupted", None),
        ("settle", "success", "restart"),
        ("restart", "success", "done"),
    ]
    assert restarted.query("PRAGMA integrity_check")[0][0] == "ok"


def test_the_first_run_puts_the_admin_password_in_a_root_only_file_never_in_the_log(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = start(daemons, config)
    started_healthy(daemon)
    password_file = daemon.state_dir / "initial-admin-password"
    password = first_admin_password(daemon.state_dir)
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert password not in daemon.log  # stderr is the journal under systemd
    assert f"its password is in {password_file}" in daemon.log
    assert [p.name for p in daemon.state_dir.glob("*admin-password*")] == [password_file.name]
    [admin] = daemon.query("SELECT role, password_hash FROM users WHERE name = 'admin'")
    assert admin["role"] == "admin" and admin["password_hash"].startswith("$argon2id$")
    assert password not in admin["password_hash"]
    base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['admin']['port']}"
    logged_in_client(daemon, base).close()
    assert daemon.terminate() == 0
    daemon.start()
    started_healthy(daemon)
    assert daemon.log.count("its password is in") == 1  # not on the second start
    assert first_admin_password(daemon.state_dir) == password
    assert len(daemon.query("SELECT name FROM users")) == 1

    changed = daemon.cli("user", "passwd", "admin")

    assert changed.returncode == 0, changed.stderr
    assert f"{password_file} removed" in changed.stdout
    assert not password_file.exists()
