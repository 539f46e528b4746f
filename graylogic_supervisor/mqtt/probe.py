"""An active MQTT round trip: connect, subscribe, publish, receive.

The verify step of a recovery uses this instead of waiting for the main link's
reconnect backoff, so a recovered broker is confirmed within milliseconds; the
health monitor uses it to probe and to confirm a failure.

It speaks the few MQTT 3.1.1 packets it needs on asyncio's own sockets rather
than through aiomqtt, whose connect runs in the shared default thread pool: a
pool full of other work (password hashes) made the probe time out while the
broker answered in 4 ms. Here nothing waits on a thread unless the host is a
name to resolve, and then on a thread of its own. A failure on our side (no
file descriptor, a loop too busy to give the broker its time) raises
:class:`~graylogic_supervisor.impairment.CouldNotTell`, never ``ProbeError``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import threading
from dataclasses import dataclass, field

from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.impairment import (
    CouldNotTell,
    LagWatch,
    could_not_tell_from,
    os_reason,
)

# MQTT 3.1.1 control packet types (the high nibble of the first byte).
CONNACK, PUBLISH, SUBACK = 2, 3, 9
CONNACK_REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
SUBSCRIBE_ID, PUBLISH_ID = 1, 2
MAX_PACKET = 1 << 20  # more than a probe ever gets back; a bigger length is garbage
KEEPALIVE_S = 10


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
    """Measure CONNACK time and a QoS 1 publish-to-receive round trip on a fresh connection.

    Raises ``ProbeError`` when the broker failed it, ``CouldNotTell`` when we did.
    """
    where = f"{target.host}:{target.port}"
    loop = asyncio.get_running_loop()
    session = _Session(target)
    began = loop.time()
    async with LagWatch() as lag:
        try:
            async with asyncio.timeout(timeout_s):
                return await session.run()
        except TimeoutError as exc:
            waited = loop.time() - began
            if lag.own_timeout(waited):
                raise CouldNotTell(
                    "loop-lag",
                    f"no MQTT round trip with {where} in {timeout_s:g} s, but the supervisor's"
                    f" event loop was busy for {lag.stalled_s:.1f} s of the {waited:.1f} s",
                ) from exc
            raise ProbeError(
                f"no MQTT round trip with {where} in {timeout_s:g} s ({session.phase})"
            ) from exc
        except asyncio.IncompleteReadError as exc:
            raise ProbeError(f"MQTT broker {where} closed the connection {session.phase}") from exc
        except OSError as exc:
            own = could_not_tell_from(exc, f"probe the MQTT broker {where}")
            if own is not None:
                raise own from exc
            raise ProbeError(f"MQTT broker {where}: {os_reason(exc)}") from exc
        except MemoryError as exc:
            raise CouldNotTell("memory", f"could not probe {where}: out of memory") from exc
        finally:
            session.close()


class _Session:
    """One probe connection; ``phase`` says how far it got, for the error message."""

    def __init__(self, target: ProbeTarget) -> None:
        self._target = target
        self._token = secrets.token_hex(6)
        self._writer: asyncio.StreamWriter | None = None
        self.phase = "before connecting"

    async def run(self) -> ProbeResult:
        target, token = self._target, self._token
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.phase = "while connecting"
        host = await resolve(target.host, target.port)
        reader, self._writer = await asyncio.open_connection(host, target.port)
        self.phase = "before its CONNACK"
        self._writer.write(_connect(f"graylogic-probe-{token}", target.username, target.password))
        kind, _, body = await _read_packet(reader)
        if kind != CONNACK or len(body) < 2:
            raise ProbeError(f"MQTT broker answered CONNECT with packet type {kind}")
        if body[1] != 0:
            refusal = CONNACK_REFUSALS.get(body[1], f"code {body[1]}")
            raise ProbeError(f"MQTT broker refused the probe: {refusal}")
        connected = loop.time()

        topic = f"{target.topic_root}/supervisor/probe/{token}"
        self.phase = "before its SUBACK"
        self._writer.write(_subscribe(topic))
        kind, _, body = await _read_packet(reader)
        if kind != SUBACK or len(body) < 3 or body[2] == 0x80:
            raise ProbeError(f"MQTT broker refused the probe's subscription to {topic}")
        self.phase = "before the probe message came back"
        self._writer.write(_publish(topic, token.encode()))
        while True:  # a PUBACK comes too, in either order
            kind, flags, body = await _read_packet(reader)
            if kind == PUBLISH and _payload(flags, body) == token.encode():
                break
        received = loop.time()
        self._writer.write(b"\xe0\x00")  # DISCONNECT: no last will, a clean goodbye
        self.phase = "after the round trip"
        return ProbeResult(connect_s=connected - began, round_trip_s=received - connected)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def resolve(host: str, port: int) -> str:
    """An address for ``host``: a literal at once, a name on a thread of its own.

    asyncio would resolve a name in the default thread pool, the very pool
    other work can fill; one short-lived thread per lookup cannot be starved.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(result: str | BaseException) -> None:
        if answer.done():
            return  # the caller gave up (its timeout)
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

    def lookup() -> None:
        result: str | BaseException
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result = str(infos[0][4][0])
        except OSError as exc:
            result = exc
        loop.call_soon_threadsafe(settle, result)

    try:
        threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True).start()
    except RuntimeError as exc:  # "can't start new thread": our resources, not the broker
        raise CouldNotTell("threads", f"could not resolve {host}: {exc}") from exc
    return await answer


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(packet type, flags, body) of the next packet."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise ProbeError("MQTT broker sent a malformed remaining length")
    if length > MAX_PACKET:
        raise ProbeError(f"MQTT broker sent a {length}-byte packet to a probe")
    return first >> 4, first & 0x0F, await reader.readexactly(length)


def _payload(flags: int, body: bytes) -> bytes:
    topic_length = int.from_bytes(body[:2], "big")
    start = 2 + topic_length + (2 if (flags >> 1) & 0x03 else 0)
    return body[start:]


def _packet(first: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first]) + bytes(encoded) + body


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def _connect(client_id: str, username: str | None, password: str | None) -> bytes:
    if password is not None and username is None:
        username = ""  # MQTT 3.1.1 allows a password only with a user name
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes([4, flags]) + KEEPALIVE_S.to_bytes(2, "big")
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(0x10, body)


def _subscribe(topic: str) -> bytes:
    return _packet(0x82, SUBSCRIBE_ID.to_bytes(2, "big") + _string(topic) + b"\x01")


def _publish(topic: str, payload: bytes) -> bytes:
    return _packet(0x32, _string(topic) + PUBLISH_ID.to_bytes(2, "big") + payload)
