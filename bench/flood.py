"""An MQTT flood at the daemon's heartbeat subscription, from another process.

The daemon runs with its own broker, one protocol bridge (``tests/bridge_sim.py``,
a heartbeat every 0.2 s, window ``--window``) and one bridge nobody runs
(``bridge-marker``). ``tests/mqtt_flood.py`` then publishes on the bridge's
heartbeat topic at full speed for ``--seconds``, QoS 0, ``offline`` and ``online``
in turn (each of which flipped the bridge's health before the flood limits).
When the flood ends a marker heartbeat is published for ``bridge-marker``, once
a second until it is handled (Mosquitto drops what it cannot queue for a client
that reads too slowly); the time from the flood's end until the daemon says that
bridge is healthy is how long the backlog the flood left took to drain.

Reported: messages sent, backlog drain time (``> 300`` when the marker was not
handled within that budget), log lines the daemon wrote from the
flood's start to the end of the drain, the daemon's peak RSS (sampled every
0.1 s), whether its MQTT link dropped, recovery executions started, and whether
the bridge was ever called unhealthy.

    .venv/bin/python bench/flood.py [--seconds 20] [--window 5] [--json] [--keep]

Run the branch under test by putting it first on ``PYTHONPATH`` (the daemon is
``python -m graylogic_supervisor`` from the work directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from typing import Any

import psutil
from daemon_under_test import BenchDaemon, Bridge
from mqtt_ping import HOST
from processes import prepare_bench_process
from recovery import workspace
from supervisors import REPO

FLOOD = REPO / "tests" / "mqtt_flood.py"
MIB = 1_048_576
DRAIN_BUDGET_S = 300.0

logger = logging.getLogger("bench.flood")


def publish_marker(port: int, topic: str) -> None:
    """One heartbeat, QoS 1, from a client of its own (paho, blocking)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"marker-{time.time_ns()}")
    client.connect(HOST, port)
    client.loop_start()
    try:
        client.publish(topic, b'{"status": "online"}', qos=1).wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


def measure(seconds: float, window: float, keep: bool) -> dict[str, Any]:
    bridge = Bridge("bridge-knx", heartbeat_window_s=window, check_interval_s=1)
    marker = {
        "kind": "bridge",
        "error_id": "ERR-BRIDGE-HEARTBEAT-001",
        "heartbeat_window_s": 1,
        "check_interval_s": 0.5,  # unhealthy a second after start-up: the marker flips it
        "grace_s": 3600,  # never recovered
    }
    with (
        workspace("flood", keep) as workdir,
        BenchDaemon(workdir, bridges=(bridge,), components={"bridge-marker": marker}) as daemon,
    ):
        daemon.wait_for_log(r"bridge-knx is healthy")
        daemon.wait_for_log(r"bridge-marker is unhealthy")
        time.sleep(window + 1.5)  # past the start-up windows: the bridge's heartbeats count
        process = psutil.Process(daemon.pid)
        offset = daemon.log_size()
        rss_before = process.memory_info().rss
        topic = f"{daemon.topic_root}/health/{bridge.name}"
        logger.info("flooding %s for %g s", topic, seconds)
        flooder = subprocess.Popen(
            [
                sys.executable,
                str(FLOOD),
                HOST,
                str(daemon.port),
                str(seconds),
                topic,
                '{"status": "offline"}',
                '{"status": "online"}',
            ],
            stdout=subprocess.PIPE,
        )
        peak = rss_before
        while flooder.poll() is None:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.1)
        sent = int(flooder.communicate()[0])
        ended = time.monotonic()
        deadline = ended + DRAIN_BUDGET_S
        drain: float | None = None
        published_at = 0.0
        while time.monotonic() < deadline:
            if "bridge-marker is healthy" in daemon.log_since(offset):
                drain = time.monotonic() - ended
                break
            if time.monotonic() - published_at >= 1.0:  # the broker drops what it cannot queue
                publish_marker(daemon.port, f"{daemon.topic_root}/health/bridge-marker")
                published_at = time.monotonic()
            daemon.check_running()
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)
        if drain is None:
            logger.error("the marker was not handled within %g s", DRAIN_BUDGET_S)
        log = daemon.log_since(offset)
        with daemon.store() as store:
            executions = store.execute("SELECT count(*) FROM executions").fetchone()[0]
        return {
            "seconds": seconds,
            "messages_sent": sent,
            "drain_s": round(drain, 2) if drain is not None else f"> {DRAIN_BUDGET_S:g}",
            "log_lines": len(log.splitlines()),
            "rss_before_mib": round(rss_before / MIB, 1),
            "rss_peak_mib": round(peak / MIB, 1),
            "link_lost": "MQTT link to" in log and " lost" in log,
            "bridge_unhealthy": "bridge-knx is unhealthy" in log,
            "executions": executions,
            "safe_mode": "safe mode" in log.lower(),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    prepare_bench_process()
    result = measure(args.seconds, args.window, args.keep)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
