"""Bridges end to end: a real daemon, a real broker, a bridge process that sends heartbeats."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, write_config

pytestmark = pytest.mark.slow

BRIDGE_SIM = Path(__file__).with_name("bridge_sim.py")


def bridge_config(tmp_path: Path, port: int, mqtt_playbook: str | None = None) -> Path:
    """The shipped playbooks with test-sized timeouts, a KNX bridge on the broker."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    bridge = (REPO / "playbooks" / "bridge-recover.yaml").read_text()
    (playbooks / "bridge.yaml").write_text(
        bridge.replace("timeout_seconds: 60", "timeout_seconds: 3")
    )
    mqtt = mqtt_playbook or (REPO / "playbooks" / "mqtt-recover.yaml").read_text()
    (playbooks / "mqtt.yaml").write_text(mqtt)
    root = f"t{port}"
    return write_config(
        tmp_path,
        port,
        playbooks=playbooks,
        services=[
            {
                "name": "graylogic-bridge-knx",
                "backend": "process",
                "argv": [
                    sys.executable,
                    str(BRIDGE_SIM),
                    "127.0.0.1",
                    str(port),
                    f"{root}/health/bridge-knx",
                ],
                "stop_timeout_s": 1,
            }
        ],
        components={
            "mqtt": {
                "kind": "mqtt",
                "service": "mosquitto",
                "error_id": "ERR-INFRA-MQTT-001",
                "check_interval_s": 5,
            },
            "bridge-knx": {
                "kind": "bridge",
                "service": "graylogic-bridge-knx",
                "error_id": "ERR-BRIDGE-HEARTBEAT-001",
                "heartbeat_window_s": 1,
                "check_interval_s": 0.25,
                "depends_on": ["mqtt"],
            },
        },
    )


def heartbeats_flowing(daemon: Daemon) -> None:
    """Past the start-up window, the bridge is still healthy: its heartbeats arrive."""
    daemon.wait_for_log(r"bridge-knx is healthy: waiting for first heartbeat")
    time.sleep(1.5)
    assert "bridge-knx is unhealthy" not in daemon.log


def bridge_pid(daemon: Daemon) -> int:
    import psutil

    assert daemon.process is not None
    for child in psutil.Process(daemon.process.pid).children():
        if str(BRIDGE_SIM) in " ".join(child.cmdline()):
            return child.pid
    raise AssertionError("no bridge process")


def test_a_bridge_whose_heartbeat_stops_is_restarted_by_its_playbook(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = Daemon(bridge_config(tmp_path, port)).start()
    daemons.append(daemon)
    heartbeats_flowing(daemon)
    hung = bridge_pid(daemon)
    os.kill(hung, signal.SIGSTOP)  # alive, silent: only the heartbeat can tell

    execution = daemon.wait_for(
        lambda: daemon.query(
            "SELECT * FROM executions WHERE component = 'bridge-knx' AND status != 'running'"
        ),
        timeout=30,
    )[0]
    assert execution["status"] == "resolved"
    assert execution["playbook_id"] == "PLAY-BRIDGE-RECOVER-001"
    assert execution["resolved_by"] == "restart_bridge"
    steps = [
        (r["step_id"], r["outcome"])
        for r in daemon.query(
            "SELECT step_id, outcome FROM execution_steps WHERE execution_id = ? ORDER BY seq",
            (execution["id"],),
        )
    ]
    assert steps == [
        ("check_broker", "success"),
        ("grace", "failure"),
        ("check_bridge", "success"),
        ("restart_bridge", "success"),
        ("verify", "success"),
    ]
    assert bridge_pid(daemon) != hung
    [failure] = daemon.query("SELECT * FROM failures WHERE component = 'bridge-knx'")
    assert failure["error_id"] == "ERR-BRIDGE-HEARTBEAT-001"
    assert "no heartbeat" in failure["message"]


SLOW_MQTT = (
    (REPO / "playbooks" / "mqtt-recover.yaml")
    .read_text()
    .replace(
        """  - id: restart
    name: Restart broker""",
        """  - id: settle
    name: Let the site notice
    action: sleep
    params: {seconds: 2}
    timeout_seconds: 5
    on_success: restart
  - id: restart
    name: Restart broker""",
    )
    .replace(
        "on_failure: restart\n  - id: probe_broker", "on_failure: settle\n  - id: probe_broker"
    )
)


def test_a_broker_death_that_silences_the_bridges_recovers_only_the_broker(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    daemon = Daemon(bridge_config(tmp_path, port, SLOW_MQTT)).start()
    daemons.append(daemon)
    heartbeats_flowing(daemon)
    os.kill(daemon.broker_pid(), signal.SIGKILL)

    daemon.wait_for_log(r"bridge-knx is unhealthy because mqtt is: recorded as a symptom")
    daemon.wait_for(
        lambda: daemon.query("SELECT 1 FROM executions WHERE status = 'resolved'"), timeout=20
    )
    daemon.wait_for_log(r"bridge-knx is healthy: last heartbeat", timeout=10)  # re-checked
    executions = daemon.query("SELECT playbook_id, status FROM executions")
    assert [(r["playbook_id"], r["status"]) for r in executions] == [
        ("PLAY-MQTT-RECOVER-001", "resolved")
    ]
    [symptom] = daemon.query("SELECT * FROM failures WHERE component = 'bridge-knx'")
    assert symptom["symptom_of"] == "mqtt"


def test_anonymous_offline_heartbeats_neither_fail_a_beating_bridge_nor_start_a_recovery(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Anyone on the broker can say a bridge is offline; while it beats, nobody believes it."""
    import paho.mqtt.client as mqtt

    port = free_port()
    daemon = Daemon(bridge_config(tmp_path, port)).start()
    daemons.append(daemon)
    heartbeats_flowing(daemon)
    mark = len(daemon.log)
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous")
    attacker.connect("127.0.0.1", port)
    attacker.loop_start()
    try:
        for _ in range(5):  # five, as in the report: once a window, for five windows
            attacker.publish(f"t{port}/health/bridge-knx", b'{"status": "offline"}', qos=1)
            time.sleep(1.0)
        attacker.publish(f"t{port}/health/bridge-knx", b'{"status": "offline"}', qos=1)
        for _ in range(200):  # and a burst
            attacker.publish(f"t{port}/health/bridge-knx", b'{"status": "offline"}', qos=0)
        attacker.publish(
            f"t{port}/health/bridge-knx", b'{"status": "offline"}', qos=1
        ).wait_for_publish(timeout=10)
        time.sleep(2.5)  # more than two windows after the last one
    finally:
        attacker.disconnect()
        attacker.loop_stop()
    assert "bridge-knx is unhealthy" not in daemon.log[mark:]
    assert daemon.query("SELECT * FROM executions") == []
    assert "safe mode" not in daemon.log[mark:].lower()
    assert "bridge bridge-knx says it is offline" in daemon.log[mark:]  # said, once a minute
    assert daemon.log[mark:].count("says it is offline") == 1
