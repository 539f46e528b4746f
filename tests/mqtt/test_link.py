"""The supervisor's MQTT link and probe against a real broker."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.mqtt.ingress import IngressLimits
from graylogic_supervisor.mqtt.link import Incoming, LinkSettings, MqttLink, topic_matches
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from tests.conftest import Broker, free_port, start_broker

FLOOD = Path(__file__).parents[1] / "mqtt_flood.py"
LINK_LOGGER = "graylogic_supervisor.mqtt.link"


def settings(port: int, root: str) -> LinkSettings:
    return LinkSettings(
        host="127.0.0.1",
        port=port,
        client_id=f"sup-{root}",
        username=None,
        password=None,
        keepalive_s=5,
        will_topic=f"{root}/health/supervisor",
        will_payload=b'{"status":"offline"}',
        initial_backoff_s=0.05,
        max_backoff_s=0.2,
    )


async def read_retained(port: int, topic: str, timeout: float = 5) -> dict[str, object]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return dict(json.loads(message.payload))
    raise AssertionError("unreachable")


@pytest.fixture
async def running_link(broker: Broker, request: pytest.FixtureRequest) -> AsyncIterator[MqttLink]:
    link = MqttLink(settings(broker.port, request.node.name), SystemClock(), random.Random(1))
    task = asyncio.create_task(link.run())
    while not link.connected:
        await asyncio.sleep(0.01)
    yield link
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_retained_status_reaches_a_late_subscriber(
    broker: Broker, running_link: MqttLink, request: pytest.FixtureRequest
) -> None:
    topic = f"{request.node.name}/supervisor/health/mqtt"
    running_link.publish(topic, {"status": "healthy"}, retain=True)
    assert await read_retained(broker.port, topic) == {"status": "healthy"}


async def test_subscriptions_deliver_and_a_failing_handler_does_not_cut_the_link(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    root = request.node.name
    link = MqttLink(settings(broker.port, root), SystemClock(), random.Random(1))
    got: list[tuple[str, bytes]] = []

    def broken(message: Incoming) -> None:
        raise ValueError("handler bug")

    link.subscribe(f"{root}/in/+", lambda m: got.append((m.topic, m.payload)))
    link.subscribe(f"{root}/in/#", broken)
    task = asyncio.create_task(link.run())
    try:
        while not link.connected:
            await asyncio.sleep(0.01)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(f"{root}/in/a", b"one", qos=1)
            await client.publish(f"{root}/in/b", b"two", qos=1)
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        assert got == [(f"{root}/in/a", b"one"), (f"{root}/in/b", b"two")]
        assert link.connected
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_killed_broker_is_noticed_at_once_and_queued_messages_follow_the_reconnect(
    tmp_path: Path,
) -> None:
    port = free_port()
    own = start_broker(tmp_path / "b1", port)
    brokers = [own]
    link = MqttLink(settings(port, "drop"), SystemClock(), random.Random(1))
    changes: list[tuple[bool, float]] = []
    link.add_listener(lambda connected, _: changes.append((connected, time.perf_counter())))
    task = asyncio.create_task(link.run())
    try:
        while not link.connected:
            await asyncio.sleep(0.005)
        own.process.kill()
        killed = time.perf_counter()
        while link.connected:
            await asyncio.sleep(0.001)
        assert changes[-1][0] is False
        assert changes[-1][1] - killed < 0.5

        link.publish("drop/queued", {"n": 1}, retain=True)  # while the broker is down
        assert link.queued == 1
        own.process.wait()
        brokers.append(start_broker(tmp_path / "b2", port))
        link.reconnect_now()
        async with asyncio.timeout(5):
            while not link.connected:
                await asyncio.sleep(0.005)
        assert await read_retained(port, "drop/queued") == {"n": 1}
        assert [c for c, _ in changes] == [True, False, True]
    finally:
        task.cancel()  # before the broker goes, as the daemon does
        with pytest.raises(asyncio.CancelledError):
            await task
        for running in brokers:
            running.stop()


async def test_probe_measures_a_round_trip_and_fails_clearly_without_a_broker(
    broker: Broker,
) -> None:
    result = await probe_broker(ProbeTarget("127.0.0.1", broker.port, None, None, "probe"), 2)
    # both measured (a busy machine may take long; the probe's own 2 s bound is the limit)
    assert result.connect_s > 0 and result.round_trip_s > 0
    with pytest.raises(ProbeError, match=f"127.0.0.1:{free_port()}|127.0.0.1"):
        await probe_broker(ProbeTarget("127.0.0.1", free_port(), None, None, "probe"), 1)


async def test_the_link_breaker_opens_on_a_dead_broker_and_a_recovery_rearms_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = settings(port, "breaker")
    link = MqttLink(
        LinkSettings(**{**base.__dict__, "breaker_failures": 2, "breaker_open_s": 30}),
        SystemClock(),
        random.Random(1),
    )
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(5):
            while link.breaker.state.value != "open":
                await asyncio.sleep(0.01)
        assert link.breaker.wait_s() > 25  # it would wait half a minute now
        broker = start_broker(tmp_path / "b", port)
        try:
            link.reconnect_now()  # what the supervisor does once it has the broker back
            async with asyncio.timeout(2):
                while not link.connected:
                    await asyncio.sleep(0.005)
            assert link.breaker.state.value == "closed"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            broker.stop()
    finally:
        if not task.done():
            task.cancel()


async def test_a_flood_from_another_process_is_dropped_at_the_bound_and_logged_once(
    broker: Broker, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Full speed on one topic for a few seconds: the backlog never passes the bound, the
    link stays up, the flood is noticed, the drops are counted and logged once, not once
    each, and what is sent after it gets through."""
    caplog.set_level(logging.DEBUG, logger=LINK_LOGGER)
    root = request.node.name[:40]
    limits = IngressLimits(limit=200, lane_limit=50)
    link = MqttLink(
        LinkSettings(**{**settings(broker.port, root).__dict__, "ingress": limits}),
        SystemClock(),
        random.Random(1),
    )
    flooded: list[bytes] = []
    calm: list[bytes] = []
    link.subscribe(f"{root}/flood", lambda m: flooded.append(m.payload))
    link.subscribe(f"{root}/calm", lambda m: calm.append(m.payload))
    drops: list[tuple[str, str]] = []
    link.add_drop_listener(lambda reason, lane: drops.append((reason, lane)))
    changes: list[bool] = []
    link.add_listener(lambda connected, _: changes.append(connected))
    task = asyncio.create_task(link.run())
    most = 0

    async def watch_backlog() -> None:
        nonlocal most
        while True:
            most = max(most, link.backlog)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch_backlog())
    try:
        async with asyncio.timeout(10):
            while not link.connected:
                await asyncio.sleep(0.01)
        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            str(FLOOD),
            "127.0.0.1",
            str(broker.port),
            "3",
            f"{root}/flood",
            "x" * 100,
            stdout=asyncio.subprocess.PIPE,
        )
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            async with asyncio.timeout(30):
                while not drops:  # the flood has reached the link
                    await asyncio.sleep(0.01)
            assert link.flooded_at is not None
            out, _ = await flooder.communicate()
            sent = int(out)
            # What the broker and the sockets still hold drains through the bound; messages
            # sent after the flood arrive once it has (the broker drops those it cannot
            # queue for a reader still behind, so one is sent every half second; the
            # budget is for a loaded machine).
            async with asyncio.timeout(120):
                while not calm:
                    await client.publish(f"{root}/calm", b"after", qos=1)
                    await asyncio.sleep(0.5)
        assert most <= limits.limit
        assert changes == [True]  # never lost: the keepalive was answered throughout
        assert link.dropped["lane_full"] > 0
        assert len(flooded) + link.dropped["lane_full"] <= sent
        lines = [r for r in caplog.records if "over its bound" in r.getMessage()]
        assert len(lines) == 1  # one per cause a minute, however many were dropped
        assert lines[0].levelno == logging.WARNING
    finally:
        watcher.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b/+", "a/b/c", True),
        ("a/b/+", "a/b", False),
        ("a/b/+", "a/b/c/d", False),
        ("a/b/+", "a/b/", True),  # an empty level is a level
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("+/b", "$SYS/b", False),
        ("#", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
    ],
)
def test_topic_matching_follows_mqtt(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(tuple(topic_filter.split("/")), topic) is matches


@pytest.mark.parametrize("after_ms", [0, 1, 3, 5, 8])
async def test_stopping_the_link_with_qos1_messages_in_flight_ends_it(
    broker: Broker, after_ms: int
) -> None:
    """aiomqtt's publish can swallow the cancel that lands while it waits for a PUBACK;
    the link's writer must still stop (it once drained on and waited for ever, so the
    daemon's stop or a reconnect hung). 30 s is no speed limit: a hang never ends."""
    link = MqttLink(settings(broker.port, f"stop{after_ms}"), SystemClock(), random.Random(7))
    task = asyncio.create_task(link.run())
    while not link.connected:
        await asyncio.sleep(0.01)
    for number in range(200):
        link.publish(f"stop{after_ms}/x", {"n": number}, qos=1)
    await asyncio.sleep(after_ms / 1000)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)
    assert done, "the link did not stop"
