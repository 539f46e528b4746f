"""An attacker on the broker: floods topics at full speed, from a process of its own.

    python mqtt_flood.py HOST PORT SECONDS TOPIC PAYLOAD [PAYLOAD ...]

A raw MQTT 3.1.1 client (CONNECT, then QoS 0 PUBLISH packets in batches of a
thousand, then DISCONNECT): nothing between it and the socket, so the broker
gets as much as loopback carries. ``{n}`` in TOPIC is replaced by 0..999 (a
thousand topics); the payloads are used in turn. Prints the number of messages
sent when the time is up. Bounded in time, loopback only.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

BATCH = 1000


def _length(value: int) -> bytes:
    encoded = bytearray()
    while True:
        digit, value = value % 128, value // 128
        encoded.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(encoded)


def _string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def connect_packet(client_id: str) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id.encode())
    return b"\x10" + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    body = _string(topic.encode()) + payload
    return b"\x30" + _length(len(body)) + body


def flood(host: str, port: int, seconds: float, topic: str, payloads: list[bytes]) -> int:
    batch = b"".join(
        publish_packet(topic.replace("{n}", str(n)), payloads[n % len(payloads)])
        for n in range(BATCH)
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(connect_packet(f"flood-{time.time_ns()}"))
        if sock.recv(4)[:1] != b"\x20":
            raise SystemExit("no CONNACK")
        sent = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(batch)
            sent += BATCH
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return sent


if __name__ == "__main__":
    host, port, seconds, topic, *payloads = sys.argv[1:]
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    print(flood(host, int(port), float(seconds), topic, [p.encode() for p in payloads]))
