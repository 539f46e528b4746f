"""The supervisor's Prometheus metrics: a plain sink that callers tell what happened.

``Metrics`` owns its own ``CollectorRegistry``: the composition root builds one
and hands it to whoever records, so two daemons (or two tests) in one process
never share counters, and nothing registers itself on import.

The exposition is the plain text format (``generate_latest``), not
OpenMetrics: promtool rejects prometheus-client's OpenMetrics ``info`` type,
which is also why ``build_info`` is a gauge set to 1 with the version as a
label (the usual Prometheus idiom).

``component_healthy`` is 1 for healthy, 0 for unhealthy and -1 for unknown
(not checked yet). Unknown is a value of its own rather than a missing series
so a component that was never checked still shows up; ``== 0`` selects the
failing components, ``< 1`` those not known to be healthy.

``termination_rate`` is NaN while too few executions finished in the window
for a rate to mean anything (the recovery policy's reading is ``None`` then).

``asyncio_tasks`` is counted when scraped, on the loop that serves the scrape
(the daemon's one loop): a task leak shows as growth over a soak, which RSS
alone would show late or not at all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from graylogic_supervisor import fdbudget

PREFIX = "graylogic_supervisor_"

COMPONENT_HEALTH_VALUES = {"healthy": 1.0, "unhealthy": 0.0, "unknown": -1.0}


class Metrics:
    """Every metric the supervisor exports, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST
    """The content type of :meth:`exposition`, for the ``/metrics`` response."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._executions = Counter(
            f"{PREFIX}executions_total",
            "Recovery executions finished, by playbook and final status.",
            ["playbook", "status"],
            registry=registry,
        )
        self._step_outcomes = Counter(
            f"{PREFIX}step_outcomes_total",
            "Playbook steps finished, by action and outcome.",
            ["action", "outcome"],
            registry=registry,
        )
        self._recovery_attempts = Counter(
            f"{PREFIX}recovery_attempts_total",
            "Recovery attempts started, by component.",
            ["component"],
            registry=registry,
        )
        self._viability = Counter(
            f"{PREFIX}viability_evaluations_total",
            "Recovery policy evaluations, by outcome (allowed or denied) and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self._termination_rate = Gauge(
            f"{PREFIX}termination_rate",
            "Share (0..1) of executions in the last hour that ended escalated or failed;"
            " NaN while too few finished.",
            registry=registry,
        )
        self._termination_rate.set(math.nan)
        self._component_healthy = Gauge(
            f"{PREFIX}component_healthy",
            "Component health: 1 healthy, 0 unhealthy, -1 unknown (not checked yet).",
            ["component"],
            registry=registry,
        )
        self._broker_restarts = Counter(
            f"{PREFIX}broker_restarts_total",
            "Restarts of the MQTT broker by the supervisor.",
            registry=registry,
        )
        self._loop_restarts = Counter(
            f"{PREFIX}loop_restarts_total",
            "Restarts of the daemon's own loops after a crash, by loop.",
            ["loop"],
            registry=registry,
        )
        self._could_not_tell = Counter(
            f"{PREFIX}probe_could_not_tell_total",
            "Health checks that could not tell (the supervisor's own resources failed:"
            " no file descriptor, a busy loop), by component and cause; none opens an incident.",
            ["component", "cause"],
            registry=registry,
        )
        self._safe_mode = Gauge(
            f"{PREFIX}safe_mode",
            "1 while the supervisor is in safe mode (no automatic recovery), else 0.",
            registry=registry,
        )
        self._mqtt_dropped = Counter(
            f"{PREFIX}mqtt_messages_dropped_total",
            "Incoming MQTT messages dropped before their handler, by reason (unrouted,"
            " lane_full, queue_full) and ingress lane.",
            ["reason", "lane"],
            registry=registry,
        )
        self._heartbeats_dropped = Counter(
            f"{PREFIX}heartbeats_dropped_total",
            "Bridge heartbeats not trusted, by bridge and reason (malformed, rate, retained,"
            " stale, future).",
            ["bridge", "reason"],
            registry=registry,
        )
        asyncio_tasks = Gauge(
            f"{PREFIX}asyncio_tasks",
            "Unfinished asyncio tasks on the event loop, counted at scrape time;"
            " NaN when scraped outside a running loop.",
            registry=registry,
        )
        asyncio_tasks.set_function(running_tasks)
        self._admin_closed = Counter(
            f"{PREFIX}admin_connections_closed_total",
            "Admin connections the server closed, by reason: cap (over max_connections),"
            " request_timeout, write_timeout, fd_reserve (the process is within the reserve of"
            " file descriptors kept for supervision), out_of_fds (accept failed).",
            ["reason"],
            registry=registry,
        )
        self._admin_paused = Gauge(
            f"{PREFIX}admin_accept_paused",
            "1 while the admin server accepts nothing: the process's file descriptors reached"
            " the reserve kept for supervision.",
            registry=registry,
        )
        open_fds = Gauge(
            f"{PREFIX}open_fds",
            "File descriptors the supervisor holds, counted at scrape time.",
            registry=registry,
        )
        open_fds.set_function(fdbudget.open_fds)
        self._login_refused = Counter(
            f"{PREFIX}login_refused_total",
            "Logins refused before any password was checked, by reason: limit (this user"
            " and address), global_limit (all of them), busy (the password pool is full).",
            ["reason"],
            registry=registry,
        )
        self._recommendations_pending = Gauge(
            f"{PREFIX}recommendations_pending",
            "Learning recommendations waiting for a decision, by priority (high, medium, low).",
            ["priority"],
            registry=registry,
        )
        build_info = Gauge(
            f"{PREFIX}build_info",
            "Always 1; the running version is in the label.",
            ["version"],
            registry=registry,
        )
        build_info.labels(version=version).set(1)

    def execution_finished(self, playbook_id: str, status: str) -> None:
        self._executions.labels(playbook=playbook_id, status=status).inc()

    def step_finished(self, action: str, outcome: str) -> None:
        self._step_outcomes.labels(action=action, outcome=outcome).inc()

    def recovery_attempt(self, component: str) -> None:
        self._recovery_attempts.labels(component=component).inc()

    def viability(self, outcome: str, reason: str) -> None:
        self._viability.labels(outcome=outcome, reason=reason).inc()

    def set_termination_rate(self, rate: float | None) -> None:
        """``None`` (too few executions to tell) is exported as NaN, not as 0: 0 would read as
        "nothing went wrong" on a site that has not run enough recoveries to say."""
        if rate is None:
            self._termination_rate.set(math.nan)
            return
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"termination rate {rate!r} is not within 0..1")
        self._termination_rate.set(rate)

    def set_component_health(self, component: str, health_value: str) -> None:
        """``health_value`` is a :class:`~graylogic_supervisor.health.monitor.Health` value."""
        try:
            value = COMPONENT_HEALTH_VALUES[health_value]
        except KeyError:
            raise ValueError(
                f"component health {health_value!r} is not one of {sorted(COMPONENT_HEALTH_VALUES)}"
            ) from None
        self._component_healthy.labels(component=component).set(value)

    def broker_restarted(self) -> None:
        self._broker_restarts.inc()

    def loop_restarted(self, loop: str) -> None:
        self._loop_restarts.labels(loop=loop).inc()

    def probe_could_not_tell(self, component: str, cause: str) -> None:
        self._could_not_tell.labels(component=component, cause=cause).inc()

    def set_safe_mode(self, on: bool) -> None:
        self._safe_mode.set(1 if on else 0)

    def watch_held_writes(self, count: Callable[[], int]) -> None:
        """The store's writes held in memory (``store/hold.py``), read at scrape time."""
        Gauge(
            f"{PREFIX}store_held_writes",
            "Essential components' records held in memory because the store could not"
            " write them (disk full past the reserve, or the database locked).",
            registry=self.registry,
        ).set_function(lambda: float(count()))

    def admin_connection_closed(self, reason: str) -> None:
        self._admin_closed.labels(reason=reason).inc()

    def set_admin_accept_paused(self, paused: bool) -> None:
        self._admin_paused.set(1 if paused else 0)

    def login_refused(self, reason: str) -> None:
        self._login_refused.labels(reason=reason).inc()

    def mqtt_message_dropped(self, reason: str, lane: str) -> None:
        self._mqtt_dropped.labels(reason=reason, lane=lane).inc()

    def heartbeat_dropped(self, bridge: str, reason: str) -> None:
        self._heartbeats_dropped.labels(bridge=bridge, reason=reason).inc()

    def set_pending_recommendations(self, by_priority: Mapping[str, int]) -> None:
        """Every priority the store counts, 0 included, so a decided one drops to 0."""
        for priority, count in by_priority.items():
            self._recommendations_pending.labels(priority=priority).set(count)

    def exposition(self) -> bytes:
        """The registry in the plain text format; serve it with :attr:`content_type`."""
        return generate_latest(self.registry)


def running_tasks() -> float:
    """The running loop's unfinished tasks; NaN when no loop runs in this thread
    (a number there would read as "no tasks", which is not what was measured)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return math.nan
