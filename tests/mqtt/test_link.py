"""The supervisor's MQTT link and probe against a real broker."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.mqtt.link import Incoming, LinkSettings, MqttLink
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from tests.conftest import Broker, free_port, start_broker


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
    assert 0 < result.connect_s < 1
    assert 0 < result.round_trip_s < 1
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
