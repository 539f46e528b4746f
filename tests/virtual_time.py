"""Virtual time for tests in which many tasks wait at once (DESIGN contract 1: time is injected).

The simulator's ``graylogic_supervisor.clock.VirtualClock`` moves time forward on
each sleep, which suits one run at a time. ``DrivenClock`` moves only when nothing
else can: a driver task waits until the loop is idle (no callback ready, no store
call in flight on aiosqlite's thread) and then jumps to the earliest pending sleep.
Tasks that sleep concurrently overlap as they would in real time, and a test of
minutes runs in milliseconds without depending on how loaded the machine is.

The store's thread is invisible to the event loop (a fake-time loop such as
looptime sees only executor futures), so ``CountingDatabase`` tells the clock
while a read or write is in flight; the driver never moves time under one.
``CountingExecutor`` does the same for a worker thread (the audit log's head file).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from graylogic_supervisor.store.database import Database, Row, Statement, Written

T = TypeVar("T")
Timed = tuple["DrivenClock", Database]  # the ``timed`` fixture: a driven clock, a counted store

IDLE_ROUNDS = 5  # loop iterations with nothing ready before the loop counts as idle
THREAD_WAIT_S = 0.0002  # real time to let the store's thread finish a call


class DrivenClock:
    def __init__(self, start: datetime = datetime(2026, 11, 26, 12, tzinfo=UTC)) -> None:
        self._start = start
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.in_flight = 0  # store calls under way on another thread

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._elapsed + seconds, next(self._order), wake))
        await wake

    async def wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        work = asyncio.ensure_future(awaitable)
        timer = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            raise
        if work.done():
            timer.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        raise TimeoutError

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def drive(self) -> None:
        """Beside the test, for ever: whenever the loop is idle, move to the next sleep's end."""
        while True:
            await self._until_idle()
            while self._timers and self._timers[0][2].done():  # cancelled sleeps
                heapq.heappop(self._timers)
            if not self._timers:
                await asyncio.sleep(THREAD_WAIT_S)  # everyone waits on something else
                continue
            self._elapsed = max(self._elapsed, self._timers[0][0])
            while self._timers and self._timers[0][0] <= self._elapsed:
                _, _, wake = heapq.heappop(self._timers)
                if not wake.done():
                    wake.set_result(None)

    async def _until_idle(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while quiet < IDLE_ROUNDS:
            await asyncio.sleep(0)
            if self.in_flight:
                quiet = 0
                await asyncio.sleep(THREAD_WAIT_S)
            elif loop._ready:  # type: ignore[attr-defined]  # callbacks other than ours
                quiet = 0
            else:
                quiet += 1


class CountingDatabase(Database):
    """The real store, telling the virtual clock while a call is on aiosqlite's thread."""

    def __init__(self, path: Path, clock: DrivenClock) -> None:
        super().__init__(path)
        self._virtual = clock

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        with self._virtual.busy():
            return await super().fetchall(sql, params)

    async def _write(self, statements: tuple[Statement, ...]) -> list[Written]:
        with self._virtual.busy():
            return await super()._write(statements)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        with self._virtual.busy():
            async with super().transaction() as conn:
                yield conn


class CountingExecutor(ThreadPoolExecutor):
    """A real one-thread pool, telling the virtual clock while a call runs on it."""

    def __init__(self, clock: DrivenClock) -> None:
        super().__init__(max_workers=1, thread_name_prefix="counted")
        self._virtual = clock

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """The caller's future is settled first and the count goes down after it, both
        from the worker thread in that order: the loop then sees the caller's wake-up
        ready before it sees nothing in flight. (Counting down from a done callback of
        the pool's own future raced asyncio's: a worker thread pre-empted between the
        two left the loop idle with the caller still waiting, and time jumped.)"""
        loop = asyncio.get_running_loop()
        self._virtual.in_flight += 1
        settled: Future[Any] = Future()

        def done(work: Future[Any]) -> None:  # on the worker thread
            try:
                if work.cancelled():
                    settled.cancel()
                elif (error := work.exception()) is not None:
                    settled.set_exception(error)
                else:
                    settled.set_result(work.result())
            except InvalidStateError:
                pass  # the caller gave up on it (cancelled): nobody waits for the result
            finally:
                loop.call_soon_threadsafe(self._count_down)

        super().submit(fn, *args, **kwargs).add_done_callback(done)
        return settled

    def _count_down(self) -> None:
        self._virtual.in_flight -= 1


@asynccontextmanager
async def driven(clock: DrivenClock) -> AsyncIterator[DrivenClock]:
    """The clock with its driver running for the block."""
    driver = asyncio.create_task(clock.drive(), name="virtual-time")
    try:
        yield clock
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
