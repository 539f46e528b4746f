"""Hostile MQTT payloads against the real daemon: it stays up, says why, never a traceback.

The daemon subscribes to one filter of its own, the bridges' heartbeats on
``{root}/health/+`` (``daemon.py``; the probe's round-trip topic is a fresh
random one each time and only compares its own token). A test broker on a free
port, the daemon as a child process watching it as an external broker, and a
publisher that floods that filter: malformed, oversized, binary, empty, nested,
wrongly typed payloads, retained and not, on odd topic names, at full speed.

What was refused is read from ``/metrics`` (``heartbeats_dropped_total`` by
reason, ``mqtt_messages_dropped_total``): the log says it once a minute per
bridge and cause, however many arrive.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Broker, free_port, start_broker
from tests.daemon_process import Daemon, write_config
from tests.fuzz.yaml_inputs import FUZZ

FUZZ_MQTT = settings(FUZZ, max_examples=60)  # each example is a round trip through the broker

pytestmark = pytest.mark.slow

BRIDGE = "bridge-knx"
REFUSED = f"heartbeat from bridge {BRIDGE} refused: "
METRICS_TOKEN = "fuzz-metrics-token"

# (payload, the reason the daemon must give for it)
HOSTILE: list[tuple[bytes, str]] = [
    (b"", "empty payload"),
    (b"x" * (1024 * 1024), "payload of 1048576 bytes > 65536"),
    (b"{" * (256 * 1024), "payload of 262144 bytes > 65536"),
    (b"\xff\xfe\x00garbage\x80", "not UTF-8"),
    (b'{"status": "online"', "not JSON: Expecting"),
    (b"[" * 60_000, "not JSON: nested too deeply"),
    (b"1" * 5_000, "not JSON: Exceeds the limit"),
    (b"[1, 2, 3]", "not a JSON object but an array"),
    (b'"online"', "not a JSON object but a string"),
    (b"null", "not a JSON object but null"),
    (b'{"status": 5}', "status: Input should be"),
    (b'{"status": "online", "ts": "yesterday"}', "ts: Input should be a valid datetime"),
    (b'{"status": "online", "ts": 1e999}', "ts: "),
    (b'{"state": "online"}', "status: Field required"),
    (b"NaN", "not a JSON object but a number"),
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = start_broker(tmp_path_factory.mktemp("fuzz-broker"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Daemon]:
    """The daemon on the test's broker, with one bridge that never recovers by itself
    (an hour's grace), so what it logs is only what the payloads cause."""
    tmp_path: Path = tmp_path_factory.mktemp("fuzz-daemon")
    config = write_config(
        tmp_path,
        broker.port,
        broker={"mode": "external", "host": broker.host, "port": broker.port},
        admin={"port": free_port(), "metrics_token": METRICS_TOKEN},
        components={
            "mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001", "check_interval_s": 1},
            BRIDGE: {
                "kind": "bridge",
                "error_id": "ERR-BRIDGE-HEARTBEAT-001",
                "heartbeat_window_s": 3600,
                "max_heartbeats_per_s": 1000,  # every payload parsed: this module fuzzes parsing
                "grace_s": 3600,
                "check_interval_s": 1,
                "depends_on": ["mqtt"],
            },
        },
    )
    running = Daemon(config).start()
    try:
        running.wait_for_log(r"MQTT link to \S+ up")
        running.wait_for_log(rf"{BRIDGE} is healthy: waiting for first heartbeat")
        yield running
    finally:
        running.cleanup()


def root(daemon: Daemon) -> str:
    assert daemon.config is not None
    return str(yaml.safe_load(daemon.config.read_text())["mqtt"]["topic_root"])


def admin_port(daemon: Daemon) -> int:
    assert daemon.config is not None
    return int(yaml.safe_load(daemon.config.read_text())["admin"]["port"])


@pytest.fixture(scope="module")
def client(broker: Broker) -> Iterator[mqtt.Client]:
    """One publisher for the module: connecting per batch costs a second each."""
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fuzz-{time.time_ns()}")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    yield publisher
    publisher.disconnect()
    publisher.loop_stop()


def dropped(daemon: Daemon, reason: str, metric: str = "heartbeats_dropped_total") -> float:
    """A counter from ``/metrics``, summed over the series with this reason."""
    answer = httpx.get(
        f"http://127.0.0.1:{admin_port(daemon)}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 200
    pattern = rf'^graylogic_supervisor_{metric}{{[^}}]*reason="{reason}"[^}}]*}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, answer.text, re.MULTILINE))


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met within the budget"
        time.sleep(0.05)


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes, bool]]) -> None:
    """Every message at QoS 0 as fast as the client goes, the last at QoS 1 to know they left."""
    *first, (topic, payload, retain) = messages
    for message in first:
        client.publish(*message[:2], qos=0, retain=message[2])
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=30)


