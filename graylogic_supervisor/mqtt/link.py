"""The supervisor's one MQTT connection.

It reconnects with capped, jittered backoff and never blocks the daemon:
``publish`` only queues, and a writer drains the queue while connected. The
broker is one of the things we supervise, so a lost link is news (the health
monitor hears of it at once), not an error that stops anything.

What arrives goes through a bounded queue (``ingress.py``) to the handlers,
one at a time on this loop: a flood is dropped and counted where it is read,
and what is said about it (here and in the outbox) is one log line per cause
per minute (``logsummary.py``). ``flooded_at`` tells when the last sign of a
flood was seen (a full lane, or arrivals beyond ``flood_per_s``): until then
the broker may have dropped messages meant for us (Mosquitto drops beyond
``max_queued_messages`` for a client that reads too slowly), so silence on a
topic proved nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from graylogic_supervisor.backoff import Backoff
from graylogic_supervisor.breaker import BreakerState, CircuitBreaker
from graylogic_supervisor.cancellation import raise_if_cancelling
from graylogic_supervisor.clock import Clock
from graylogic_supervisor.logsummary import LogSummary
from graylogic_supervisor.mqtt.ingress import (
    UNROUTED,
    DropListener,
    IngressLimits,
    ingress_queue_type,
)
from graylogic_supervisor.tokenbucket import TokenBucket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A message as a handler gets it. ``retain``: the broker kept it from before we
    subscribed, so it says nothing about now."""

    topic: str
    payload: bytes
    retain: bool = False


MessageHandler = Callable[[Incoming], None]
Lane = Callable[[str], str | None]  # topic -> ingress lane, or None: the handler ignores it
LinkListener = Callable[[bool, str], None]  # (connected, detail)

MAX_QUEUED = 1000
SUMMARY_INTERVAL_S = 60.0


@dataclass(frozen=True)
class _Subscription:
    handler: MessageHandler
    lane: Lane | None
    qos: int
    levels: tuple[str, ...]  # the filter split once: every message is matched against it


def topic_matches(levels: tuple[str, ...], topic: str) -> bool:
    """MQTT matching of a split filter (``+`` one level, ``#`` the rest), on the path of
    every incoming message: a flood is read at the speed of this function."""
    parts = topic.split("/")
    if topic.startswith("$") and levels[0] in ("+", "#"):
        return False  # $SYS and friends are never matched by a leading wildcard
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(parts) or (level != "+" and level != parts[index]):
            return False
    return len(parts) == len(levels)


@dataclass(frozen=True)
class LinkSettings:
    """What one connection needs, derived from the ``mqtt`` section and more.

    Not the config section itself: the host and port come from the broker plan (our own
    Mosquitto may run on another port), the will from the topics and the site, the
    password is a plain string here, and mqtt/ stays below config.py.
    """

    host: str
    port: int
    client_id: str
    username: str | None
    password: str | None = field(repr=False)  # never in a log line or a traceback
    keepalive_s: int
    will_topic: str
    will_payload: bytes
    initial_backoff_s: float = 0.1
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 10.0
    backoff_jitter: float = 0.2
    breaker_failures: int = 10  # consecutive failed connects that open the breaker
    breaker_open_s: float = 60.0
    ingress: IngressLimits = field(default_factory=IngressLimits)


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


