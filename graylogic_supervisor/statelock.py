"""One daemon per state directory: an exclusive ``flock`` on ``state_dir/supervisor.lock``.

Taken before anything else touches the state directory (the orphan clean-up, the
broker's configuration, the store): a second daemon on the same directory would
take the first one's broker for an orphan and kill it. The lock file holds the
holder's pid, start time and argv, so the second one can say who is there.

``flock`` belongs to the open file, not to a path or a pid: the kernel drops it
when the holder exits however it exits (kill -9 included), so a stale lock is
impossible and the file is never deleted (deleting it would let two daemons lock
two different files). The descriptor is close-on-exec, so the children we start
(our broker outlives a killed supervisor) never hold the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import SupervisorError

LOCK_NAME = "supervisor.lock"
MAX_RECORD = 64 * 1024


class StateDirInUse(SupervisorError):
    """Another live process holds the state directory's lock."""

    def __init__(self, state_dir: Path, holder: dict[str, Any]) -> None:
        self.state_dir = state_dir
        self.holder = holder
        pid, started = holder.get("pid"), holder.get("started_at")
        who = f"pid {pid}" if pid is not None else "another process"
        when = f", started at {started}" if started else ""
        argv = holder.get("argv")
        what = f" ({' '.join(str(a) for a in argv)})" if isinstance(argv, list) and argv else ""
        super().__init__(f"state directory {state_dir} is in use by {who}{when}{what}")


class StateLockError(SupervisorError):
    """The lock could not be taken for another reason (permissions, no locking on the mount)."""


class StateLock:
    """Hold ``state_dir``'s lock for as long as the ``with`` block runs."""

    def __init__(
        self,
        state_dir: Path,
        started_at: datetime,
        *,
        pid: int | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._record = {
            "pid": os.getpid() if pid is None else pid,
            "started_at": isoformat(started_at),
            "argv": list(sys.orig_argv if argv is None else argv),
        }
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateDirInUse`, having changed nothing."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateLockError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise StateDirInUse(self.state_dir, holder) from None
        except OSError as exc:
            os.close(fd)
            raise StateLockError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        self._fd = fd
        data = json.dumps(self._record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        """Let go: the record is emptied first, so nobody reads a holder that left."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_record(fd: int) -> dict[str, Any]:
    """The holder's record; empty when it is still being written (or not ours)."""
    try:
        raw = os.pread(fd, MAX_RECORD, 0)
        record = json.loads(raw.decode("utf-8")) if raw else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
