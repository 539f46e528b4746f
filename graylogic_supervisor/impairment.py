"""When the supervisor cannot tell: its own resources failed, not the component.

A probe answers healthy, unhealthy, or *could not tell*. The third answer is
for failures on our side of the wire: no file descriptor or memory for a
socket, or an event loop so busy that a timeout measured our lag rather than
the component's silence. Such an answer says nothing about the component, so
it must never open an incident (DESIGN contract 8, "Do no harm").
"""

from __future__ import annotations

import asyncio
import errno
import os
from types import TracebackType

from graylogic_supervisor.errors import SupervisorError

# errno values that describe this process or this host running short, never the peer.
OWN_RESOURCE_ERRNOS = {
    errno.EMFILE: "no free file descriptor (EMFILE)",
    errno.ENFILE: "the system file table is full (ENFILE)",
    errno.ENOMEM: "out of memory (ENOMEM)",
    errno.ENOBUFS: "no buffer space (ENOBUFS)",
    errno.EAGAIN: "resource temporarily unavailable (EAGAIN)",
    errno.EADDRNOTAVAIL: "no local port or address left (EADDRNOTAVAIL)",
}

# A timeout counts against the component only if the loop was ours for at least
# this share of it: below that, most of the wait was spent on our own work.
MIN_OWN_SHARE = 0.5


class CouldNotTell(SupervisorError):
    """The check could not run properly on our side; the component's health is unknown.

    ``cause`` is a short stable word for metrics and logs (``fds``, ``memory``,
    ``loop-lag``, ``service-status``...); the message says what happened.
    """

    def __init__(self, cause: str, message: str) -> None:
        self.cause = cause
        super().__init__(message)


def _own_failure(exc: BaseException) -> BaseException | None:
    """``exc`` or the error it wraps (``raise ... from``) that is an own-resource failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or (
            isinstance(current, OSError) and current.errno in OWN_RESOURCE_ERRNOS
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def own_resource_failure(exc: BaseException) -> str | None:
    """What ran short on our side, if ``exc`` (or what it wraps) is such an error."""
    found = _own_failure(exc)
    if found is None:
        return None
    if isinstance(found, OSError) and found.errno is not None:
        return OWN_RESOURCE_ERRNOS[found.errno]
    return OWN_RESOURCE_ERRNOS[errno.ENOMEM]


def could_not_tell_from(exc: BaseException, doing: str) -> CouldNotTell | None:
    """``exc`` as a :class:`CouldNotTell` if it is (or wraps) an own-resource failure."""
    found = _own_failure(exc)
    if found is None:
        return None
    what = own_resource_failure(found)
    if isinstance(found, OSError) and found.errno in (errno.EMFILE, errno.ENFILE):
        cause = "fds"
    elif isinstance(found, MemoryError) or (
        isinstance(found, OSError) and found.errno == errno.ENOMEM
    ):
        cause = "memory"
    else:
        cause = "resources"
    return CouldNotTell(cause, f"could not {doing}: {what} on the supervisor's side")


def os_reason(exc: OSError) -> str:
    """An OS error in words ("connection refused"), without asyncio's wrapping text."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc)


def fds_exhausted() -> bool:
    """Whether this process cannot open one more file right now (one open and close)."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


class LagWatch:
    """How long the event loop was not ours during a span: a ticker's accumulated lateness.

    A timer that fires late means the loop was busy with something else (a
    blocking call, a burst of work); that time was never given to the peer we
    were waiting for. ``async with LagWatch() as lag: ...`` then ``lag.stalled_s``.
    """

    def __init__(self, tick_s: float = 0.02) -> None:
        self._tick_s = tick_s
        self._due = 0.0
        self._stalled = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def stalled_s(self) -> float:
        """Lateness so far, including the tick that is overdue right now."""
        overdue = asyncio.get_running_loop().time() - self._due
        return self._stalled + max(overdue, 0.0)

    def own_timeout(self, waited_s: float) -> bool:
        """Whether a timeout after ``waited_s`` was mostly our loop's lag."""
        return waited_s - self.stalled_s < waited_s * MIN_OWN_SHARE

    async def __aenter__(self) -> LagWatch:
        self._due = asyncio.get_running_loop().time() + self._tick_s
        self._task = asyncio.create_task(self._tick(), name="lag-watch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stalled = self.stalled_s
        self._due = asyncio.get_running_loop().time()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # a cancel of our own caller still propagates

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(self._due - loop.time(), 0.0))
            now = loop.time()
            self._stalled += max(now - self._due, 0.0)
            self._due = now + self._tick_s