def heartbeat(daemon: Daemon, client: mqtt.Client, status: str) -> None:
    publish_all(
        client,
        [(f"{root(daemon)}/health/{BRIDGE}", json.dumps({"status": status}).encode(), False)],
    )


def still_serving(daemon: Daemon, client: mqtt.Client) -> None:
    """Alive, answering HTTP, and still reading heartbeats: a stale one is judged stale."""
    assert daemon.process is not None and daemon.process.poll() is None
    answer = httpx.get(f"http://127.0.0.1:{admin_port(daemon)}/healthz", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    before = dropped(daemon, "stale")
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    stale = json.dumps({"status": "online", "ts": old}).encode()
    publish_all(client, [(f"{root(daemon)}/health/{BRIDGE}", stale, False)])
    wait_until(lambda: dropped(daemon, "stale") == before + 1)
    assert "Traceback" not in daemon.log


def test_every_hostile_payload_is_refused_with_its_reason_and_the_daemon_carries_on(
    daemon: Daemon, client: mqtt.Client
) -> None:
    mark = len(daemon.log)
    topic = f"{root(daemon)}/health/{BRIDGE}"
    messages = [(topic, payload, retain) for payload, _ in HOSTILE for retain in (False, True)]
    publish_all(client, messages)
    # retained or not when sent, a live subscriber gets them unflagged: all parsed, refused
    wait_until(lambda: dropped(daemon, "malformed") == len(messages))
    # One line a minute per bridge and cause, however many arrive (this module's first).
    warned = re.findall(rf"WARNING .*{re.escape(REFUSED)}.*", daemon.log[mark:])
    assert len(warned) == 1 and warned[0].endswith("[error_id=ERR-BRIDGE-HEARTBEAT-001]")
    assert warned[0].split(REFUSED)[1].startswith(HOSTILE[0][1])  # the first one's reason
    publish_all(client, [(topic, b"", True)])  # clear the retained garbage
    still_serving(daemon, client)


def test_a_flood_of_bad_heartbeats_at_full_speed_leaves_the_daemon_serving(
    daemon: Daemon, client: mqtt.Client
) -> None:
    mark = len(daemon.log)
    topic = f"{root(daemon)}/health/{BRIDGE}"
    count = 5_000
    before = dropped(daemon, "malformed") + dropped(daemon, "rate")
    publish_all(client, [(topic, b'{"status": "maybe"}', False)] * count)
    still_serving(daemon, client)  # read after the flood: what came before it was handled
    handled = dropped(daemon, "malformed") + dropped(daemon, "rate") - before
    shed = dropped(daemon, "lane_full", "mqtt_messages_dropped_total")
    assert 0 < handled <= count  # the broker may shed some for a reader this far behind
    assert handled + shed <= count
    assert len(daemon.log[mark:].splitlines()) < 20  # a few summary lines, not one each


def test_odd_topic_names_under_the_filter_are_ignored_without_harm(
    daemon: Daemon, client: mqtt.Client
) -> None:
    base = f"{root(daemon)}/health"
    names = ["", " ", "ünïcødé", "with space", "supervisor", "BRIDGE-KNX", "x" * 5000, "$", ".."]
    messages = [
        (f"{base}/{name}", b"\xff not json", retain and name != "supervisor")
        for name in names
        for retain in (False, True)
    ]
    messages += [(f"{base}//{BRIDGE}", b"{}", False), (f"{base}/{BRIDGE}/extra", b"{}", False)]
    mark = len(daemon.log)
    publish_all(client, messages)
    still_serving(daemon, client)
    assert REFUSED not in daemon.log[mark:]  # none of them is the bridge's own topic
    publish_all(client, [(f"{base}/{name}", b"", True) for name in names if name != "supervisor"])


@FUZZ_MQTT
@given(
    payloads=st.lists(
        st.binary(max_size=300) | st.text(max_size=100).map(str.encode), min_size=1, max_size=40
    )
)
def test_random_payloads_never_make_a_traceback(
    daemon: Daemon, client: mqtt.Client, payloads: list[bytes]
) -> None:
    """Random bytes each example, one batch at a time; the log is read at the end."""
    topic = f"{root(daemon)}/health/{BRIDGE}"
    publish_all(client, [(topic, payload, False) for payload in payloads])
    assert daemon.process is not None and daemon.process.poll() is None
    assert "Traceback" not in daemon.log


def test_after_the_fuzz_the_daemon_still_serves(daemon: Daemon, client: mqtt.Client) -> None:
    still_serving(daemon, client)
