"""Space kept back on the state directory's filesystem for the store's own records.

When the disk fills (a log that is never rotated, a broker persisting without
limit), the supervisor is exactly what must keep working and keep writing down
what it did. So it holds a reserve: a file of real, allocated blocks beside the
database. The first write that finds the disk full frees it, and the store goes
on writing into that room while the failure is reported as ``ERR-SYS-DISK-001``.
Once space returns, the reserve is taken back.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class DiskReserve:
    """A file of ``size_bytes`` allocated blocks that can be given up in one unlink."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size_bytes
        except FileNotFoundError:
            return False

    def take(self) -> bool:
        """Allocate the reserve unless held; False, leaving nothing behind, if it does not fit.

        It is taken only while as much again stays free, so taking it back never
        fills a disk that is only just recovering.
        """
        if self.size_bytes <= 0 or self.held:
            return self.size_bytes > 0
        try:
            stats = os.statvfs(self.path.parent)
        except OSError as exc:
            logger.warning("cannot read free space for the store's reserve: %s", exc)
            return False
        if stats.f_bavail * stats.f_frsize < 2 * self.size_bytes:
            return False
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            with partial.open("wb") as handle:
                # real blocks, not a sparse file: a hole gives nothing back when unlinked
                os.posix_fallocate(handle.fileno(), 0, self.size_bytes)
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(self.path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno != errno.ENOSPC:
                logger.warning("cannot allocate the store's reserve %s: %s", self.path, exc)
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's space back to the filesystem; True if there was any to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
