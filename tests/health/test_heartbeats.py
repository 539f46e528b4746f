"""Bridge heartbeats through a real broker, a real MqttLink and a real HealthMonitor.

The broker-backed tests run on real time with sub-second windows; the
start-up grace, the rate, the timestamps and the once-a-minute warning are
pinned with a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from graylogic_supervisor.clock import Clock, SystemClock
from graylogic_supervisor.config import BridgeComponent
from graylogic_supervisor.health.heartbeats import HeartbeatTracker, parse_heartbeat
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.mqtt.link import Incoming, LinkSettings, MqttLink
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.services.process import ProcessService
from tests.clocks import ManualClock
from tests.conftest import Broker

HEARTBEATS_LOGGER = "graylogic_supervisor.health.heartbeats"


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def bridge(window_s: float = 30.0, **extra: Any) -> BridgeComponent:
    return BridgeComponent(
        kind="bridge", error_id="ERR-BRIDGE-HEARTBEAT-001", heartbeat_window_s=window_s, **extra
    )


def now_ts() -> float:
    return time.time()


@dataclass
class Rig:
    root: str
    tracker: HeartbeatTracker
    monitor: HealthMonitor
    link: MqttLink
    client: aiomqtt.Client
    services: ServiceManager
    rechecked: list[str]

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
async def running_rig(
    broker: Broker,
    window_s: float = 30.0,
    *,
    knx_service: Path | None = None,
    root: str | None = None,
) -> AsyncIterator[Rig]:
    """The daemon's wiring in small: tracker -> monitor.report and monitor.probe, link ->
    tracker.handle; with ``knx_service`` (a run directory) knx has a real process service."""
    root = root or f"hb-{uuid.uuid4().hex[:8]}"
    clock = SystemClock()
    service = {"service": "bridge-knx"} if knx_service else {}
    rechecked: list[str] = []

    async def recheck(name: str) -> None:
        await monitor.probe(name)
        rechecked.append(name)

    components = {"knx": bridge(window_s, **service), "dali": bridge(window_s)}
    tracker = HeartbeatTracker(
        components,
        root,
        clock,
        lambda name, healthy, detail: monitor.report(name, healthy, detail),
        recheck=recheck,
    )
    services = ServiceManager(clock)
    if knx_service is not None:
        services.add(
            ProcessService(
                "bridge-knx",
                SLEEPER,
                run_dir=knx_service / "run",
                log_path=knx_service / "bridge-knx.log",
                on_exit=lambda name, detail: monitor.service_exited(name, detail),
                stop_timeout_s=2,
            )
        )
        services.add_replace_listener(tracker.service_replaced)
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
    link.subscribe(tracker.topic_filter, tracker.handle, lane=tracker.lane, qos=0)
    task = asyncio.create_task(link.run(), name="mqtt-link")
    rechecks = asyncio.create_task(tracker.run(), name="heartbeat-rechecks")
    try:
        await until(lambda: link.connected, 5)
        async with aiomqtt.Client(broker.host, broker.port, identifier=f"{root}-bridge") as client:
            yield Rig(root, tracker, monitor, link, client, services, rechecked)
    finally:
        for running in (task, rechecks):
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        await services.close()


async def test_a_heartbeat_makes_the_bridge_healthy_at_once(broker: Broker) -> None:
    async with running_rig(broker) as rig:
        sent = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await rig.send("knx", {"status": "online", "ts": sent})
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
        await until(lambda: rig.tracker.dropped["knx", "malformed"] == len(MALFORMED))
        assert rig.health() is Health.UNKNOWN  # none of them counted as a sign of life
        assert await rig.tracker.prober("knx", bridge()) == (True, "waiting for first heartbeat")
        assert rig.link.connected

        await rig.send("knx", {"status": "degraded", "detail": "bus voltage low"})
        await until(lambda: rig.health() is Health.HEALTHY)
        assert rig.monitor.state("knx").detail == "heartbeat: degraded"
        assert rig.monitor.changes.qsize() == 1

    lines = [r for r in caplog.records if r.name == HEARTBEATS_LOGGER]
    assert len(lines) == 1  # one line a minute per bridge and cause, the rest only counted
    assert lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == "heartbeat from bridge knx refused: not UTF-8"
    assert getattr(lines[0], "error_id", None) == "ERR-BRIDGE-HEARTBEAT-001"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_offline_report_is_believed_only_once_the_heartbeats_stop(
    broker: Broker,
) -> None:
    """Anyone can publish `offline`: on its own word no bridge fails; silence confirms it."""
    async with running_rig(broker, window_s=0.5) as rig:
        await rig.send("knx", {"status": "online"})
        await until(lambda: rig.health() is Health.HEALTHY)
        await rig.send("knx", {"status": "offline"})
        await rig.send("dali", {"status": "online"})  # sent last: the offline has arrived
        await until(lambda: rig.health("dali") is Health.HEALTHY)
        healthy, detail = await rig.monitor.probe("knx")
        assert healthy, detail
        assert "its offline report" in detail
        assert rig.health() is Health.HEALTHY

        await asyncio.sleep(0.6)  # no heartbeat follows: now it is believed
        healthy, detail = await rig.monitor.probe("knx")
        assert not healthy
        assert detail.startswith("reported offline 0.")
        assert rig.health() is Health.UNHEALTHY

        await rig.send("knx", {"status": "online"})
        await until(lambda: rig.health() is Health.HEALTHY)


async def test_online_and_offline_at_full_speed_flip_a_bridge_at_most_once(
    broker: Broker,
) -> None:
    """A bridge that beats cannot be failed by anyone's `offline`, however many are sent."""
    async with running_rig(broker, window_s=30) as rig:
        for _ in range(500):
            await rig.send("knx", {"status": "offline"})
            await rig.send("knx", {"status": "online"})
        await rig.send("dali", {"status": "online"})
        await until(lambda: rig.health("dali") is Health.HEALTHY, 10)
        assert rig.health() is Health.HEALTHY
        assert rig.monitor.changes.qsize() == 2  # knx once, dali once: no flip-flop
        assert rig.tracker.dropped["knx", "rate"] > 0  # 1000 in a moment: most were dropped
        assert (await rig.monitor.probe("knx"))[0]


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
        assert rig.tracker.dropped == {}
        assert rig.link.dropped["unrouted"] == 3  # not even queued: no handler reads them
        assert rig.monitor.changes.qsize() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_heartbeat_the_broker_retained_from_before_is_not_trusted(broker: Broker) -> None:
    root = f"hb-{uuid.uuid4().hex[:8]}"
    async with aiomqtt.Client(broker.host, broker.port) as old:  # a bridge long gone
        await old.publish(f"{root}/health/knx", b'{"status": "online"}', qos=1, retain=True)
    try:
        async with running_rig(broker, root=root) as rig:
            await rig.send("dali", {"status": "online"})
            await until(lambda: rig.health("dali") is Health.HEALTHY)
            await until(lambda: rig.tracker.dropped["knx", "retained"] == 1)
            assert rig.health() is Health.UNKNOWN

            await rig.send("knx", {"status": "online"})  # live: the broker clears the flag
            await until(lambda: rig.health() is Health.HEALTHY)
    finally:
        async with aiomqtt.Client(broker.host, broker.port) as old:
            await old.publish(f"{root}/health/knx", b"", qos=1, retain=True)


