"""The health of every component, from events and from periodic probes.

Events come first: a child process's exit and a dropped MQTT link are reported
the moment they happen. Periodic probes catch what sends no event (a hung
broker, a systemd unit that died). Every change goes onto a queue the
supervisor consumes, and out on MQTT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from graylogic_supervisor.cancellation import raise_if_cancelling
from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import ComponentConfig
from graylogic_supervisor.errors import SupervisorError
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


# (component name, its config) -> (healthy, detail); raises SupervisorError when it cannot tell.
Prober = Callable[[str, ComponentConfig], Awaitable[tuple[bool, str]]]


async def service_running(component: str, config: ComponentConfig) -> tuple[bool, str]:
    """The prober of a ``service`` component: its service running is all there is to it."""
    return True, f"service {config.service} running"


HealthPublisher = Callable[[ComponentHealth], None]


class HealthMonitor:
    def __init__(
        self,
        components: Mapping[str, ComponentConfig],
        services: ServiceManager,
        probers: Mapping[str, Prober],
        clock: Clock,
        publisher: HealthPublisher | None = None,
    ) -> None:
        """``probers`` by component kind; a component's service is checked before its prober."""
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

    def report(self, component: str, healthy: bool, detail: str) -> None:
        """Record what was observed; a change is queued for the supervisor and published."""
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
        """Listener for the MQTT link: a drop is a failure at once."""
        for name, component in self._components.items():
            if component.kind == "mqtt":
                self.report(
                    name, connected, "MQTT link up" if connected else f"MQTT link lost: {detail}"
                )

    async def probe(self, component: str) -> tuple[bool, str]:
        """Check one component now, report it, and return what was found."""
        config = self._components[component]
        try:
            if config.service is not None:
                status = await self._services.status(config.service)
                if not status.running:
                    healthy, detail = False, f"service {config.service} {status.detail}"
                    self.report(component, healthy, detail)
                    return healthy, detail
            healthy, detail = await self._probers[config.kind](component, config)
        except SupervisorError as exc:
            healthy, detail = False, str(exc)
        self.report(component, healthy, detail)
        return healthy, detail

    async def run(self) -> None:
        """Probe every component on its own interval, for ever."""
        async with asyncio.TaskGroup() as group:
            for name in self._components:
                group.create_task(self._probe_loop(name), name=f"health-probe:{name}")

    async def _probe_loop(self, component: str) -> None:
        while True:
            await self.probe(component)
            raise_if_cancelling()
            await self._clock.sleep(self._components[component].check_interval_s)


def health_payload(state: ComponentHealth) -> dict[str, str]:
    return {
        "component": state.component,
        "status": state.health.value,
        "detail": state.detail,
        "since": isoformat(state.since),
        "error_id": state.error_id if state.health is Health.UNHEALTHY else "",
    }