class MqttLink:
    def __init__(
        self, settings: LinkSettings, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._backoff = Backoff(
            settings.initial_backoff_s,
            settings.backoff_multiplier,
            settings.max_backoff_s,
            settings.backoff_jitter,
            rng=rng or random.Random(),
        )
        self._retained: OrderedDict[str, _Outgoing] = OrderedDict()  # latest per topic
        self._queue: deque[_Outgoing] = deque(maxlen=MAX_QUEUED)
        self._wakeup = asyncio.Event()
        self._reconnect = asyncio.Event()
        self.breaker = CircuitBreaker(clock, settings.breaker_failures, settings.breaker_open_s)
        self._subscriptions: dict[str, _Subscription] = {}
        self._listeners: list[LinkListener] = []
        self._drop_listeners: list[DropListener] = []
        self._on_connect: list[_Outgoing] = []
        self._summary = LogSummary(logger, clock, SUMMARY_INTERVAL_S)
        self.dropped: Counter[str] = Counter()  # incoming messages dropped, by reason
        self._client: aiomqtt.Client | None = None
        self._arrivals = TokenBucket(
            clock, settings.ingress.flood_per_s, 2 * settings.ingress.flood_per_s
        )
        self.flooded_at: float | None = None  # clock.monotonic() of the last sign of a flood
        self.connected = False

    def subscribe(
        self,
        topic_filter: str,
        handler: MessageHandler,
        *,
        lane: Lane | None = None,
        qos: int = 1,
    ) -> None:
        """Register before ``run``; subscriptions are renewed on every connect.

        ``lane`` names the ingress lane of a topic (default: one lane for the filter),
        or None for a topic the handler would ignore, dropped before it is queued.
        """
        levels = tuple(topic_filter.split("/"))
        self._subscriptions[topic_filter] = _Subscription(handler, lane, qos, levels)

    def add_listener(self, listener: LinkListener) -> None:
        self._listeners.append(listener)

    def add_drop_listener(self, listener: DropListener) -> None:
        """Told (reason, lane) of each incoming message dropped before its handler."""
        self._drop_listeners.append(listener)

    def publish_on_connect(
        self, topic: str, payload: Any, qos: int = 1, retain: bool = True
    ) -> None:
        """A birth message, sent first on every (re)connect."""
        self._on_connect.append(_Outgoing(topic, encode(payload), qos, retain))

    def publish(self, topic: str, payload: Any, qos: int = 1, retain: bool = False) -> None:
        """Queue a message; never blocks. A retained topic keeps only its latest value."""
        message = _Outgoing(topic, encode(payload), qos, retain)
        if retain:
            self._retained[topic] = message
            self._retained.move_to_end(topic)
        else:
            if len(self._queue) == self._queue.maxlen:
                self._summary.note(
                    "MQTT outbox full, oldest message dropped", f"on {self._queue[0].topic}"
                )
            self._queue.append(message)
        self._wakeup.set()

    def reconnect_now(self) -> None:
        """Skip the rest of the backoff: we have reason to believe the broker is back."""
        self.breaker.trial_now()
        self._reconnect.set()

    @property
    def backlog(self) -> int:
        """Incoming messages waiting for their handler (at most ``settings.ingress.limit``)."""
        return len(self._client.messages) if self._client is not None else 0

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._retained)

    async def flush(self, timeout_s: float) -> bool:
        """Give queued messages a chance to leave (at shutdown); True if they all did."""
        deadline = self._clock.monotonic() + timeout_s
        while self.queued and self.connected and self._clock.monotonic() < deadline:
            await self._clock.sleep(0.01)
        return self.queued == 0

    async def run(self) -> None:
        settings = self._settings
        was_connected = True  # so the first failure is reported once, as a warning
        while True:
            self._reconnect.clear()
            try:
                async with aiomqtt.Client(
                    settings.host,
                    settings.port,
                    identifier=settings.client_id,
                    username=settings.username,
                    password=settings.password,
                    keepalive=settings.keepalive_s,
                    will=aiomqtt.Will(
                        settings.will_topic, settings.will_payload, qos=1, retain=True
                    ),
                    timeout=5,
                    queue_type=ingress_queue_type(self._route, settings.ingress, self._dropped),
                ) as client:
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if self.connected or was_connected:
                    logger.warning(
                        "MQTT link to %s:%d lost: %s",
                        settings.host,
                        settings.port,
                        exc,
                        extra={"error_id": "ERR-INFRA-MQTT-001"},
                    )
                was_connected = False
                self._set_connected(False, str(exc))
                before = self.breaker.state
                self.breaker.record_failure()
                if self.breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
                    logger.warning(
                        "MQTT link breaker open: no connect attempt for %.0f s"
                        " (a recovered broker re-arms it at once)",
                        self.breaker.wait_s(),
                    )
            raise_if_cancelling()
            delay = max(self._backoff.next(), self.breaker.wait_s())
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._reconnect.wait(), delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
        raise_if_cancelling()  # the connect may have swallowed a cancel
        for message in self._on_connect:
            await client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )
        for topic_filter, subscription in self._subscriptions.items():
            await client.subscribe(topic_filter, qos=subscription.qos)
        self._backoff.reset()
        self.breaker.record_success()
        logger.info("MQTT link to %s:%d up", self._settings.host, self._settings.port)
        self._set_connected(True, "connected")
        writer = asyncio.create_task(self._drain(client), name="mqtt-writer")
        messages = aiter(client.messages)
        self._client = client
        try:
            while True:
                try:
                    incoming = await self._clock.wait_for(anext(messages), SUMMARY_INTERVAL_S)
                except TimeoutError:
                    self._summary.flush()  # quiet for a while: report the tail of a flood
                    continue
                self._dispatch(str(incoming.topic), incoming.payload, incoming.retain)
        finally:
            self._client = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await writer

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            # aiomqtt's publish can swallow a cancel that lands while it waits for the
            # PUBACK: the writer then drained on and waited here for ever, and the link's
            # run() never ended (a stop or a reconnect hung).
            raise_if_cancelling()
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._retained or self._queue:
                if self._retained:
                    _, message = self._retained.popitem(last=False)
                else:
                    message = self._queue.popleft()
                try:
                    await client.publish(
                        message.topic,
                        message.payload,
                        qos=message.qos,
                        retain=message.retain,
                        timeout=5,
                    )
                except aiomqtt.MqttError:
                    self._requeue(message)
                    raise
                raise_if_cancelling()

    def _requeue(self, message: _Outgoing) -> None:
        if message.retain:
            self._retained.setdefault(message.topic, message)
        else:
            self._queue.appendleft(message)

    def _route(self, topic: aiomqtt.Topic) -> str | None:
        """The ingress lane of an incoming topic: the first matching subscription's."""
        if not self._arrivals.take():
            self.flooded_at = self._clock.monotonic()
        for topic_filter, subscription in self._subscriptions.items():
            if topic_matches(subscription.levels, topic.value):
                return topic_filter if subscription.lane is None else subscription.lane(topic.value)
        return None

    def _dropped(self, reason: str, lane: str) -> None:
        self.dropped[reason] += 1
        if reason != UNROUTED:
            self.flooded_at = self._clock.monotonic()
        for listener in self._drop_listeners:
            listener(reason, lane)
        if reason == UNROUTED:  # a topic nobody here reads (a bridge we were not told of)
            self._summary.note("MQTT messages nobody reads dropped", "", level=logging.DEBUG)
        else:
            self._summary.note(
                f"MQTT ingress over its bound, messages dropped ({reason}, lane {lane})",
                f"{self.dropped[reason]} so far",
            )

    def _dispatch(self, topic: str, payload: Any, retain: bool = False) -> None:
        data = (
            payload
            if isinstance(payload, bytes)
            else encode(payload if payload is not None else b"")
        )
        incoming = Incoming(topic, data, retain)
        for topic_filter, subscription in self._subscriptions.items():
            if topic_matches(subscription.levels, topic):
                try:
                    subscription.handler(incoming)
                except Exception:  # a handler's bug must not cut the link
                    logger.exception("handler for %s failed on %s", topic_filter, topic)

    def _set_connected(self, connected: bool, detail: str) -> None:
        changed = connected != self.connected
        self.connected = connected
        if connected:
            self._wakeup.set()
        if changed:
            for listener in self._listeners:
                listener(connected, detail)
