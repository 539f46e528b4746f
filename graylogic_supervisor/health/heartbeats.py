"""Protocol bridges' heartbeats on ``{root}/health/{bridge}``, and the prober that reads them.

A bridge is healthy while its heartbeats arrive. The prober catches the
silence, which sends no message of its own; the MQTT handler makes a bridge
that comes back healthy without waiting for the next probe.

Anyone on the broker can publish on a bridge's topic (unless the broker's ACL
says otherwise: README, "Securing the heartbeats"), so what arrives there is
evidence to weigh, never a command:

- **Malformed** payloads are refused with a short reason and never count.
- **Rate**: beyond ``max_heartbeats_per_s`` (a token bucket per bridge, checked
  before anything is parsed) a heartbeat is dropped: a flood on one bridge's
  topic costs a bounded amount of work, and a bridge needs one per window.
- **Retained** heartbeats are dropped: the broker kept them from some time
  before we subscribed; they say nothing about now.
- **Stale or future** ones are dropped: a ``ts`` older than the bridge's window
  is a replay or a backlog, one more than a window ahead a wrong clock or a
  forgery. A heartbeat without ``ts`` is judged by its arrival alone.
- **A bridge with a service** is only called healthy by a full probe (the
  health monitor checks the service first): a heartbeat that would bring it
  back asks for an immediate re-check rather than reporting it healthy, so a
  faked ``online`` while its process or unit is down changes nothing.
- **``offline``** is not believed on its own word. It is one anonymous message
  and would otherwise let anyone fail any bridge, start its recovery and, five
  times over, put the site in safe mode. It is believed only as the bridges'
  silence confirms it: the bridge is unhealthy once no heartbeat has followed
  for its window, which is when its last heartbeat ages out anyway, so an honest
  bridge that says goodbye and stops is found no later than one that crashes.
  What it does at once is ask for a re-check (a bridge with a service that
  really stopped is unhealthy at once, on the service's evidence).

- **A flood** on the broker (``MqttLink.flooded_at``) may have cost a bridge
  its heartbeats: the broker drops messages for a client that reads too
  slowly, whoever they are from. Silence is evidence only once a whole window
  has passed since the last sign of a flood; until then the bridge keeps the
  verdict it had (a healthy bridge is not restarted because someone flooded the
  broker; a dead one stays unhealthy), and the detail says why.

So a bridge's health cannot be flipped faster than its window by what is sent
on its topic: it becomes healthy on a heartbeat (re-checked where it has a
service) and unhealthy only after a window of silence or on its service's state.
What is dropped is counted by bridge and reason, and logged at most once a
minute per bridge and reason (``logsummary.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import BridgeComponent, ComponentConfig
from graylogic_supervisor.logsummary import LogSummary
from graylogic_supervisor.mqtt.link import Incoming
from graylogic_supervisor.tokenbucket import TokenBucket

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
WARNING_INTERVAL_S = 60.0
RECHECK_MIN_INTERVAL_S = 1.0  # heartbeats ask for at most one extra probe a second per bridge
SUPERVISOR_NAME = "supervisor"  # {root}/health/supervisor is our own status, not a bridge

Report = Callable[[str, bool, str], None]  # (component, healthy, detail): HealthMonitor.report
Recheck = Callable[[str], Awaitable[object]]  # probe the component now: HealthMonitor.probe
FloodedAt = Callable[[], float | None]  # clock.monotonic() of the last flood: MqttLink
DropListener = Callable[[str, str], None]  # (bridge, reason)

MALFORMED = "malformed"
RATE = "rate"
RETAINED = "retained"
STALE = "stale"
FUTURE = "future"

_JSON_TYPE_NAMES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class Heartbeat(BaseModel):
    """One heartbeat. Unknown fields are allowed, unlike our own models: bridges
    are separate programs that add fields of their own (bus state, version), and
    a bridge newer than the supervisor must not be taken for dead."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["online", "healthy", "degraded", "offline"]
    ts: datetime | None = None  # ISO 8601, or epoch seconds (pydantic: > 2e10 is read as ms)
    detail: str | None = None


