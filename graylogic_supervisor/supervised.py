"""Every long-lived loop of the daemon, kept alive: a crash is logged, counted and restarted.

One loop's error must never end the daemon (DESIGN.md contract 8): before this, an
exception in any task of the daemon's TaskGroup cancelled every other loop and
ended the process with "unhandled errors in a TaskGroup", the cause hidden.

:meth:`LoopSupervisor.run` runs one loop and, when it raises anything but
cancellation (or returns: these loops are meant to run until cancelled), logs
the cause once per streak (the traceback the first time, one line for each
identical repeat), counts it, waits a capped, jittered backoff on the injected
clock and starts it again. A loop that ran ``stable_s`` before failing starts
its backoff afresh. ``fatal`` names the errors that must still end the daemon
(the admin port taken at start-up, before the server ever served).

The loop runs in a task of its own, so the supervisor is never stuck behind a
loop that swallows its cancellation (a library bug, CPython gh-86296 on 3.11):
such a loop is cancelled again every ``recancel_s`` and, after ``cancel_wait_s``
(real time: it bounds the daemon's shutdown), left behind with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from graylogic_supervisor.backoff import Backoff
from graylogic_supervisor.clock import Clock

logger = logging.getLogger(__name__)

LoopFactory = Callable[[], Coroutine[Any, Any, object]]


@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2
    stable_s: float = 60.0  # ran this long before failing: the next restart is quick again
    cancel_wait_s: float = 3.0  # at shutdown, how long a loop may take to end once cancelled
    recancel_s: float = 0.5  # cancel again this often, for a cancel that was swallowed


class RestartCounter(Protocol):
    def loop_restarted(self, loop: str) -> None: ...


def never(_: BaseException) -> bool:
    return False


class LoopSupervisor:
    """Runs the daemon's loops; one object per daemon, handed the clock and the metrics."""

    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        counter: RestartCounter,
        policy: RestartPolicy | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._counter = counter
        self._policy = policy or RestartPolicy()
        self.abandoned: list[asyncio.Task[object]] = []  # loops that ignored cancellation

    async def run(
        self,
        name: str,
        loop: LoopFactory,
        *,
        fatal: Callable[[BaseException], bool] = never,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        """Run ``loop()`` until cancelled, restarting it after each failure.

        ``on_restart`` runs just before each restart (e.g. to hand a restarted
        loop what it missed).
        """
        policy = self._policy
        backoff = Backoff(
            policy.initial_s, policy.multiplier, policy.max_s, policy.jitter, rng=self._rng
        )
        last: str | None = None
        repeats = 0
        while True:
            started = self._clock.monotonic()
            error = await self._run_once(name, loop)
            if error is not None and fatal(error):
                raise error
            if self._clock.monotonic() - started >= policy.stable_s:
                backoff.reset()
                last = None
            delay = backoff.next()
            signature = _signature(error)
            if signature != last:
                last, repeats = signature, 1
                logger.error(
                    "loop %s %s; restarting it in %.1f s",
                    name,
                    signature,
                    delay,
                    exc_info=error,
                )
            else:
                repeats += 1
                logger.error(
                    "loop %s %s again (%d times in a row); restarting it in %.1f s",
                    name,
                    signature,
                    repeats,
                    delay,
                )
            self._counter.loop_restarted(name)
            await self._clock.sleep(delay)
            if on_restart is not None:
                on_restart()

    async def _run_once(self, name: str, loop: LoopFactory) -> BaseException | None:
        """Run the loop once; its error, or None if it returned."""
        task: asyncio.Task[object] = asyncio.create_task(loop(), name=f"{name}:run")
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            await self._stop(name, task)
            raise
        if task.cancelled():  # a cancellation that was not ours: a failure like another
            return asyncio.CancelledError(f"loop {name} was cancelled from inside")
        error = task.exception()
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: not ours to keep running through
        return error

    async def _stop(self, name: str, task: asyncio.Task[object]) -> None:
        """Cancel the loop, again while it swallows it, and leave it behind at the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.cancel_wait_s
        while not task.done():
            left = deadline - loop.time()
            if left <= 0:
                logger.warning(
                    "loop %s ignored cancellation for %.1f s; left behind",
                    name,
                    self._policy.cancel_wait_s,
                )
                self.abandoned.append(task)
                return
            task.cancel()
            # Cancelled again while stopping: still bounded, and the caller re-raises it.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task], timeout=min(self._policy.recancel_s, left))
        if not task.cancelled() and task.exception() is not None:
            logger.error("loop %s failed while stopping", name, exc_info=task.exception())


def _signature(error: BaseException | None) -> str:
    """What failed, in one line: a TaskGroup's "unhandled errors" names its causes."""
    if error is None:
        return "ended by itself"
    return "failed: " + "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(error))


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
