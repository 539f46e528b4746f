"""The audit chain's head (its last sequence number and hash), kept outside the database.

The hash chain shows an entry changed in the middle, but not a tail cut off the
end, nor a chain recomputed from a changed entry onwards: both leave a chain
that verifies. A copy of the head in a file beside the store catches both: the
database must reach the head's sequence number and carry the head's hash there.

Whoever appends (the daemon or a CLI process) moves the head after its commit.
The file is replaced atomically (temporary file, fsync, rename, fsync of the
directory) under an exclusive ``flock`` on a lock file beside it, and only
forwards: a slower writer never puts back an older head. The head never runs
ahead of the database, so a database longer than its head means a crash
between a commit and the head write (said, not an error); shorter means a
deleted tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_T = TypeVar("_T")


@dataclass(frozen=True)
class ChainHead:
    """The last entry of a chain: ``seq`` 0 with the genesis hash is the empty chain."""

    seq: int
    hash: str

    def as_json(self) -> dict[str, int | str]:
        return {"seq": self.seq, "hash": self.hash}


EMPTY = ChainHead(0, GENESIS)


class HeadFileError(Exception):
    """The head file exists but cannot be read as a head (corrupt, or written by hand)."""


def head_path(database: Path) -> Path | None:
    """``supervisor.db`` -> ``supervisor.db.audit-head``; None for an in-memory store."""
    name = str(database)
    if name == ":memory:" or name.startswith("file::memory:") or "mode=memory" in name:
        return None
    return database.with_name(database.name + ".audit-head")


def parse_head(text: str) -> ChainHead:
    """A head as written here, or as published on MQTT; ``SEQ:HASH`` is accepted too."""
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            seq, digest = data["seq"], data["hash"]
        else:
            seq_text, digest = text.strip().split(":", 1)
            seq = int(seq_text)
    except (ValueError, KeyError, TypeError) as exc:
        raise HeadFileError(f"not a chain head: {text[:80]!r}") from exc
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise HeadFileError(f"not a sequence number: {seq!r}")
    if not isinstance(digest, str) or len(digest) != 64:
        raise HeadFileError(f"not a SHA-256 hash: {digest!r}")
    return ChainHead(seq, digest)


class HeadFile:
    """The file itself. Blocking: call it from a worker thread, never the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._temp_path = path.with_name(path.name + ".tmp")

    def read(self) -> ChainHead | None:
        """The head, or None when there is no file; ``HeadFileError`` when it is unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise HeadFileError(f"{self.path}: {exc}") from exc
        try:
            return parse_head(text)
        except HeadFileError as exc:
            raise HeadFileError(f"{self.path}: {exc}") from exc

    def advance(self, head: ChainHead) -> ChainHead | None:
        """Move the head forward to ``head``; returns the head now in the file.

        Refuses (returns None) when there is no readable file to move and ``head`` is
        not the chain's first entry: a head that went missing is put back only by
        ``create``, which the daemon records in the audit log.
        """
        with self._locked():
            try:
                current = self.read()
            except HeadFileError:
                return None
            if current is None and head.seq > 1:
                return None
            if current is not None and current.seq >= head.seq:
                return current
            self._replace(head)
            return head

    def create(self, head: ChainHead) -> bool:
        """Write ``head`` if there is no file (a first start, or a head that went missing);
        False when a file is there."""
        with self._locked():
            if self.path.exists():
                return False
            self._replace(head)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A separate lock file: the head file itself is replaced, so its inode changes.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _replace(self, head: ChainHead) -> None:
        data = (json.dumps(head.as_json()) + "\n").encode()
        fd = os.open(self._temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._temp_path.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


class HeadKeeper:
    """Moves the head file after appends, off the event loop, coalescing bursts: an
    append that finds a newer head already written returns at once."""

    def __init__(self, file: HeadFile, executor: Executor | None = None) -> None:
        """``executor`` runs the file work (the daemon gives its audit worker); None
        is asyncio's default pool, good enough for a short CLI process."""
        self.file = file
        self._executor = executor
        self._lock = asyncio.Lock()
        self._wanted = EMPTY
        self._written = EMPTY
        self._refused = False
        self._failing = False
        self.listeners: list[Callable[[ChainHead], None]] = []
        """Told of every entry this process appended (the daemon's watch wakes up)."""

    async def run(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def advance(self, head: ChainHead) -> None:
        """Never raises for the file: the entry is committed, and a head left behind is
        reported by verification (a database ahead of its head)."""
        if head.seq > self._wanted.seq:
            self._wanted = head
        try:
            await self._move(head)
        finally:
            for listener in self.listeners:
                listener(head)

    async def _move(self, head: ChainHead) -> None:
        async with self._lock:
            if self._written.seq >= head.seq:
                return
            wanted = self._wanted
            try:
                stored = await self.run(lambda: self.file.advance(wanted))
            except OSError as exc:  # a full disk: said once, until a write works again
                if not self._failing:
                    logger.error("the audit head file %s was not moved: %s", self.file.path, exc)
                self._failing = True
                return
            self._failing = False
            if stored is None:
                if not self._refused:
                    logger.warning(
                        "the audit head file %s is missing or unreadable: not moved;"
                        " `audit verify` reports it and the daemon recreates it",
                        self.file.path,
                    )
                self._refused = True
                return
            self._refused = False
            self._written = stored
