"""Bridge heartbeats through a real broker, a real MqttLink and a real HealthMonitor.

The broker-backed tests run on real time with sub-second windows; the
start-up grace and the once-a-minute warning are pinned with a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest

from graylogic_supervisor.clock import Clock, SystemClock
from graylogic_supervisor.config import BridgeComponent
from graylogic_supervisor.health.heartbeats import HeartbeatTracker, parse_heartbeat
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.mqtt.link import LinkSettings, MqttLink
from graylogic_supervisor.services.manager import ServiceManager
from tests.clocks import ManualClock
from tests.conftest import Broker

HEARTBEATS_LOGGER = "graylogic_supervisor.health.heartbeats"


def bridge(window_s: float = 30.0) -> BridgeComponent:
    return BridgeComponent(
        kind="bridge", error_id="ERR-BRIDGE-HEARTBEAT-001", heartbeat_window_s=window_s
    )


@dataclass
class Rig:
    root: str
    tracker: HeartbeatTracker
    monitor: HealthMonitor
    link: MqttLink
    client: aiomqtt.Client

    async def send(self, name: str, payload: bytes | dict[str, Any]) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(f"{self.root}/health/{name}", data, qos=1)

    def health(self, name: str = "knx") -> Health:
        return self.monitor.state(name).health


async def until(condition: Callable[[], bool], timeout_s: float = 1.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running_rig(broker: Broker, window_s: float = 30.0) -> AsyncIterator[Rig]:
    """The daemon's wiring in small: tracker -> monitor.report, link -> tracker.handle."""
    root = f"hb-{uuid.uuid4().hex[:8]}"
    clock = SystemClock()
    components = {"knx": bridge(window_s), "dali": bridge(window_s)}
    tracker = HeartbeatTracker(
        components, root, clock, lambda name, healthy, detail: monitor.report(name, healthy, detail)
    )
    services = ServiceManager(clock)
    monitor = HealthMonitor(components, services, {"bridge": tracker.prober}, clock)
    link = MqttLink(
        LinkSettings(
            host=broker.host,
            port=broker.port,
            client_id=f"{root}-supervisor",
            username=None,
            password=None,
            keepalive_s=5,
            will_topic=f"{root}/health/supervisor",
            will_payload=b'{"status":"offline"}',
        ),
        clock,
        random.Random(1),
    )
    link.subscribe(tracker.topic_filter, tracker.handle)
    task = asyncio.create_task(link.run(), name="mqtt-link")
    try:
        await until(lambda: link.connected, 5)
        async with aiomqtt.Client(broker.host, broker.port, identifier=f"{root}-bridge") as client:
            yield Rig(root, tracker, monitor, link, client)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await services.close()


async def test_a_heartbeat_makes_the_bridge_healthy_at_once(broker: Broker) -> None:
    async with running_rig(broker) as rig:
        await rig.send("knx", {"status": "online", "ts": "2026-11-26T12:00:00Z"})
        await until(lambda: rig.health() is Health.HEALTHY)
        assert rig.monitor.state("knx").detail == "heartbeat: online"
        healthy, detail = await rig.tracker.prober("knx", bridge())
        assert healthy
        assert detail.startswith("last heartbeat 0.")
        assert detail.endswith(" s ago (online)")
        assert rig.health("dali") is Health.UNKNOWN


async def test_a_bridge_that_stops_beating_is_unhealthy_after_its_window(broker: Broker) -> None:
    window = bridge(0.3)
    async with running_rig(broker, window_s=0.3) as rig:

        async def beat() -> None:
            while True:
                await rig.send("knx", {"status": "healthy"})
                await asyncio.sleep(0.05)

        beating = asyncio.create_task(beat(), name="bridge-heartbeat")
        await until(lambda: rig.health() is Health.HEALTHY)
        await asyncio.sleep(0.4)  # longer than the window, while it beats
        assert (await rig.monitor.probe("knx"))[0]
        beating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beating

        await asyncio.sleep(0.1)
        assert (await rig.tracker.prober("knx", window))[0]  # still inside its window
        await asyncio.sleep(0.3)
        healthy, detail = await rig.monitor.probe("knx")
        assert not healthy
        assert detail.startswith("no heartbeat for 0.")
        assert detail.endswith(" s (window 0.3 s)")
        assert rig.health() is Health.UNHEALTHY
        assert rig.monitor.state("knx").error_id == "ERR-BRIDGE-HEARTBEAT-001"


