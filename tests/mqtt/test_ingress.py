"""The bounded ingress queue on its own: lanes, bounds, drops, round-robin service."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from graylogic_supervisor.mqtt.ingress import IngressLimits, IngressQueue, ingress_queue_type


def message(topic: str, payload: bytes = b"x") -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, qos=0, retain=False, mid=0, properties=None)


def by_last_level(topic: aiomqtt.Topic) -> str | None:
    """Lanes as the heartbeat tracker names them: the last level, unknown ones unrouted."""
    name = topic.value.rsplit("/", 1)[-1]
    return name if name in {"knx", "dali", "modbus"} else None


def queue(limit: int = 10, lane_limit: int = 4) -> tuple[IngressQueue, list[tuple[str, str]]]:
    drops: list[tuple[str, str]] = []
    q = IngressQueue(
        by_last_level, IngressLimits(limit, lane_limit), lambda r, lane: drops.append((r, lane))
    )
    return q, drops


def drain(q: IngressQueue) -> list[str]:
    out = []
    while not q.empty():
        got = q.get_nowait()
        out.append(f"{got.topic.value.rsplit('/', 1)[-1]}:{got.payload!r}")
    return out


def test_a_flooded_lane_keeps_its_newest_and_delays_the_others_by_one_message_a_round() -> None:
    q, drops = queue()
    for n in range(100):
        q.put_nowait(message("h/knx", str(n).encode()))
    q.put_nowait(message("h/dali", b"d"))
    q.put_nowait(message("h/modbus", b"m"))
    assert q.qsize() == 6  # 4 of knx (its bound) and the two others
    assert drops == [("lane_full", "knx")] * 96
    assert drain(q) == [
        "knx:b'96'",
        "dali:b'd'",
        "modbus:b'm'",
        "knx:b'97'",
        "knx:b'98'",
        "knx:b'99'",
    ]


def test_beyond_the_total_bound_new_messages_are_dropped() -> None:
    q, drops = queue(limit=5, lane_limit=4)
    for topic in ["h/knx"] * 4 + ["h/dali"] * 3:
        q.put_nowait(message(topic))
    assert q.qsize() == 5
    assert q.full()
    assert drops == [("queue_full", "dali"), ("queue_full", "dali")]


def test_a_topic_nobody_routes_takes_no_room() -> None:
    q, drops = queue(limit=1)
    for _ in range(1000):
        q.put_nowait(message("h/zigbee"))
    assert q.empty()
    assert drops == [("unrouted", "")] * 1000
    q.put_nowait(message("h/knx"))
    assert q.qsize() == 1


async def test_a_waiting_reader_gets_what_arrives_and_the_type_aiomqtt_builds_works() -> None:
    drops: list[tuple[str, str]] = []
    queue_type = ingress_queue_type(
        by_last_level, IngressLimits(3, 2), lambda r, lane: drops.append((r, lane))
    )
    q = queue_type(maxsize=0)  # what aiomqtt passes; the limits are ours
    reader = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait(message("h/dali", b"first"))
    got = await asyncio.wait_for(reader, 5)
    assert got.payload == b"first"
    assert q.maxsize == 3
    for _ in range(5):
        q.put_nowait(message("h/knx"))
    assert q.qsize() == 2
    assert drops == [("lane_full", "knx")] * 3


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        IngressLimits(0, 1)
