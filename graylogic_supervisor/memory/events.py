"""The bounded ring of what happened lately, captured with every failure.

"The broker restarted two minutes before the bridge failed" is the kind of
context that tells two similar-looking failures apart.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.memory.model import RecentEvent

EventKind = Literal["health", "execution", "config", "user"]


class EventRing:
    def __init__(self, clock: Clock, size: int = 50) -> None:
        self._clock = clock
        self._events: deque[RecentEvent] = deque(maxlen=size)

    def add(self, kind: EventKind, subject: str, detail: str) -> None:
        self._events.append(
            RecentEvent(at=self._clock.now(), kind=kind, subject=subject, detail=detail[:200])
        )

    def snapshot(self) -> list[RecentEvent]:
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)
