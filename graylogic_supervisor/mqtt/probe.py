"""An active MQTT round trip: connect, subscribe, publish, receive.

The verify step of a recovery uses this instead of waiting for the main link's
reconnect backoff, so a recovered broker is confirmed within milliseconds.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import aiomqtt

from graylogic_supervisor.cancellation import raise_if_cancelling
from graylogic_supervisor.errors import SupervisorError


class ProbeError(SupervisorError):
    """The broker did not complete the round trip."""


@dataclass(frozen=True)
class ProbeTarget:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)  # never in a log line or a traceback
    topic_root: str


@dataclass(frozen=True)
class ProbeResult:
    connect_s: float
    round_trip_s: float


async def probe_broker(target: ProbeTarget, timeout_s: float) -> ProbeResult:
    """Measure CONNACK time and a QoS 1 publish-to-receive round trip."""
    token = secrets.token_hex(6)
    topic = f"{target.topic_root}/supervisor/probe/{token}"
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async with aiomqtt.Client(
                target.host,
                target.port,
                identifier=f"graylogic-probe-{token}",
                username=target.username,
                password=target.password,
                keepalive=10,
                timeout=timeout_s,
            ) as client:
                raise_if_cancelling()  # the connect may have swallowed a cancel
                connected = time.perf_counter()
                await client.subscribe(topic, qos=1)
                await client.publish(topic, token.encode(), qos=1)
                async for message in client.messages:
                    if message.payload == token.encode():
                        break
                received = time.perf_counter()
    except TimeoutError as exc:
        raise ProbeError(
            f"no MQTT round trip with {target.host}:{target.port} in {timeout_s:g} s"
        ) from exc
    except aiomqtt.MqttError as exc:
        raise ProbeError(f"MQTT broker {target.host}:{target.port}: {exc}") from exc
    return ProbeResult(connect_s=connected - began, round_trip_s=received - connected)