MALFORMED = [
    bytes(range(256)),  # binary garbage, not UTF-8
    b"{",
    b"[]",
    b'{"status": "sleeping"}',
    b'{"status": "online", "pad": "' + b"x" * 100 * 1024 + b'"}',
    b"",
]


async def test_malformed_payloads_are_refused_counted_and_leave_the_link_up(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=HEARTBEATS_LOGGER)
    async with running_rig(broker) as rig:
        for payload in MALFORMED:
            await rig.send("knx", payload)
        await until(lambda: rig.tracker.refused["knx"] == len(MALFORMED))
        assert rig.health() is Health.UNKNOWN  # none of them counted as a sign of life
        assert await rig.tracker.prober("knx", bridge()) == (True, "waiting for first heartbeat")
        assert rig.link.connected

        await rig.send("knx", {"status": "degraded", "detail": "bus voltage low"})
        await until(lambda: rig.health() is Health.HEALTHY)
        assert rig.monitor.state("knx").detail == "heartbeat: degraded"
        assert rig.monitor.changes.qsize() == 1

    warnings = [
        r for r in caplog.records if r.name == HEARTBEATS_LOGGER and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1  # one a minute per bridge; the rest at DEBUG
    assert warnings[0].getMessage() == "heartbeat from bridge knx refused: not UTF-8"
    assert getattr(warnings[0], "error_id", None) == "ERR-BRIDGE-HEARTBEAT-001"
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals[1:] == [
        "heartbeat from bridge knx refused: not JSON:"
        " Expecting property name enclosed in double quotes at character 1",
        "heartbeat from bridge knx refused: not a JSON object but an array",
        "heartbeat from bridge knx refused: status: Input should be"
        " 'online', 'healthy', 'degraded' or 'offline'",
        f"heartbeat from bridge knx refused: payload of {len(MALFORMED[4])} bytes > 65536",
        "heartbeat from bridge knx refused: empty payload",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_bridge_that_reports_offline_is_unhealthy_until_it_beats_again(
    broker: Broker,
) -> None:
    async with running_rig(broker) as rig:
        await rig.send("knx", {"status": "online"})
        await until(lambda: rig.health() is Health.HEALTHY)
        await rig.send("knx", {"status": "offline"})
        await until(lambda: rig.health() is Health.UNHEALTHY)
        assert rig.monitor.state("knx").detail == "bridge reports offline"
        # Its last heartbeat is recent, but it said it is offline: the probe must agree.
        assert await rig.monitor.probe("knx") == (False, "bridge reports offline")

        await rig.send("knx", {"status": "online"})
        await until(lambda: rig.health() is Health.HEALTHY)


async def test_our_own_status_and_unknown_bridges_are_ignored(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_rig(broker) as rig:
        await rig.send("supervisor", {"status": "offline"})
        await rig.send("supervisor", b"not json")
        await rig.send("zigbee", {"status": "offline"})
        await rig.send("dali", {"status": "online"})  # sent last: the others have arrived
        await until(lambda: rig.health("dali") is Health.HEALTHY)
        assert rig.health("knx") is Health.UNKNOWN
        assert rig.tracker.refused == {}
        assert rig.monitor.changes.qsize() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- the tracker on a hand-moved clock ------------------------------------------------------


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def __call__(self, component: str, healthy: bool, detail: str) -> None:
        self.calls.append((component, healthy, detail))


def tracker_on(clock: Clock, window_s: float = 30.0) -> tuple[HeartbeatTracker, Reports]:
    reports = Reports()
    return HeartbeatTracker({"knx": bridge(window_s)}, "site/", clock, reports), reports


async def test_a_bridge_never_heard_from_gets_one_window_after_start_up() -> None:
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    clock.advance(29.9)
    assert await tracker.prober("knx", bridge()) == (True, "waiting for first heartbeat")
    clock.advance(0.1)
    assert await tracker.prober("knx", bridge()) == (False, "no heartbeat since start-up")
    assert reports.calls == []


async def test_after_its_service_restarts_only_a_heartbeat_of_the_new_process_counts() -> None:
    """The dead process's last heartbeat must not verify the recovery that replaced it."""
    clock = ManualClock()
    knx = BridgeComponent(kind="bridge", error_id="ERR-BRIDGE-HEARTBEAT-001", service="bridge-knx")
    tracker = HeartbeatTracker({"knx": knx}, "site/", clock, Reports())
    tracker.service_replaced("bridge-knx")  # started at start-up: the first window's grace
    assert await tracker.prober("knx", knx) == (True, "waiting for first heartbeat")
    tracker.handle("site/health/knx", b'{"status": "healthy"}')
    clock.advance(1.0)

    tracker.service_replaced("bridge-knx")  # a restart, well within the window
    clock.advance(0.5)
    assert await tracker.prober("knx", knx) == (
        False,
        "no heartbeat since its service was restarted 0.5 s ago",
    )
    tracker.service_replaced("another-service")  # another bridge's restart changes nothing
    tracker.handle("site/health/knx", b'{"status": "online"}')
    assert await tracker.prober("knx", knx) == (True, "last heartbeat 0.0 s ago (online)")


async def test_the_heartbeat_age_is_measured_on_the_injected_clock() -> None:
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    tracker.handle("site/health/knx", b'{"status": "healthy", "ts": 1764158400}')
    assert reports.calls == [("knx", True, "heartbeat: healthy")]
    clock.advance(3.25)
    assert await tracker.prober("knx", bridge()) == (True, "last heartbeat 3.2 s ago (healthy)")
    clock.advance(27.75)
    assert await tracker.prober("knx", bridge()) == (
        False,
        "no heartbeat for 31 s (window 30 s)",
    )


async def test_refusals_are_warned_about_once_a_minute_per_bridge_and_all_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=HEARTBEATS_LOGGER)
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    for _ in range(3):
        tracker.handle("site/health/knx", b"{")
        clock.advance(10)
    clock.advance(30)  # 60 s after the first warning
    tracker.handle("site/health/knx", b"[]")
    assert tracker.refused["knx"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat from bridge knx refused: not JSON:"
        " Expecting property name enclosed in double quotes at character 1",
        "heartbeat from bridge knx refused: not a JSON object but an array"
        " (2 more refused since the last warning)",
    ]
    assert reports.calls == []


def test_a_bridge_named_like_the_supervisors_own_topic_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="cannot be named 'supervisor'"):
        HeartbeatTracker({"supervisor": bridge()}, "site", SystemClock(), Reports())


async def test_the_prober_refuses_a_component_it_was_not_given() -> None:
    tracker, _ = tracker_on(SystemClock())
    with pytest.raises(ValueError, match="'enocean' is not a bridge"):
        await tracker.prober("enocean", bridge())


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"online", "not JSON: Expecting value at character 0"),
        (b'"online"', "not a JSON object but a string"),
        (b"null", "not a JSON object but null"),
        (b"[" * 60_000, "not JSON: nested too deeply"),
        (b'{"status": "online", "n": ' + b"9" * 5000 + b"}", "not JSON: Exceeds the limit"),
        (b"{}", "status: Field required"),
        (b'{"status": "ONLINE"}', "status: Input should be"),
        (b'{"status": "online", "ts": "yesterday"}', "ts: Input should be a valid datetime"),
        (b'{"status": "online", "ts": true}', "ts: Input should be a valid datetime"),
        (b'{"status": "online", "detail": 42}', "detail: Input should be a valid string"),
    ],
)
def test_what_is_not_a_heartbeat_is_refused_with_a_short_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(ValueError) as refused:
        parse_heartbeat(payload)
    assert str(refused.value).startswith(reason)
    assert len(str(refused.value)) < 200


def test_a_heartbeat_may_carry_an_epoch_or_iso_time_and_fields_of_its_own() -> None:
    epoch = parse_heartbeat(b'{"status": "online", "ts": 1764158400, "bus": "ok"}')
    iso = parse_heartbeat(b'{"status": "online", "ts": "2025-11-26T12:00:00+00:00"}')
    assert epoch.ts == iso.ts
    assert epoch.model_extra == {"bus": "ok"}
    assert parse_heartbeat(b'{"status": "degraded"}').ts is None
