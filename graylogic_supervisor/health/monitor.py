"""The health of every component, from events and from periodic probes.

Events come first: a child process's exit is reported the moment it happens.
A dropped MQTT link is not proof of a dead broker (our own side may be the one
failing), so it wakes the broker's probe at once, and the probe confirms or
clears it. Periodic probes catch what sends no event (a hung broker, a systemd
unit that died). Every change goes onto a queue the supervisor consumes, and
out on MQTT.

A probe has three answers: healthy, unhealthy, and *could not tell* (the
supervisor's own resources failed: see ``impairment.py``). Could-not-tell keeps
the component's last known health and puts nothing on the queue: the
supervisor reads anything but UNHEALTHY as "not failed" (an open incident
would close as recovered, the policy would count a health change toward
flapping and start a healthy spell), so reporting UNKNOWN would let whoever
starves the supervisor close incidents and feed the flapping gate. The blind
spell is kept beside the state (``blind``), logged once per streak and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from graylogic_supervisor.cancellation import raise_if_cancelling
from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import ComponentConfig
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.impairment import CouldNotTell, could_not_tell_from
from graylogic_supervisor.services.manager import ServiceManager

logger = logging.getLogger(__name__)


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


SEVERITY_ORDER = {Health.HEALTHY: 0, Health.UNKNOWN: 1, Health.UNHEALTHY: 2}


@dataclass(frozen=True)
class ComponentHealth:
    component: str
    health: Health
    detail: str
    since: datetime
    error_id: str


@dataclass(frozen=True)
class HealthChange:
    previous: Health
    current: ComponentHealth


@dataclass(frozen=True)
class Blindness:
    """A streak of checks that could not tell; the component keeps its last known health."""

    cause: str  # a short word: fds, memory, loop-lag, service-status...
    detail: str  # the latest reason, for a person
    since: datetime
    checks: int


# (component name, its config) -> (healthy, detail). Raises CouldNotTell when our own
# side failed (nothing is concluded), another SupervisorError when the check failed.
Prober = Callable[[str, ComponentConfig], Awaitable[tuple[bool, str]]]


async def service_running(component: str, config: ComponentConfig) -> tuple[bool, str]:
    """The prober of a ``service`` component: its service running is all there is to it."""
    return True, f"service {config.service} running"


HealthPublisher = Callable[[ComponentHealth], None]
BlindListener = Callable[[str, str], None]  # (component, cause): one call per check


class HealthMonitor:
    def __init__(
        self,
        components: Mapping[str, ComponentConfig],
        services: ServiceManager,
        probers: Mapping[str, Prober],
        clock: Clock,
        *,
        publisher: HealthPublisher | None = None,
        on_could_not_tell: BlindListener | None = None,
    ) -> None:
        """``probers`` by component kind; a component's service is checked before its prober.

        ``on_could_not_tell`` hears of every check that could not tell (for metrics).
        """
        missing = {c.kind for c in components.values()} - set(probers)
        if missing:
            raise ValueError(f"no prober for component kinds {sorted(missing)}")
        self._components = dict(components)
        self._services = services
        self._probers = dict(probers)
        self._clock = clock
        self._publisher = publisher
        now = clock.now()
        self._state = {
            name: ComponentHealth(name, Health.UNKNOWN, "not checked yet", now, c.error_id)
            for name, c in self._components.items()
        }
        self.changes: asyncio.Queue[HealthChange] = asyncio.Queue()
        self._on_could_not_tell = on_could_not_tell
        self._blind: dict[str, Blindness] = {}
        self._wake = {name: asyncio.Event() for name in self._components}

    @property
    def components(self) -> Mapping[str, ComponentConfig]:
        return self._components

    def update_thresholds(self, components: Mapping[str, ComponentConfig]) -> None:
        """A reload's new thresholds and intervals; the set of components must not change."""
        if {n: c.kind for n, c in components.items()} != {
            n: c.kind for n, c in self._components.items()
        }:
            raise ValueError("the set of components or their kinds changed: restart to apply")
        self._components = dict(components)

    def state(self, component: str) -> ComponentHealth:
        return self._state[component]

    def snapshot(self) -> dict[str, ComponentHealth]:
        return dict(self._state)

    def overall(self) -> Health:
        """The worst component's health (``healthy`` when nothing is watched)."""
        states = [s.health for s in self._state.values()]
        return max(states, key=SEVERITY_ORDER.__getitem__, default=Health.HEALTHY)

    def components_of_service(self, service: str) -> list[str]:
        return [name for name, c in self._components.items() if c.service == service]

    def blind(self, component: str) -> Blindness | None:
        """The current streak of checks of ``component`` that could not tell, if any."""
        return self._blind.get(component)

    def could_not_tell(self, component: str, cause: str, detail: str) -> None:
        """A check that says nothing about the component: its health stays as it was."""
        streak = self._blind.get(component)
        if streak is None:
            logger.warning(
                "could not tell whether %s is healthy (%s); it stays %s until a check can: %s",
                component,
                cause,
                self._state[component].health.value,
                detail,
            )
            streak = Blindness(cause, detail, self._clock.now(), 0)
        self._blind[component] = Blindness(cause, detail, streak.since, streak.checks + 1)
        if self._on_could_not_tell is not None:
            self._on_could_not_tell(component, cause)

    def report(self, component: str, healthy: bool, detail: str) -> None:
        """Record what was observed; a change is queued for the supervisor and published."""
        streak = self._blind.pop(component, None)
        if streak is not None:
            logger.info(
                "%s can be checked again after %d checks that could not tell (%s)",
                component,
                streak.checks,
                streak.cause,
            )
        previous = self._state[component]
        health = Health.HEALTHY if healthy else Health.UNHEALTHY
        if previous.health == health:
            return
        current = ComponentHealth(component, health, detail, self._clock.now(), previous.error_id)
        self._state[component] = current
        log = logger.info if healthy else logger.warning
        log(
            "%s is %s: %s",
            component,
            health.value,
            detail,
            extra={"error_id": None if healthy else current.error_id},
        )
        self.changes.put_nowait(HealthChange(previous.health, current))
        if self._publisher is not None:
            self._publisher(current)

    def service_exited(self, service: str, detail: str) -> None:
        """Listener for the process backend: a child died without being asked to."""
        for component in self.components_of_service(service):
            self.report(component, False, f"service {service} {detail}")

    def link_changed(self, connected: bool, detail: str) -> None:
        """Listener for the MQTT link: up is healthy; a drop wakes the broker's probe.

        A drop is not a verdict: the probe (and its confirmation) decides, at once.
        A broker whose process died is already reported by ``service_exited``.
        """
        for name, component in self._components.items():
            if component.kind != "mqtt":
                continue
            if connected:
                self.report(name, True, "MQTT link up")
            else:
                logger.info("MQTT link lost (%s): checking %s now", detail, name)
                self._wake[name].set()

    async def probe(self, component: str) -> tuple[bool, str]:
        """Check one component now, report it, and return what was found.

        When the check could not tell, nothing is reported: the answer is the last
        known health (healthy only if it was healthy) with the reason.
        """
        config = self._components[component]
        try:
            if config.service is not None:
                status = await self._services.status(config.service)
                if not status.running:
                    healthy, detail = False, f"service {config.service} {status.detail}"
                    self.report(component, healthy, detail)
                    return healthy, detail
            healthy, detail = await self._probers[config.kind](component, config)
        except CouldNotTell as exc:
            return self._unobserved(component, exc)
        except SupervisorError as exc:
            own = could_not_tell_from(exc, f"check {component}")
            if own is not None:
                return self._unobserved(component, own)
            healthy, detail = False, str(exc)
        except OSError as exc:  # a prober's own failure says nothing about the component
            own = could_not_tell_from(exc, f"check {component}") or CouldNotTell(
                "error", f"the check of {component} failed on our side: {exc}"
            )
            return self._unobserved(component, own)
        self.report(component, healthy, detail)
        return healthy, detail

    def _unobserved(self, component: str, exc: CouldNotTell) -> tuple[bool, str]:
        self.could_not_tell(component, exc.cause, str(exc))
        return self._state[component].health is Health.HEALTHY, f"could not tell: {exc}"

    async def run(self) -> None:
        """Probe every component on its own interval, for ever."""
        async with asyncio.TaskGroup() as group:
            for name in self._components:
                group.create_task(self._probe_loop(name), name=f"health-probe:{name}")

    async def _probe_loop(self, component: str) -> None:
        wake = self._wake[component]
        while True:
            wake.clear()  # a wake during the probe means: probe again right after it
            await self.probe(component)
            raise_if_cancelling()
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(
                    wake.wait(), self._components[component].check_interval_s
                )


def health_payload(state: ComponentHealth) -> dict[str, str]:
    return {
        "component": state.component,
        "status": state.health.value,
        "detail": state.detail,
        "since": isoformat(state.since),
        "error_id": state.error_id if state.health is Health.UNHEALTHY else "",
    }
