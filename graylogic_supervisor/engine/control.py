"""Control of running executions: pause, resume, cancel, manual override, priorities.

The runner registers each execution here while it runs and asks, between steps,
whether it is paused; a step races its action against a person's override. The
daemon applies operators' commands (written to the store by the CLI) through
``ExecutionControls``; the admin page will call the same functions.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from graylogic_supervisor.clock import Clock


@dataclass(frozen=True)
class Override:
    outcome: str  # success | failure
    by: str
    reason: str


@dataclass
class ExecutionHandle:
    execution_id: str
    task: asyncio.Task[object] | None
    running: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_by: str | None = None
    overrides: dict[str, asyncio.Future[Override]] = field(default_factory=dict)
    deadline: float = float("inf")  # on the clock's monotonic scale
    last_beat: float = 0.0  # the last step start or end
    flagged: bool = False  # the watchdog has said it is stuck

    def __post_init__(self) -> None:
        self.running.set()

    @property
    def paused(self) -> bool:
        return not self.running.is_set()

    def override_for(self, step_id: str) -> asyncio.Future[Override]:
        """What a person decides for this step, if they do (a future that may never complete)."""
        return self.overrides.setdefault(step_id, asyncio.get_running_loop().create_future())


class ExecutionControls:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._handles: dict[str, ExecutionHandle] = {}

    def open(self, execution_id: str, deadline: float = float("inf")) -> ExecutionHandle:
        handle = ExecutionHandle(execution_id, asyncio.current_task(), deadline=deadline)
        handle.last_beat = self._clock.monotonic()
        self._handles[execution_id] = handle
        return handle

    def beat(self, execution_id: str) -> None:
        """A sign of life: a step started or ended."""
        handle = self._handles.get(execution_id)
        if handle is not None:
            handle.last_beat = self._clock.monotonic()

    def stuck(self, grace_s: float) -> list[tuple[str, float]]:
        """Executions past their deadline by more than ``grace_s``, each reported once:
        (id, seconds since their last sign of life). The runner's own timeouts should have
        ended them; one that did not is wedged (a hung undo, a stalled store)."""
        now = self._clock.monotonic()
        found = []
        for handle in self._handles.values():
            if not handle.flagged and not handle.paused and now > handle.deadline + grace_s:
                handle.flagged = True
                found.append((handle.execution_id, now - handle.last_beat))
        return found

    def close(self, execution_id: str) -> None:
        self._handles.pop(execution_id, None)

    def handle(self, execution_id: str) -> ExecutionHandle | None:
        return self._handles.get(execution_id)

    def running(self) -> list[str]:
        return sorted(self._handles)

    async def wait_while_paused(self, handle: ExecutionHandle) -> float:
        """Block while paused; returns how long, so the run's deadline can move with it."""
        if not handle.paused:
            return 0.0
        began = self._clock.monotonic()
        await handle.running.wait()
        paused = self._clock.monotonic() - began
        handle.deadline += paused
        return paused

    # -- commands: each returns what it did, for the record ----------------------

    def pause(self, execution_id: str) -> str:
        handle = self._handles.get(execution_id)
        if handle is None:
            return f"{execution_id} is not running"
        if handle.paused:
            return f"{execution_id} was already paused"
        handle.running.clear()
        return f"{execution_id} paused (after its current step)"

    def resume(self, execution_id: str) -> str:
        handle = self._handles.get(execution_id)
        if handle is None:
            return f"{execution_id} is not running"
        if not handle.paused:
            return f"{execution_id} was not paused"
        handle.running.set()
        return f"{execution_id} resumed"

    def cancel(self, execution_id: str, by: str) -> str:
        handle = self._handles.get(execution_id)
        if handle is None or handle.task is None:
            return f"{execution_id} is not running"
        handle.cancelled_by = by
        handle.running.set()  # a paused execution must wake up to be cancelled
        handle.task.cancel()
        return f"{execution_id} cancelled: its completed steps are undone"

    def override(self, execution_id: str, step_id: str, decision: Override) -> str:
        handle = self._handles.get(execution_id)
        if handle is None:
            return f"{execution_id} is not running"
        future = handle.override_for(step_id)
        if future.done():
            return f"step {step_id} of {execution_id} was already overridden"
        future.set_result(decision)
        return f"step {step_id} of {execution_id} marked {decision.outcome} by {decision.by}"

    def emergency_stop(self, by: str) -> str:
        stopped = [self.cancel(execution_id, by) for execution_id in list(self._handles)]
        return f"emergency stop: {len(stopped)} execution(s) cancelled"


class PriorityGate:
    """At most ``limit`` executions at once; the waiting one with the best priority goes next.

    Priority 0 is the most urgent (a critical failure); ties go first come, first served.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self._limit = limit
        self._running = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        if self._running >= self._limit or self._waiting:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # it was handed the slot as it was cancelled
                raise
        else:
            self._running += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot passes on: _running is unchanged
                return
        self._running -= 1
