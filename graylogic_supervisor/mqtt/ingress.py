"""The bounded queue between the MQTT client's socket and the message handlers.

Anyone on the broker can publish on a topic the supervisor listens to, as fast
as the network goes. Such a flood must cost a bounded amount of memory and
time, and must not crowd out the messages that matter:

- each message goes into a *lane* its subscription names (a bridge's heartbeats:
  that bridge's lane); a message no subscription wants (an unknown bridge's
  topic) is dropped before it takes any room;
- a lane holds at most ``lane_limit`` messages (beyond, its oldest is dropped:
  for heartbeats the freshest is the one worth reading) and all lanes together
  at most ``limit`` (beyond, the new message is dropped);
- handlers are served round-robin across lanes, so a flooded topic delays the
  others by one message per round, never by its backlog.

aiomqtt puts each message in its queue from paho's socket callback, one packet
per callback; this class is that queue (aiomqtt's ``queue_type``), so a drop
costs a dict lookup where the packet is read, the socket is read at full speed,
and the keepalive's PINGRESP is never stuck behind a backlog. It follows the
subclassing protocol of ``asyncio.PriorityQueue`` (``_init``, ``_put``, ``_get``
on ``self._queue``). Drops are reported to ``on_drop`` with a reason
(``unrouted``, ``lane_full``, ``queue_full``) and the lane (empty when unrouted).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiomqtt

Router = Callable[[aiomqtt.Topic], str | None]  # topic -> lane, or None: nobody wants it
DropListener = Callable[[str, str], None]  # (reason, lane or topic filter)

UNROUTED = "unrouted"
LANE_FULL = "lane_full"
QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class IngressLimits:
    """The ingress queue's bounds: not configurable (no config section holds them)."""

    limit: int = 1000  # messages queued in all lanes together
    lane_limit: int = 100  # messages queued in one lane
    flood_per_s: float = 1000.0  # arrivals beyond this rate (or a full lane) are a flood

    def __post_init__(self) -> None:
        if self.limit < 1 or self.lane_limit < 1 or self.flood_per_s <= 0:
            raise ValueError("ingress limits must be at least 1")


class _Lanes:
    """FIFO lanes served round-robin; ``len`` is the total, as ``asyncio.Queue`` expects."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[str, deque[aiomqtt.Message]] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[aiomqtt.Message]:  # asyncio.Queue's repr lists the queue
        return (m for lane in self._lanes.values() for m in lane)

    def size(self, lane: str) -> int:
        queued = self._lanes.get(lane)
        return len(queued) if queued is not None else 0

    def append(self, lane: str, message: aiomqtt.Message) -> None:
        self._lanes.setdefault(lane, deque()).append(message)
        self._total += 1

    def drop_oldest(self, lane: str) -> None:
        self._lanes[lane].popleft()
        self._total -= 1

    def popleft(self) -> aiomqtt.Message:
        lane, queued = next(iter(self._lanes.items()))
        message = queued.popleft()
        self._total -= 1
        if queued:
            self._lanes.move_to_end(lane)  # its next message waits for the other lanes' turn
        else:
            del self._lanes[lane]
        return message


class IngressQueue(asyncio.Queue[aiomqtt.Message]):
    """A queue that never refuses a put: beyond its bounds the message is dropped and
    counted, so the paho callback that puts it never raises or logs per message."""

    def __init__(self, route: Router, limits: IngressLimits, on_drop: DropListener) -> None:
        self._route = route
        self._limits = limits
        self._on_drop = on_drop
        super().__init__(maxsize=limits.limit)

    def _init(self, maxsize: int) -> None:
        self._queue = _Lanes()

    def put_nowait(self, item: aiomqtt.Message) -> None:
        lane = self._route(item.topic)
        if lane is None:
            self._on_drop(UNROUTED, "")
            return
        lanes: _Lanes = self._queue
        if lanes.size(lane) >= self._limits.lane_limit:
            lanes.drop_oldest(lane)
            self._on_drop(LANE_FULL, lane)
        elif self.full():
            self._on_drop(QUEUE_FULL, lane)
            return
        self._lane = lane
        super().put_nowait(item)

    def _put(self, item: aiomqtt.Message) -> None:
        self._queue.append(self._lane, item)

    def _get(self) -> aiomqtt.Message:
        lanes: _Lanes = self._queue
        return lanes.popleft()


def ingress_queue_type(
    route: Router, limits: IngressLimits, on_drop: DropListener
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """What aiomqtt's ``queue_type`` wants: a class it builds with ``maxsize`` only."""

    class BoundIngressQueue(IngressQueue):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(route, limits, on_drop)

    return BoundIngressQueue
