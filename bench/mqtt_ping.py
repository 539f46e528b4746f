"""MQTT 3.1.1 by hand: one CONNECT, one CONNACK, on a fresh TCP connection."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, no credentials."""
    ident = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(ident).to_bytes(2, "big") + ident
    return bytes([0x10, len(body)]) + body  # remaining length < 128: a single byte


CONNECT = connect_packet("graylogic-bench")
DISCONNECT = b"\xe0\x00"


def mqtt_connect(port: int, timeout_s: float = 1.0) -> socket.socket | None:
    """A fresh connection that got CONNACK 0, still open; None on any failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.connect((HOST, port))
        sock.sendall(CONNECT)
        reply = read_exactly(sock, 4)
    except OSError:
        sock.close()
        return None
    if reply[:2] != b"\x20\x02" or reply[3] != 0:
        sock.close()
        return None
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        data += chunk
    return data