async def test_a_faked_online_for_a_bridge_whose_service_is_down_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    async with running_rig(broker, window_s=30, knx_service=tmp_path) as rig:
        status = await rig.services.start("bridge-knx")
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)  # the bridge dies, before any heartbeat
        await until(lambda: rig.health() is Health.UNHEALTHY, 5)
        for _ in range(5):  # anyone on the broker speaks for it
            await rig.send("knx", {"status": "online"})
        await rig.send("dali", {"status": "online"})
        await until(lambda: rig.health("dali") is Health.HEALTHY)
        await until(lambda: rig.rechecked == ["knx"])  # the first asked for one, the rest not
        assert rig.health() is Health.UNHEALTHY
        assert rig.monitor.state("knx").detail == "service bridge-knx killed by SIGKILL"
        assert rig.monitor.changes.qsize() == 2  # knx unhealthy, dali healthy: no flip

        await rig.services.start("bridge-knx")  # it runs again: its next heartbeat counts
        await rig.send("knx", {"status": "online"})
        await until(lambda: rig.health() is Health.HEALTHY, 5)
        assert rig.monitor.state("knx").detail.startswith("last heartbeat ")  # within a second


# --- the tracker on a hand-moved clock ------------------------------------------------------


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def __call__(self, component: str, healthy: bool, detail: str) -> None:
        self.calls.append((component, healthy, detail))


