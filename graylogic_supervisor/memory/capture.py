"""Everything the supervisor knew when a failure opened an incident."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.memory.events import EventRing
from graylogic_supervisor.memory.model import Environment, FailureContext, Resources


def resource_state(state_dir: Path) -> Resources:
    """Fast syscalls (a few µs): fine on the loop."""
    cpus = os.cpu_count() or 1
    return Resources(
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=psutil.disk_usage(str(state_dir)).percent,
        cpu_percent=psutil.cpu_percent(interval=None),
        load_per_cpu=round(os.getloadavg()[0] / cpus, 3),
    )


class ContextCapture:
    def __init__(
        self, monitor: HealthMonitor, events: EventRing, state_dir: Path, clock: Clock
    ) -> None:
        self._monitor = monitor
        self._events = events
        self._state_dir = state_dir
        self._clock = clock

    def capture(
        self,
        failure_id: str,
        incident_id: str | None,
        component: str,
        error_id: str,
        severity: str,
        message: str,
    ) -> FailureContext:
        now = self._clock.now()
        local = now.astimezone()  # the site's time of day, not UTC's
        return FailureContext(
            failure_id=failure_id,
            incident_id=incident_id,
            detected_at=now,
            error_id=error_id,
            component=component,
            severity=severity,
            message=message,
            other_health={
                name: state.health.value
                for name, state in self._monitor.snapshot().items()
                if name != component
            },
            recent_events=self._events.snapshot(),
            resources=resource_state(self._state_dir),
            environment=Environment(
                hour=local.hour,
                weekday=local.weekday(),
                uptime_s=max(time.time() - psutil.boot_time(), 0.0),
            ),
        )
