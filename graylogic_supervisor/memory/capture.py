"""Everything the supervisor knew when a failure opened an incident.

Capturing never fails: the context is taken when things are going wrong, often
for us too (no file descriptor left to read ``/proc``, a process gone). A
figure that cannot be read is 0 and the reason is logged; the rest of the
context is still captured, and recovery never waits on it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.memory import Environment, FailureContext, Resources
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.memory.events import EventRing

logger = logging.getLogger(__name__)

# What reading a figure may raise: an OS error (EMFILE reading /proc, a removed
# path) or psutil's own (AccessDenied, NoSuchProcess).
READ_ERRORS = (OSError, psutil.Error)


def _figure(name: str, read: Callable[[], float], problems: list[str] | None) -> float:
    try:
        return float(read())
    except READ_ERRORS as exc:
        logger.debug("cannot read %s: %s", name, exc)
        if problems is not None:
            problems.append(f"{name}: {exc}")
        return 0.0


def resource_state(state_dir: Path, problems: list[str] | None = None) -> Resources:
    """Fast syscalls (a few µs): fine on the loop.

    Never raises: a figure that cannot be read is 0, and its reason is added to
    ``problems`` when given (the runner reads these for every step's conditions,
    so only the incident's capture says it out loud).
    """
    cpus = os.cpu_count() or 1
    return Resources(
        memory_percent=_figure("memory use", lambda: psutil.virtual_memory().percent, problems),
        disk_percent=_figure(
            "disk use", lambda: psutil.disk_usage(str(state_dir)).percent, problems
        ),
        cpu_percent=_figure("CPU use", lambda: psutil.cpu_percent(interval=None), problems),
        load_per_cpu=_figure("load", lambda: round(os.getloadavg()[0] / cpus, 3), problems),
    )


def uptime_s(problems: list[str] | None = None) -> float:
    """Seconds since boot; 0 when the boot time cannot be read."""
    booted = _figure("boot time", psutil.boot_time, problems)
    return max(time.time() - booted, 0.0) if booted else 0.0


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
        *,
        severity: str,
        message: str,
    ) -> FailureContext:
        now = self._clock.now()
        local = now.astimezone()  # the site's time of day, not UTC's
        problems: list[str] = []
        resources = resource_state(self._state_dir, problems)
        uptime = uptime_s(problems)
        if problems:
            logger.warning(
                "failure %s captured without some figures (read as 0): %s",
                failure_id,
                "; ".join(problems),
            )
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
            resources=resources,
            environment=Environment(hour=local.hour, weekday=local.weekday(), uptime_s=uptime),
        )
