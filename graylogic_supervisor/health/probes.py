"""Probers for the controller's own resources: the store, memory, disk and CPU.

Each factory returns a ``Prober`` for one component kind. A prober answers
``(healthy, detail)`` and leaves logging the change to the ``HealthMonitor``,
which logs each transition once with the component's error id; here an
unhealthy reading is only logged at DEBUG. The detail names the figure that
failed and its limit, so the notification says what to look at.

psutil's calls are single syscalls or ``/proc`` reads (microseconds), so they
run inline; the store's check runs on aiosqlite's thread.

A reading that fails on our side (no file descriptor left to open ``/proc``,
psutil's AccessDenied) raises ``CouldNotTell``: the monitor keeps the last
known health instead of calling the component unhealthy, and nothing escapes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeVar

import psutil

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import (
    ComponentConfig,
    CpuComponent,
    DatabaseComponent,
    DiskComponent,
    MemoryComponent,
)
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.health.monitor import Prober
from graylogic_supervisor.impairment import CouldNotTell, could_not_tell_from, fds_exhausted
from graylogic_supervisor.store.database import Database

logger = logging.getLogger(__name__)

MB = 1_048_576

# A quick_check gets this many times its latency budget before we stop waiting:
# long enough to say how slow a slow store is, short enough that a store stuck
# behind a lock is reported unhealthy instead of hanging the probe loop.
QUICK_CHECK_TIMEOUT_FACTOR = 5

# SQLite's complaint can list every damaged cell; a notification needs the first few.
MAX_COMPLAINT_CHARS = 200

C = TypeVar("C")


def _narrow(config: ComponentConfig, kind: type[C]) -> C:
    """The monitor hands each prober the union; a mismatch is a wiring bug, so fail loudly."""
    if not isinstance(config, kind):
        raise TypeError(f"{kind.__name__} prober given a {config.kind} component")
    return config


def _complaint(text: str) -> str:
    one_line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(one_line) > MAX_COMPLAINT_CHARS:
        return one_line[: MAX_COMPLAINT_CHARS - 3] + "..."
    return one_line


def _unreadable(what: str, exc: BaseException) -> CouldNotTell:
    own = could_not_tell_from(exc, f"read {what}")
    return own or CouldNotTell("error", f"could not read {what}: {exc}")


def _free_mb(path: Path) -> float:
    return psutil.disk_usage(str(path)).free / MB


def database_prober(db: Database, clock: Clock) -> Prober:
    """The store: a timed ``PRAGMA quick_check`` on every probe, and free space beside it.

    quick_check runs on every probe rather than every Nth: it reads the whole
    file, but that costs about 1 ms per MB here with the file in the page cache
    (35 ms for a 35 MB store), and this store holds a few rows per recovery,
    so it stays a few MB for years. Timing the same statement the
    ``check_database`` action times against the same ``max_latency_ms`` means
    the probe and a recovery playbook agree on what healthy is, and a
    corrupted page is noticed within one check interval, not N.
    """

    async def probe(component: str, config: ComponentConfig) -> tuple[bool, str]:
        settings = _narrow(config, DatabaseComponent)
        problems: list[str] = []
        figures: list[str] = []

        directory = db.path.parent
        try:
            free_mb = _free_mb(directory)
        except OSError as exc:
            if could_not_tell_from(exc, "") is not None:
                raise _unreadable(f"free space of {directory}", exc) from exc
            problems.append(f"cannot read free space of {directory}: {exc.strerror or exc}")
        else:
            if free_mb < settings.min_free_mb:
                problems.append(f"{free_mb:.0f} MB free < {settings.min_free_mb:g} MB")
            else:
                figures.append(f"{free_mb:.0f} MB free")

        timeout_s = settings.max_latency_ms * QUICK_CHECK_TIMEOUT_FACTOR / 1000
        began = clock.monotonic()
        try:
            verdict = await clock.wait_for(db.integrity_check(quick=True), timeout_s)
        except TimeoutError:
            problems.append(f"quick_check gave no answer in {timeout_s * 1000:g} ms")
        # a damaged page usually surfaces as "database disk image is malformed", an error
        except StoreError as exc:
            if fds_exhausted():  # SQLite could not open its files: our fds, not the store
                raise CouldNotTell(
                    "fds",
                    f"quick_check failed while the supervisor has no free file descriptor: {exc}",
                ) from exc
            problems.append(f"quick_check failed: {_complaint(str(exc))}")
        else:
            latency_ms = (clock.monotonic() - began) * 1000
            if verdict != "ok":
                problems.append(f"quick_check: {_complaint(verdict)}")
            elif latency_ms > settings.max_latency_ms:
                problems.append(f"quick_check {latency_ms:.0f} ms > {settings.max_latency_ms:g} ms")
            else:
                figures.insert(0, f"quick_check ok in {latency_ms:.1f} ms")

        if problems:
            detail = "; ".join(problems)
            logger.debug("%s: %s", component, detail, extra={"error_id": settings.error_id})
            return False, detail
        return True, ", ".join(figures)

    return probe


def memory_prober() -> Prober:
    """Memory in use against ``max_percent``; available MB is what a technician acts on."""

    async def probe(component: str, config: ComponentConfig) -> tuple[bool, str]:
        settings = _narrow(config, MemoryComponent)
        try:
            memory = psutil.virtual_memory()
        except (OSError, psutil.Error) as exc:
            raise _unreadable("memory use", exc) from exc
        available = f"{memory.available / MB:.0f} MB available"
        if memory.percent > settings.max_percent:
            detail = f"memory {memory.percent:.1f}% used > {settings.max_percent:g}%, {available}"
            logger.debug("%s: %s", component, detail, extra={"error_id": settings.error_id})
            return False, detail
        return (
            True,
            f"memory {memory.percent:.1f}% used (max {settings.max_percent:g}%), {available}",
        )

    return probe


def disk_prober(default_path: Path) -> Prober:
    """Use of the filesystem holding ``config.path``, or ``default_path`` (the state directory).

    A path that cannot be read (removed, unmounted) is unhealthy, not an error:
    it is exactly what a disk check is there to notice.
    """

    async def probe(component: str, config: ComponentConfig) -> tuple[bool, str]:
        settings = _narrow(config, DiskComponent)
        path = settings.path or default_path
        try:
            usage = psutil.disk_usage(str(path))
        except OSError as exc:
            if could_not_tell_from(exc, "") is not None:
                raise _unreadable(f"disk usage of {path}", exc) from exc
            detail = f"cannot read disk usage of {path}: {exc.strerror or exc}"
            logger.debug("%s: %s", component, detail, extra={"error_id": settings.error_id})
            return False, detail
        free = f"{usage.free / MB:.0f} MB free"
        if usage.percent > settings.max_percent:
            detail = f"disk {path} {usage.percent:.1f}% used > {settings.max_percent:g}%, {free}"
            logger.debug("%s: %s", component, detail, extra={"error_id": settings.error_id})
            return False, detail
        return (
            True,
            f"disk {path} {usage.percent:.1f}% used (max {settings.max_percent:g}%), {free}",
        )

    return probe


def cpu_prober(clock: Clock, min_sample_s: float = 1.0) -> Prober:
    """CPU use since the previous probe, and the 1-minute load average per CPU.

    ``psutil.cpu_percent(interval=None)`` measures since its previous call, so
    the first probe only primes it and judges the load alone. A probe sooner
    than ``min_sample_s`` after the last sample (a playbook's
    ``wait_for_health`` probes every few ms) reuses that sample: over a few
    jiffies the figure is 0 or 100% and would flap. psutil keeps that previous
    call per thread, so nothing else on the event loop's thread may call
    ``cpu_percent(interval=None)``.
    """
    last_sample_at: float | None = None
    last_percent: float | None = None
    cpus = psutil.cpu_count() or 1

    async def probe(component: str, config: ComponentConfig) -> tuple[bool, str]:
        nonlocal last_sample_at, last_percent
        settings = _narrow(config, CpuComponent)
        now = clock.monotonic()
        try:
            if last_sample_at is None:
                psutil.cpu_percent(interval=None)
                last_sample_at = now
            elif now - last_sample_at >= min_sample_s:
                last_percent = psutil.cpu_percent(interval=None)
                last_sample_at = now
            load = os.getloadavg()[0] / cpus
        except (OSError, psutil.Error) as exc:
            raise _unreadable("CPU use and load", exc) from exc

        problems: list[str] = []
        figures: list[str] = []
        if last_percent is None:
            figures.append("CPU use measured from the next check")
        elif last_percent > settings.max_percent:
            problems.append(f"CPU {last_percent:.1f}% > {settings.max_percent:g}%")
        else:
            figures.append(f"CPU {last_percent:.1f}% (max {settings.max_percent:g}%)")
        if load > settings.max_load_per_cpu:
            problems.append(f"load {load:.2f} per CPU > {settings.max_load_per_cpu:g}")
        else:
            figures.append(f"load {load:.2f} per CPU (max {settings.max_load_per_cpu:g})")

        if problems:
            detail = ", ".join(problems + figures)
            logger.debug("%s: %s", component, detail, extra={"error_id": settings.error_id})
            return False, detail
        return True, ", ".join(figures)

    return probe