def parse_heartbeat(payload: bytes) -> Heartbeat:
    """Validate one payload; raises ``ValueError`` with a reason short enough for a log line."""
    if not payload:
        raise ValueError("empty payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # an integer longer than Python's 4300-digit limit
        raise ValueError(f"not JSON: {exc}") from None
    except RecursionError:  # 64 KiB of "[" is deeper than the json module can go
        raise ValueError("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {_JSON_TYPE_NAMES.get(type(data), 'a value')}")
    try:
        return Heartbeat.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payload"
        raise ValueError(f"{field}: {first['msg']}") from None


@dataclass
class _BridgeState:
    bucket: TokenBucket
    last_heartbeat: float | None = None  # clock.monotonic() of the last trusted heartbeat
    replaced_at: float | None = None  # its service was (re)started or stopped: heartbeats reset
    status: str = ""
    offline_said_at: float | None = None  # an `offline` not refuted by a heartbeat since
    rechecked_at: float | None = None
    recheck_wanted: bool = False
    verdict: bool = True  # the prober's last answer, kept while a flood hides the heartbeats
    crowded_at: float | None = None  # the last heartbeat dropped for its bridge's rate


class HeartbeatTracker:
    """The heartbeats of the configured bridges: an MQTT handler, a ``bridge`` prober, and
    (``run``) the loop that re-checks bridges whose heartbeats ask for it."""

    def __init__(
        self,
        bridges: Mapping[str, BridgeComponent],
        topic_root: str,
        clock: Clock,
        report: Report,
        *,
        recheck: Recheck,
        flooded_at: FloodedAt = lambda: None,
    ) -> None:
        """``bridges`` by component name, which is also the last level of its heartbeat topic."""
        if SUPERVISOR_NAME in bridges:
            raise ValueError(
                f"a bridge cannot be named {SUPERVISOR_NAME!r}: that topic is the supervisor's own"
            )
        self._bridges = dict(bridges)
        self._prefix = f"{topic_root.rstrip('/')}/health/"
        self._clock = clock
        self._report = report
        self._recheck = recheck
        self._flooded_at = flooded_at
        self._started = clock.monotonic()
        self._states = {
            name: _BridgeState(_bucket(clock, bridge)) for name, bridge in self._bridges.items()
        }
        self._summary = LogSummary(logger, clock, WARNING_INTERVAL_S)
        self._wake = asyncio.Event()
        self._drop_listeners: list[DropListener] = []
        self.dropped: Counter[tuple[str, str]] = Counter()  # (bridge, reason), since start-up

    @property
    def topic_filter(self) -> str:
        return f"{self._prefix}+"

    def add_drop_listener(self, listener: DropListener) -> None:
        self._drop_listeners.append(listener)

    def lane(self, topic: str) -> str | None:
        """The bridge a topic is the heartbeat topic of (its ingress lane), else None."""
        if not topic.startswith(self._prefix):
            return None
        name = topic[len(self._prefix) :]
        return name if name in self._bridges else None  # never SUPERVISOR_NAME: refused above

    def handle(self, message: Incoming) -> None:
        """The MQTT handler for ``topic_filter``; never raises on what a bridge sends."""
        name = self.lane(message.topic)
        if name is None:
            return
        bridge, state = self._bridges[name], self._states[name]
        if not state.bucket.take():
            # Anyone may publish on the topic: what is dropped may be the bridge's own.
            state.crowded_at = self._clock.monotonic()
            self._drop(name, RATE, f"more than {bridge.max_heartbeats_per_s:g} a second")
            return
        if message.retain:
            self._drop(name, RETAINED, "kept by the broker from before we subscribed")
            return
        try:
            heartbeat = parse_heartbeat(message.payload)
        except ValueError as exc:
            self._drop(name, MALFORMED, str(exc))
            return
        if heartbeat.ts is not None and not self._timely(name, bridge, heartbeat.ts):
            return
        now = self._clock.monotonic()
        if heartbeat.status == "offline":
            state.offline_said_at = now
            self._summary.note(
                f"bridge {name} says it is offline",
                f"believed once no heartbeat follows for {bridge.heartbeat_window_s:g} s",
                level=logging.INFO,
            )
            if bridge.service is not None:
                self._want_recheck(state)  # a service that really stopped: unhealthy at once
            return
        was_alive = self._alive(state, bridge, now)
        state.last_heartbeat = now
        state.status = heartbeat.status
        state.offline_said_at = None
        if bridge.service is None:
            self._report(name, True, f"heartbeat: {heartbeat.status}")
        elif not was_alive:
            self._want_recheck(state)  # healthy only if its service runs too

    def service_replaced(self, service: str) -> None:
        """The service's process is being started, restarted or stopped: heartbeats the old
        one sent prove nothing about the new one, so its bridges wait for a fresh one."""
        for name, bridge in self._bridges.items():
            state = self._states[name]
            # at start-up, before any heartbeat, the first window's grace still applies
            seen = state.last_heartbeat is not None or state.replaced_at is not None
            if bridge.service == service and seen:
                state.last_heartbeat = None
                state.replaced_at = self._clock.monotonic()
                state.offline_said_at = None

    async def prober(self, component: str, config: ComponentConfig) -> tuple[bool, str]:
        """Healthy while the last trusted heartbeat is younger than the bridge's window.

        A bridge never heard from gets one full window after start-up, the time
        it needs to send its first heartbeat, before it is called unhealthy. After
        its service was restarted, only a heartbeat of the new process counts: a
        recovery is not verified by the dead process's last words.
        """
        if not isinstance(config, BridgeComponent) or component not in self._states:
            raise ValueError(f"{component!r} is not a bridge given to the heartbeat tracker")
        state = self._states[component]
        now = self._clock.monotonic()
        healthy, detail = self._judge(state, config, now)
        flooded_at = self._flooded_at()
        crowded_at = state.crowded_at
        if not healthy and flooded_at is not None and now - flooded_at < config.heartbeat_window_s:
            healthy = state.verdict
            detail += (
                f"; the MQTT ingress was flooded {_seconds(now - flooded_at)} s ago, so heartbeats"
                " may have been lost: silence is not evidence yet"
            )
        elif (
            not healthy and crowded_at is not None and now - crowded_at < config.heartbeat_window_s
        ):
            healthy = state.verdict
            detail += (
                f"; its topic ran over its rate {_seconds(now - crowded_at)} s ago, so its own"
                " heartbeats may have been among those dropped: silence is not evidence yet"
            )
        state.verdict = healthy
        return healthy, detail

    def _judge(self, state: _BridgeState, config: BridgeComponent, now: float) -> tuple[bool, str]:
        window = config.heartbeat_window_s
        said = state.offline_said_at
        if state.last_heartbeat is None:
            if state.replaced_at is not None:
                since = _seconds(now - state.replaced_at)
                return False, f"no heartbeat since its service was restarted {since} s ago"
            if now - self._started < window:
                return True, "waiting for first heartbeat"
            if said is not None:
                return False, f"reported offline {_seconds(now - said)} s ago, no heartbeat since"
            return False, "no heartbeat since start-up"
        age = now - state.last_heartbeat
        if age < window:
            unbelieved = f"; its offline report {_seconds(now - said)} s ago waits" if said else ""
            return True, f"last heartbeat {_seconds(age)} s ago ({state.status}){unbelieved}"
        if said is not None:
            return False, (
                f"reported offline {_seconds(now - said)} s ago and no heartbeat for"
                f" {_seconds(age)} s (window {window:g} s)"
            )
        return False, f"no heartbeat for {_seconds(age)} s (window {window:g} s)"

    async def run(self) -> None:
        """Re-check the bridges whose heartbeats asked for it (at most once a second each),
        and write the log summaries of what was dropped once a flood is over."""
        while True:
            now = self._clock.monotonic()
            due = [
                name
                for name, state in self._states.items()
                if state.recheck_wanted and self._recheck_due(state) <= now
            ]
            for name in due:
                state = self._states[name]
                state.recheck_wanted = False
                state.rechecked_at = self._clock.monotonic()
                try:
                    await self._recheck(name)
                except Exception:  # a probe's bug must not end the re-checks
                    logger.exception("re-check of bridge %s failed", name)
            self._summary.flush()
            waiting = [self._recheck_due(s) for s in self._states.values() if s.recheck_wanted]
            pause = min([WARNING_INTERVAL_S, *(d - self._clock.monotonic() for d in waiting)])
            self._wake.clear()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._wake.wait(), pause)

    def _alive(self, state: _BridgeState, bridge: BridgeComponent, now: float) -> bool:
        return state.last_heartbeat is not None and now - state.last_heartbeat < (
            bridge.heartbeat_window_s
        )

    def _timely(self, name: str, bridge: BridgeComponent, ts: datetime) -> bool:
        sent = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)  # naive: taken as UTC
        age = (self._clock.now() - sent).total_seconds()
        window = bridge.heartbeat_window_s
        if age >= window:
            self._drop(name, STALE, f"ts {_seconds(age)} s old, its window is {window:g} s")
            return False
        if -age > window:
            self._drop(name, FUTURE, f"ts {_seconds(-age)} s ahead of our clock")
            return False
        return True

    def _want_recheck(self, state: _BridgeState) -> None:
        state.recheck_wanted = True
        self._wake.set()

    def _recheck_due(self, state: _BridgeState) -> float:
        if state.rechecked_at is None:
            return -math.inf  # never re-checked: due now, whenever now is
        return state.rechecked_at + RECHECK_MIN_INTERVAL_S

    def _drop(self, name: str, reason: str, detail: str) -> None:
        self.dropped[name, reason] += 1
        for listener in self._drop_listeners:
            listener(name, reason)
        verb = "refused" if reason == MALFORMED else f"dropped ({reason})"
        self._summary.note(
            f"heartbeat from bridge {name} {verb}",
            detail,
            extra={"error_id": self._bridges[name].error_id},
        )


def _bucket(clock: Clock, bridge: BridgeComponent) -> TokenBucket:
    rate = bridge.max_heartbeats_per_s
    return TokenBucket(clock, rate, max(3.0, 2 * rate))


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