async def no_recheck(component: str) -> None:
    raise AssertionError(f"{component} has no service: nothing to re-check")


def tracker_on(
    clock: Clock, window_s: float = 30.0, **extra: Any
) -> tuple[HeartbeatTracker, Reports]:
    reports = Reports()
    knx = bridge(window_s, **extra)
    return HeartbeatTracker({"knx": knx}, "site/", clock, reports, recheck=no_recheck), reports


def beat(status: str = "healthy", ts: datetime | None = None, retain: bool = False) -> Incoming:
    payload: dict[str, Any] = {"status": status}
    if ts is not None:
        payload["ts"] = ts.isoformat()
    return Incoming("site/health/knx", json.dumps(payload).encode(), retain)


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
    tracker = HeartbeatTracker({"knx": knx}, "site/", clock, Reports(), recheck=no_recheck)
    tracker.service_replaced("bridge-knx")  # started at start-up: the first window's grace
    assert await tracker.prober("knx", knx) == (True, "waiting for first heartbeat")
    tracker.handle(beat())
    clock.advance(1.0)

    tracker.service_replaced("bridge-knx")  # a restart, well within the window
    clock.advance(0.5)
    assert await tracker.prober("knx", knx) == (
        False,
        "no heartbeat since its service was restarted 0.5 s ago",
    )
    tracker.service_replaced("another-service")  # another bridge's restart changes nothing
    tracker.handle(beat("online"))
    assert await tracker.prober("knx", knx) == (True, "last heartbeat 0.0 s ago (online)")


async def test_the_heartbeat_age_is_measured_on_the_injected_clock() -> None:
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    tracker.handle(Incoming("site/health/knx", b'{"status": "healthy", "ts": 1795694400}'))
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
        tracker.handle(Incoming("site/health/knx", b"{"))
        clock.advance(10)
    clock.advance(30)  # 60 s after the first warning
    tracker.handle(Incoming("site/health/knx", b"[]"))
    assert tracker.dropped["knx", "malformed"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat from bridge knx refused: not JSON:"
        " Expecting property name enclosed in double quotes at character 1",
        "heartbeat from bridge knx refused: not a JSON object but an array"
        " (2 more since the last line)",
    ]
    assert reports.calls == []


async def test_beyond_its_rate_a_bridges_heartbeats_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=HEARTBEATS_LOGGER)
    clock = ManualClock()
    tracker, reports = tracker_on(clock, max_heartbeats_per_s=2)
    for _ in range(50):  # at one instant: the burst (twice the rate, at least 3) passes
        tracker.handle(beat())
    assert len(reports.calls) == 4
    assert tracker.dropped["knx", "rate"] == 46
    clock.advance(1.0)  # two more a second
    for _ in range(10):
        tracker.handle(beat())
    assert len(reports.calls) == 6
    assert tracker.dropped["knx", "rate"] == 54
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat from bridge knx dropped (rate): more than 2 a second"
    ]


async def test_messages_over_a_bridges_rate_cannot_starve_it_into_a_failure() -> None:
    """Anyone may publish on a bridge's topic: a sender that fills its rate (here with
    `offline`) may get the bridge's own heartbeats dropped, and that silence is no failure."""
    clock = ManualClock()
    tracker, _ = tracker_on(clock, window_s=1.0, max_heartbeats_per_s=10)
    tracker.handle(beat("online"))
    for _ in range(30):  # 3 s: 20 offline a second take every token, the bridge's are lost
        for _ in range(2):
            tracker.handle(beat("offline"))
        tracker.handle(beat("online"))
        clock.advance(0.1)
    assert tracker.dropped["knx", "rate"] > 0
    healthy, detail = await tracker.prober("knx", bridge(1.0, max_heartbeats_per_s=10))
    assert healthy, detail
    assert "ran over its rate" in detail
    clock.advance(1.0)  # a whole window with nothing over the rate, and silent: now it counts
    healthy, detail = await tracker.prober("knx", bridge(1.0, max_heartbeats_per_s=10))
    assert not healthy and "reported offline" in detail


async def test_a_retained_heartbeat_is_no_sign_of_life() -> None:
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    clock.advance(31)  # past the start-up grace
    tracker.handle(beat("online", retain=True))
    assert reports.calls == []
    assert tracker.dropped["knx", "retained"] == 1
    assert await tracker.prober("knx", bridge()) == (False, "no heartbeat since start-up")


