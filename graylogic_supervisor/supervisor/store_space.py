"""A full disk under the store: reported as ERR-SYS-DISK-001, and the reserve taken back.

The store frees its reserve on the first write that finds the disk full and
tells this keeper (``on_full``). The keeper raises the alarm once per episode
(log, MQTT alert, a fresh probe of the disk and database components so their
health says so), then tries every ``check_interval_s`` to take the reserve
back; once it can, space has returned, the records the store held meanwhile
are written at once, and the episode is over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.engine.builtins.notify import AlertSink
from graylogic_supervisor.store.database import DISK_ERROR_ID
from graylogic_supervisor.store.reserve import DiskReserve

logger = logging.getLogger(__name__)

MIN_FREE_WITHOUT_RESERVE = 1024 * 1024  # with no reserve configured: space is back at 1 MiB


class StoreSpace:
    """Watches the store's reserve; ``full`` from a failed write until space returns."""

    def __init__(
        self,
        reserve: DiskReserve,
        alerts: AlertSink,
        probe: Callable[[str], Awaitable[object]],
        components_to_probe: Sequence[str],
        *,
        clock: Clock,
        check_interval_s: float,
        flush_held: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``flush_held`` writes the records the store held while it could not."""
        self._reserve = reserve
        self._flush_held = flush_held
        self._alerts = alerts
        self._probe = probe
        self._components = list(components_to_probe)
        self._clock = clock
        self._interval_s = check_interval_s
        self._changed = asyncio.Event()
        self.full = False
        self.episodes = 0

    def take_reserve(self) -> None:
        """At start-up: hold the reserve if it fits; a disk already too full is reported."""
        if self._reserve.size_bytes <= 0 or self._reserve.take():
            return
        logger.warning(
            "cannot set aside the store's %.0f MB reserve in %s: too little free space",
            self._reserve.size_bytes / 1e6,
            self._reserve.path.parent,
            extra={"error_id": DISK_ERROR_ID},
        )

    def on_full(self, room_made: bool) -> None:
        """The store's callback: a write found the disk full (``room_made``: reserve freed)."""
        if not self.full:
            self.full = True
            self.episodes += 1
            reserve = "released to keep recording" if room_made else "already used up"
            logger.error(
                "the disk holding the store is full; the store's reserve was %s",
                reserve,
                extra={"error_id": DISK_ERROR_ID},
            )
            self._alerts.alert(
                "high",
                f"disk full under the supervisor's store; reserve {reserve}",
                {"error_id": DISK_ERROR_ID, "path": str(self._reserve.path.parent)},
            )
        self._changed.set()

    def _space_is_back(self) -> bool:
        if self._reserve.size_bytes > 0:
            return self._reserve.take()
        try:
            stats = os.statvfs(self._reserve.path.parent)
        except OSError:
            return False
        return stats.f_bavail * stats.f_frsize >= MIN_FREE_WITHOUT_RESERVE

    async def run(self) -> None:
        """Probe at once when the disk fills; take the reserve back when space returns."""
        while True:
            if not self.full:
                await self._changed.wait()
            self._changed.clear()
            if self.full:
                for component in self._components:
                    await self._probe(component)
            while self.full:
                await self._clock.sleep(self._interval_s)
                if self._space_is_back():
                    self.full = False
                    logger.info(
                        "space is back under the store: its reserve is held again",
                        extra={"error_id": DISK_ERROR_ID},
                    )
                    if self._flush_held is not None:
                        await self._flush_held()
                    self._alerts.alert(
                        "info",
                        "disk space is back under the supervisor's store",
                        {"error_id": DISK_ERROR_ID, "resolved": "true"},
                    )
                    for component in self._components:
                        await self._probe(component)
