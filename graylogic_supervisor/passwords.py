"""Argon2 in a small pool of its own, with a bounded queue.

Argon2id is slow and memory-hard by design (argon2-cffi's defaults: 64 MiB for
each hash in flight). Run through ``asyncio.to_thread`` it took the loop's
default executor, the one aiomqtt's connect uses too: a burst of wrong logins
made the broker probe time out and a healthy broker was restarted, and six
hashes at once lifted the daemon's RSS by 330 MB (issue 13). Here hashing has
its own threads (``workers``, 1 by default) and at most ``waiting`` more
requests queue behind them; beyond that :class:`PasswordsBusy` is raised at
once, before any hashing, and the login answers 503.

A slot is held until the hash really ends, not until its caller stops waiting:
a cancelled login cannot let more hashes run than the pool allows.

The composition root builds one and passes it in (the daemon, the CLI); a
:class:`~graylogic_supervisor.store.users.UserRepository` built without one makes
its own, so nothing password-related ever reaches the default executor.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from graylogic_supervisor.errors import SupervisorError

_T = TypeVar("_T")


class PasswordsBusy(SupervisorError):
    """Every slot of the pool is taken: try again shortly (nothing was hashed)."""

    retry_after_s = 1


class PasswordPool:
    """Hash and verify passwords in ``workers`` threads with at most ``waiting`` queued."""

    def __init__(
        self, workers: int = 1, waiting: int = 2, hasher: PasswordHasher | None = None
    ) -> None:
        if workers < 1 or waiting < 0:
            raise ValueError("a password pool needs a worker and a queue of 0 or more")
        self._hasher = hasher or PasswordHasher()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._slots = workers + waiting
        self._taken = 0
        self._lock = threading.Lock()  # released from the worker threads
        self.hashes_run = 0
        """Hashes and verifications finished (for tests and figures)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop what is queued; a hash under way finishes in its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def has_room(self) -> bool:
        """Whether a request now would be taken (a hint: :meth:`hash` and
        :meth:`verify` decide, atomically)."""
        with self._lock:
            return self._taken < self._slots

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; a malformed hash matches nothing."""
        return await self._run(self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _run(self, work: Callable[..., _T], *args: str) -> _T:
        with self._lock:
            if self._taken >= self._slots:
                raise PasswordsBusy("too many passwords are being checked; try again shortly")
            self._taken += 1
        try:
            future = self._executor.submit(work, *args)
        except RuntimeError:  # closed
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, future: Future[Any] | None) -> None:
        with self._lock:
            self._taken -= 1
            if future is not None and not future.cancelled():
                self.hashes_run += 1
