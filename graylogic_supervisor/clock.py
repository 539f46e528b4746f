"""Time, injected (DESIGN.md contract 1).

Everything that waits or reads the clock takes a ``Clock`` so the simulator can
run the same engine on virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC, for records."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        """Await with a deadline on this clock; raises ``TimeoutError``."""
        ...


class SystemClock:
    """The real clock the daemon runs on."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable


def isoformat(moment: datetime) -> str:
    """The one timestamp format of the store and the MQTT payloads."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class _Deadline:
    left: float  # seconds the awaited work may still sleep


class _Expired(BaseException):
    """Unwinds work that slept past its ``wait_for`` deadline.

    A BaseException, like ``CancelledError``, so that an action's ``except
    Exception`` cannot swallow the timeout the clock imposes on it.
    """

    def __init__(self, deadline: _Deadline) -> None:
        self.deadline = deadline
        super().__init__()


class VirtualClock:
    """A ``Clock`` on which waiting is instant, so a 30 s timeout costs no real time.

    ``sleep`` moves time forward at once. ``wait_for`` gives the awaited work a
    budget of sleep; a sleep that would overspend it stops at the budget's end
    and unwinds the work, which ``wait_for`` turns into ``TimeoutError``, just
    as ``asyncio.timeout`` cancels a real step at its deadline.

    Budgets belong to the task that set them, so the branches of a parallel
    group (one task each) time out on their own sleeps, never on a sibling's.
    Their sleeps still add up on the one time line: a group's time is the sum
    of its branches', an upper bound of the real one.
    """

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._elapsed = 0.0
        self._deadlines: dict[asyncio.Task[Any] | None, list[_Deadline]] = {}

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        own = self._deadlines.get(asyncio.current_task(), [])
        tightest = min(own, key=lambda deadline: deadline.left, default=None)
        if tightest is not None and seconds > tightest.left:
            self._spend(tightest.left, own)
            raise _Expired(tightest)
        self._spend(seconds, own)
        await asyncio.sleep(0)  # still a checkpoint, as a real sleep is

    def _spend(self, seconds: float, deadlines: list[_Deadline]) -> None:
        self._elapsed += seconds
        for deadline in deadlines:
            deadline.left -= seconds

    async def wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        task = asyncio.current_task()
        deadline = _Deadline(seconds)
        self._deadlines.setdefault(task, []).append(deadline)
        try:
            return await awaitable
        except _Expired as expired:
            if expired.deadline is not deadline:
                raise  # an outer wait_for's budget ran out first
            raise TimeoutError(f"no answer within {seconds:g} s") from None
        finally:
            own = self._deadlines[task]
            own.remove(deadline)
            if not own:
                del self._deadlines[task]
