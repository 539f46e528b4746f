"""Protocol bridges' heartbeats on ``{root}/health/{bridge}``, and the prober that reads them.

A bridge is healthy while its heartbeats arrive. The MQTT handler records each
valid one and reports it at once, so a bridge that comes back is healthy
without waiting for the next probe; the prober catches the silence, which
sends no message of its own.

Payloads come from other programs, so they are validated here and nowhere
else: anything malformed is refused with a short reason, counted, and logged at
most once a minute per bridge (a bridge with a bug may publish every second),
and it never counts as a sign of life.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import BridgeComponent, ComponentConfig

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
WARNING_INTERVAL_S = 60.0
SUPERVISOR_NAME = "supervisor"  # {root}/health/supervisor is our own status, not a bridge

Report = Callable[[str, bool, str], None]  # (component, healthy, detail): HealthMonitor.report

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
    last_heartbeat: float | None = None  # clock.monotonic() of the last valid heartbeat
    replaced_at: float | None = None  # its service was (re)started or stopped: heartbeats reset
    status: str = ""
    offline: bool = False  # said so itself, until its next heartbeat
    warned_at: float | None = None
    unwarned: int = 0  # refusals since the last warning


class HeartbeatTracker:
    """The heartbeats of the configured bridges: an MQTT handler and a ``bridge`` prober."""

    def __init__(
        self,
        bridges: Mapping[str, BridgeComponent],
        topic_root: str,
        clock: Clock,
        report: Report,
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
        self._started = clock.monotonic()
        self._states = {name: _BridgeState() for name in self._bridges}
        self.refused: Counter[str] = Counter()  # refused payloads by bridge, since start-up

    @property
    def topic_filter(self) -> str:
        return f"{self._prefix}+"

    def handle(self, topic: str, payload: bytes) -> None:
        """The MQTT handler for ``topic_filter``; never raises on what a bridge sends."""
        name = self._bridge_of(topic)
        if name is None:
            return
        try:
            heartbeat = parse_heartbeat(payload)
        except ValueError as exc:
            self._refuse(name, str(exc))
            return
        state = self._states[name]
        if heartbeat.status == "offline":
            state.offline = True
            self._report(name, False, "bridge reports offline")
            return
        state.last_heartbeat = self._clock.monotonic()
        state.status = heartbeat.status
        state.offline = False
        self._report(name, True, f"heartbeat: {heartbeat.status}")

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
                state.offline = False

    async def prober(self, component: str, config: ComponentConfig) -> tuple[bool, str]:
        """Healthy while the last heartbeat is younger than the bridge's window.

        A bridge never heard from gets one full window after start-up, the time
        it needs to send its first heartbeat, before it is called unhealthy. After
        its service was restarted, only a heartbeat of the new process counts: a
        recovery is not verified by the dead process's last words.
        """
        if not isinstance(config, BridgeComponent) or component not in self._states:
            raise ValueError(f"{component!r} is not a bridge given to the heartbeat tracker")
        state = self._states[component]
        window = config.heartbeat_window_s
        now = self._clock.monotonic()
        if state.offline:
            return False, "bridge reports offline"
        if state.last_heartbeat is None:
            if state.replaced_at is not None:
                since = _seconds(now - state.replaced_at)
                return False, f"no heartbeat since its service was restarted {since} s ago"
            if now - self._started < window:
                return True, "waiting for first heartbeat"
            return False, "no heartbeat since start-up"
        age = now - state.last_heartbeat
        if age < window:
            return True, f"last heartbeat {_seconds(age)} s ago ({state.status})"
        return False, f"no heartbeat for {_seconds(age)} s (window {window:g} s)"

    def _bridge_of(self, topic: str) -> str | None:
        name = topic.removeprefix(self._prefix)
        if name == topic or not name or "/" in name:
            logger.debug("ignored %s: not a heartbeat topic", topic)
            return None
        if name == SUPERVISOR_NAME:
            return None
        if name not in self._bridges:
            logger.debug("ignored heartbeat on %s: %s is not a configured bridge", topic, name)
            return None
        return name

    def _refuse(self, name: str, reason: str) -> None:
        self.refused[name] += 1
        state = self._states[name]
        now = self._clock.monotonic()
        if state.warned_at is not None and now - state.warned_at < WARNING_INTERVAL_S:
            state.unwarned += 1
            logger.debug("heartbeat from bridge %s refused: %s", name, reason)
            return
        since = f" ({state.unwarned} more refused since the last warning)" if state.unwarned else ""
        logger.warning(
            "heartbeat from bridge %s refused: %s%s",
            name,
            reason,
            since,
            extra={"error_id": self._bridges[name].error_id},
        )
        state.warned_at = now
        state.unwarned = 0


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
