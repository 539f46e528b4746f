"""A bounded shutdown: SIGTERM never hangs past ``shutdown_grace_s`` plus a fixed tail.

Every phase of stopping (the executions, the link's flush, the loops, the
escalation chain, the children, the store) is given a bound by :func:`bounded`;
a phase that overruns it is cancelled, and one that ignores even that is left
behind with a warning. :func:`run_to_exit` runs the daemon's coroutine as
``asyncio.run`` would, but gives leftover tasks a bound and does not wait for
executor threads. :class:`ShutdownDeadline` is the last resort, on a thread of its own so it
fires even when the event loop or the interpreter's exit is stuck: it kills our
child processes and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psutil

logger = logging.getLogger(__name__)

T = TypeVar("T")

ABANDON_S = 0.5  # after a phase's bound, how long its cancellation may take
LEFTOVER_S = 1.0  # tasks and executor threads still there once the daemon returned
EXIT_FORCED = 1


async def bounded(what: str, work: Callable[[], Awaitable[object]], timeout_s: float) -> bool:
    """Run one phase of the shutdown for at most ``timeout_s``; True if it finished cleanly.

    Its error is logged, not raised: the phases after it (stopping the children,
    closing the store) must run whatever happened to this one.
    """
    task = asyncio.ensure_future(work())
    try:
        done, _ = await asyncio.wait([task], timeout=max(timeout_s, 0.0))
        if not done:
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=ABANDON_S)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        logger.warning("shutdown: %s ignored cancellation; left behind", what)
        return False
    if task.cancelled():
        logger.warning("shutdown: %s took longer than %.1f s; cancelled", what, timeout_s)
        return False
    error = task.exception()
    if error is not None:
        logger.error("shutdown: %s failed: %s", what, error, exc_info=error)
        return False
    return True


def kill_children() -> list[int]:
    """SIGKILL every process below this one (our broker, our services); their pids."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    killed = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
            killed.append(child.pid)
    return killed


def _force_exit(seconds: float) -> None:
    killed = kill_children()
    logger.critical(
        "shutdown still not finished %.1f s after it began: killed child processes %s and exiting",
        seconds,
        killed or "(none left)",
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_FORCED)


class ShutdownDeadline:
    """Arm once shutdown begins; if the process still runs ``seconds`` later, it is ended."""

    def __init__(self, seconds: float, on_expiry: Callable[[float], None] = _force_exit) -> None:
        self.seconds = seconds
        self._on_expiry = on_expiry
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Start the countdown (later calls keep the first one's)."""
        with self._lock:
            if self._timer is not None:
                return
            # A daemon thread: it must not keep the process alive, and it must still run
            # while the interpreter's exit waits on some stuck thread.
            self._timer = threading.Timer(self.seconds, self._on_expiry, args=(self.seconds,))
            self._timer.daemon = True
            self._timer.name = "shutdown-deadline"
            self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def run_to_exit(main: Coroutine[Any, Any, T], leftover_s: float = LEFTOVER_S) -> T:
    """``asyncio.run(main)``, except that what is left when ``main`` returns gets a bound:
    ``asyncio.run`` waits for ever for a task that ignores cancellation and for every
    executor thread (the interpreter's exit still joins those: :class:`ShutdownDeadline`
    bounds that)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(loop, leftover_s)
            loop.run_until_complete(loop.shutdown_asyncgens())
            # Not shutdown_default_executor(): it joins the executor's threads on the loop,
            # unbounded. close() lets them finish on their own; a stuck one is the deadline's.
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, leftover_s: float) -> None:
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=leftover_s))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "task %s failed while stopping", task.get_name(), exc_info=task.exception()
            )
    if pending:
        logger.warning(
            "left behind at exit, ignoring cancellation: %s",
            ", ".join(sorted(task.get_name() for task in pending)),
        )
