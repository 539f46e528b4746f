"""File descriptors: how many this process holds, its limit, and the room kept for supervision.

Every socket, pipe, file and the database take one. Left to accept every
connection, the admin server took the last of them, and then the MQTT probe,
the store and psutil failed with ``EMFILE``: supervision died of the web
page's load (issue 13). So the limit is split once, at start-up: a reserve
that only supervision uses (probes, the broker link, the store, children's
pipes), and a cap on admin connections that fits in what is left. At run time
the admin server asks :meth:`FdBudget.has_headroom` before each accept, so
when something else eats into the reserve it stops taking connections.

A floor module: anything may read :func:`open_fds` (a probe that could not run
for lack of descriptors is the supervisor's problem, not the component's).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

PROC_FDS = "/proc/self/fd"
WANTED_SOFT_LIMIT = 4096
"""The soft limit asked for at start-up when the current one is lower (never above the
hard limit): room for the admin cap and the reserve several times over, while staying
far below what a child still using select() (FD_SETSIZE 1024 per set) would notice
only if it opened that many itself."""


def open_fds() -> int:
    """The file descriptors this process holds now.

    ``/proc/self/fd`` lists them; listing it opens one more, not counted. When
    even that cannot be opened the process is at its limit, and the limit is the
    honest answer.
    """
    try:
        return sum(1 for _ in Path(PROC_FDS).iterdir()) - 1
    except FileNotFoundError:  # not Linux: no /proc; psutil knows other ways
        return psutil.Process().num_fds()
    except OSError:  # EMFILE: no descriptor left to list them with
        return soft_limit()


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_soft_limit(wanted: int = WANTED_SOFT_LIMIT) -> int:
    """Raise RLIMIT_NOFILE's soft limit toward ``wanted`` (at most the hard limit) when it
    is lower; returns the soft limit in force. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
        else:
            logger.info("open file limit raised from %d to %d (hard limit %d)", soft, target, hard)
    return soft_limit()


@dataclass
class FdBudget:
    """The process's descriptor limit, less a reserve the admin server never uses."""

    limit: int
    reserve: int
    count: Callable[[], int] = open_fds
    """How many are open now; :func:`open_fds` but in tests that pick their own limit."""

    @classmethod
    def at_startup(cls, reserve: int) -> FdBudget:
        """The budget of this process, after raising a low soft limit."""
        return cls(raise_soft_limit(), reserve)

    def headroom(self) -> int:
        """Descriptors that may still be opened before the limit."""
        return self.limit - self.count()

    def has_headroom(self) -> bool:
        """True while opening one more leaves the reserve untouched."""
        return self.headroom() > self.reserve

    def fit(self, connections: int) -> int:
        """The admin connection cap that keeps the reserve free: ``connections``, or
        fewer (at least 1, so ``/healthz`` can still answer) when the limit is too low."""
        # Less two: a socket accepted over the cap (closed at once) and open_fds()'s listing.
        room = self.headroom() - self.reserve - 2
        if connections <= room:
            return connections
        cap = max(1, room)
        logger.warning(
            "the admin server's connection cap is lowered from %d to %d: %d file descriptors"
            " are allowed, %d are open and %d are kept for supervision",
            connections,
            cap,
            self.limit,
            self.count(),
            self.reserve,
        )
        return cap