@pytest.mark.parametrize(
    ("offset_s", "reason", "detail"),
    [
        (-30.0, "stale", "ts 30 s old, its window is 30 s"),
        (-86_400.0, "stale", "ts 86400 s old, its window is 30 s"),
        (31.0, "future", "ts 31 s ahead of our clock"),
    ],
)
async def test_a_heartbeat_stamped_outside_its_window_is_no_sign_of_life(
    offset_s: float, reason: str, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=HEARTBEATS_LOGGER)
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    tracker.handle(beat(ts=clock.now() + timedelta(seconds=offset_s)))
    assert reports.calls == []
    assert tracker.dropped == {("knx", reason): 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"heartbeat from bridge knx dropped ({reason}): {detail}"
    ]


async def test_a_heartbeat_stamped_within_its_window_either_way_counts() -> None:
    clock = ManualClock()
    tracker, reports = tracker_on(clock)
    tracker.handle(beat(ts=clock.now() - timedelta(seconds=29)))
    tracker.handle(beat(ts=clock.now() + timedelta(seconds=29)))  # a clock a little ahead
    tracker.handle(beat(ts=clock.now().replace(tzinfo=None)))  # naive: read as UTC
    assert len(reports.calls) == 3
    assert tracker.dropped == {}


async def test_a_bridge_with_a_service_is_rechecked_rather_than_reported_healthy() -> None:
    """Its heartbeat alone never calls it healthy: the monitor's probe checks the service."""
    clock = ManualClock()
    knx = bridge(service="bridge-knx")
    rechecked: list[str] = []

    async def recheck(component: str) -> None:
        rechecked.append(component)

    reports = Reports()
    tracker = HeartbeatTracker({"knx": knx}, "site/", clock, reports, recheck=recheck)
    runner = asyncio.create_task(tracker.run())
    try:
        for _ in range(5):
            tracker.handle(beat())  # the first brings it back: one re-check
        await until(lambda: len(rechecked) == 1)
        clock.advance(0.5)
        tracker.handle(beat("offline"))  # asks for one more, at most one a second
        await asyncio.sleep(0.05)
        assert len(rechecked) == 1
        clock.advance(0.5)
        await until(lambda: len(rechecked) == 2, 5)
        assert reports.calls == []
        assert (await tracker.prober("knx", knx))[0]  # what the probe reads after the service
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_silence_during_a_flood_and_for_a_window_after_it_is_no_evidence() -> None:
    """The broker drops what a flooded client cannot read, heartbeats included: a bridge
    healthy before the flood is not failed for the heartbeats the flood cost it."""
    clock = ManualClock()
    flood: list[float] = []
    reports = Reports()
    tracker = HeartbeatTracker(
        {"knx": bridge(10), "dali": bridge(10)},
        "site/",
        clock,
        reports,
        recheck=no_recheck,
        flooded_at=lambda: flood[-1] if flood else None,
    )
    tracker.handle(Incoming("site/health/knx", b'{"status": "online"}'))
    assert await tracker.prober("knx", bridge(10)) == (True, "last heartbeat 0.0 s ago (online)")
    clock.advance(11)
    assert not (await tracker.prober("dali", bridge(10)))[0]  # dead before any flood
    for _ in range(20):  # a 20 s flood
        flood.append(clock.monotonic())
        clock.advance(1)
    healthy, detail = await tracker.prober("knx", bridge(10))
    assert healthy
    assert detail == (
        "no heartbeat for 31 s (window 10 s); the MQTT ingress was flooded 1.0 s ago,"
        " so heartbeats may have been lost: silence is not evidence yet"
    )
    assert not (await tracker.prober("dali", bridge(10)))[0]  # it keeps its verdict too
    clock.advance(8)
    assert (await tracker.prober("knx", bridge(10)))[0]
    clock.advance(1)  # a whole window since the flood, and still silent: now it counts
    assert await tracker.prober("knx", bridge(10)) == (False, "no heartbeat for 40 s (window 10 s)")


def test_a_bridge_named_like_the_supervisors_own_topic_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="cannot be named 'supervisor'"):
        HeartbeatTracker(
            {"supervisor": bridge()}, "site", SystemClock(), Reports(), recheck=no_recheck
        )


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
