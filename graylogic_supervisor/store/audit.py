"""The audit log (DESIGN.md contract 7): append-only and tamper-evident.

Each entry carries the SHA-256 of its own content and of the entry before it,
so changing or removing any entry breaks every hash after it. SQLite triggers
refuse UPDATE and DELETE. Appending reads the last hash and inserts in one
``BEGIN IMMEDIATE`` transaction, so the daemon and the CLI (two processes)
never fork the chain. A use case adds its entry in the transaction that writes
its rows (``record``), so a crash leaves both or neither. After the commit the
appender moves the head file beside the store (``audit_head.py``), which
catches a deleted tail or a recomputed chain.

Verification reads the chain in chunks and hashes them in a worker thread, so
neither memory nor the event loop grows with the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.audit_archive import (
    ArchiveRecords,
    archive_dir,
    file_sha256,
    read_segment,
    segments,
)
from graylogic_supervisor.store.audit_head import (
    EMPTY,
    GENESIS,
    ChainHead,
    HeadFile,
    HeadFileError,
    HeadKeeper,
    head_path,
)
from graylogic_supervisor.store.database import Database, Row

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "Audited",
    "ChainCheck",
    "ChainWalk",
    "entry_hash",
]

_T = TypeVar("_T")

CHUNK = 1000
"""Entries read and hashed at a time: bounded memory, short hops off the loop."""
GIL_YIELD_EVERY = 100
"""The hashing thread lets go of the GIL this often. Otherwise the event loop waits out
the interpreter's 5 ms switch interval at every turn (measured: ticks 20 ms late at the
median while a pass ran, against 0.4 ms with these yields, for a pass ~35% slower)."""


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to which subject, and when."""

    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]
    at: datetime


Audited = Callable[[aiosqlite.Connection], Awaitable[tuple[_T, Sequence[AuditEntry]]]]
"""A use case's writes inside its transaction: its result, and the entries that say it."""


@dataclass(frozen=True)
class ChainCheck:
    """A verification's verdict. ``ok`` is False for proof of tampering; ``warnings``
    are what could not be checked (no head file); ``notes`` are said, not wrong."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    head: ChainHead | None = None
    """The last entry verified (the chain's head when ``ok``)."""

    @property
    def clean(self) -> bool:
        return self.ok and not self.warnings


@dataclass(frozen=True)
class ChainWalk:
    """How far the chain was followed: ``last`` is the last good entry."""

    last: ChainHead
    bad_seq: int | None = None
    problem: str = ""


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, *, action: str, subject: str, detail: str
) -> str:
    canonical = json.dumps(
        [prev_hash, seq, at, actor, action, subject, detail], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def walk(rows: Sequence[Any], start: ChainHead) -> ChainWalk:
    """Follow ``rows`` (in seq order, the entries after ``start``; store rows, or dicts
    read from an archive segment). CPU-bound: run it in a worker thread."""
    prev = start
    for index, row in enumerate(rows):
        if index % GIL_YIELD_EVERY == GIL_YIELD_EVERY - 1:
            time.sleep(0)  # a worker thread: hands the GIL to the event loop
        expected = prev.seq + 1
        if row["seq"] != expected:
            return ChainWalk(prev, row["seq"], f"entry {expected} is missing")
        if row["prev_hash"] != prev.hash:
            return ChainWalk(prev, row["seq"], "does not follow the entry before")
        digest = entry_hash(
            prev.hash,
            row["seq"],
            row["at"],
            row["actor"],
            action=row["action"],
            subject=row["subject"],
            detail=row["detail"],
        )
        if digest != row["hash"]:
            return ChainWalk(prev, row["seq"], "its content was changed")
        prev = ChainHead(expected, digest)
    return ChainWalk(prev)


class AuditLog:
    def __init__(self, db: Database, executor: Executor | None = None) -> None:
        """``executor`` hashes and moves the head file (the daemon gives a dedicated
        one); None is asyncio's default pool, which a CLI process may use."""
        self._db = db
        self._executor = executor
        path = head_path(db.path)
        self.head_keeper = None if path is None else HeadKeeper(HeadFile(path), executor)
        self.archive_dir = archive_dir(db.path)
        self.archives = ArchiveRecords(db)

    async def add_in(self, conn: aiosqlite.Connection, entry: AuditEntry) -> ChainHead:
        """Add ``entry`` inside the caller's transaction (``BEGIN IMMEDIATE``: the chain's
        last entry cannot change under it); returns the head it makes. The head file
        moves only once that transaction commits: ``record`` does both."""
        at = isoformat(entry.at)
        detail_json = json.dumps(dict(entry.detail), sort_keys=True, default=str)
        async with conn.execute(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ) as cursor:
            last = await cursor.fetchone()
        seq = 1 if last is None else int(last[0]) + 1
        prev_hash = GENESIS if last is None else str(last[1])
        digest = entry_hash(
            prev_hash,
            seq,
            at,
            entry.actor,
            action=entry.action,
            subject=entry.subject,
            detail=detail_json,
        )
        await conn.execute(
            "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, entry.actor, entry.action, entry.subject, detail_json, prev_hash, digest),
        )
        return ChainHead(seq, digest)

    async def record(self, body: Audited[_T]) -> _T:
        """One use case: ``body`` writes its rows and returns its result with the entries
        that say who did it; rows and entries commit together or not at all (``body``
        raising rolls everything back). On a full disk the store's reserve makes room and
        ``body`` runs once more (audit records must not be lost), so it reads what it
        decides on through the connection it is given. The head file moves after the
        commit."""
        result, head = await self._db.run_transaction(lambda conn: self._audited(conn, body))
        if head is not None:
            await self.committed(head)
        return result

    async def _audited(
        self, conn: aiosqlite.Connection, body: Audited[_T]
    ) -> tuple[_T, ChainHead | None]:
        result, entries = await body(conn)
        head = None
        for entry in entries:
            head = await self.add_in(conn, entry)
        return result, head

    async def committed(self, head: ChainHead) -> None:
        """After the commit of ``head``'s transaction: move the head file."""
        if self.head_keeper is not None:
            await self.head_keeper.advance(head)

    async def append(
        self,
        actor: str,
        action: str,
        subject: str,
        detail: Mapping[str, Any],
        *,
        now: datetime,
    ) -> int:
        """Add one entry on its own; returns its sequence number once the entry is
        committed and the head file moved."""
        entry = AuditEntry(actor, action, subject, detail, now)
        # an entry is who did what: on a full disk it goes into the store's reserve
        head = await self._db.run_transaction(lambda conn: self.add_in(conn, entry))
        await self.committed(head)
        return head.seq

    async def entries(
        self,
        limit: int = 100,
        *,
        subject: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Row]:
        """Newest first. ``action`` matches a whole action or a prefix ending in a dot
        (``memory.`` finds every memory decision); ``since`` and ``until`` bound ``at``."""
        clauses: list[str] = []
        params: list[Any] = []
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
        if actor is not None:
            clauses.append("actor = ?")
            params.append(actor)
        if action is not None:
            if action.endswith("."):
                clauses.append("substr(action, 1, ?) = ?")
                params += [len(action), action]
            else:
                clauses.append("action = ?")
                params.append(action)
        if since is not None:
            clauses.append("at >= ?")
            params.append(isoformat(since))
        if until is not None:
            clauses.append("at < ?")
            params.append(isoformat(until))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        return await self._db.fetchall(
            f"SELECT * FROM audit_log {where}ORDER BY seq DESC LIMIT ?",  # noqa: S608 - fixed clauses
            (*params, limit),
        )

    async def last(self) -> ChainHead:
        """The newest entry as stored (not verified); the empty head for an empty log."""
        row = await self._db.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return EMPTY if row is None else ChainHead(int(row["seq"]), str(row["hash"]))

    async def hash_at(self, seq: int) -> str | None:
        """The stored hash of entry ``seq`` (the genesis hash for 0); None if it is gone."""
        if seq == 0:
            return GENESIS
        row = await self._db.fetchone("SELECT hash FROM audit_log WHERE seq = ?", (seq,))
        if row is None:
            anchor = await self.archives.anchor()  # the last archived entry is still known
            return anchor.hash if anchor.seq == seq else None
        return str(row["hash"])

    async def follow(self, start: ChainHead | None = None) -> ChainWalk:
        """Verify the entries after ``start`` (trusted: verified before), chunk by chunk,
        hashing in the worker thread; by default the live entries, from the archive's
        anchor (the last archived entry) or the genesis."""
        loop = asyncio.get_running_loop()
        if start is None:
            start = await self.archives.anchor()
        position = ChainWalk(start)
        while True:
            rows = await self._db.fetchall(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash"
                " FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (position.last.seq, CHUNK),
            )
            if not rows:
                return position
            position = await loop.run_in_executor(self._executor, walk, rows, position.last)
            if position.bad_seq is not None or len(rows) < CHUNK:
                return position

    async def read_head(self) -> ChainHead | None:
        """The head file's head; None when there is none (or the store is in memory)."""
        if self.head_keeper is None:
            return None
        return await self.head_keeper.run(self.head_keeper.file.read)

    async def verify(self, expected: Sequence[tuple[str, ChainHead]] = ()) -> ChainCheck:
        """Recompute the whole chain and hold it against the head file and ``expected``
        (name, head) pairs, such as the head published on MQTT."""
        references: list[tuple[str, ChainHead]] = []
        warnings: list[str] = []
        # The head file first: it is written after its commit, so the store read next
        # has every entry the head names (reading the other way round races appends).
        try:
            on_file = await self.read_head()
        except HeadFileError as exc:
            done = await self.follow()
            return ChainCheck(
                False, done.last.seq, done.bad_seq, f"the head file is unreadable: {exc}"
            )
        if on_file is not None:
            references.append(("the head file", on_file))
        references += expected
        archived = await self.follow_archive()
        if archived.bad_seq is not None:
            return await self.judge(archived, references, warnings=warnings)
        done = await self.follow(archived.last)
        if on_file is None and self.head_keeper is not None and done.last.seq > 0:
            warnings.append(
                f"no head file ({self.head_keeper.file.path}): a deleted tail or a"
                " recomputed chain cannot be ruled out; the daemon creates it when it starts"
            )
        return await self.judge(done, references, warnings=warnings)

    async def follow_archive(self) -> ChainWalk:
        """Verify the archive segments one after the other from the genesis, and against
        what ``audit_archive`` recorded of them; ``last`` is where the live rows start."""
        recorded = {row["last_seq"]: row for row in await self.archives.recorded()}
        directory = self.archive_dir
        found = [] if directory is None else await asyncio.to_thread(segments, directory)
        loop = asyncio.get_running_loop()
        position = ChainWalk(EMPTY)
        for segment in found:
            name = segment.path.name
            if segment.first != position.last.seq + 1:
                if segment.first <= position.last.seq:
                    return ChainWalk(position.last, segment.first, f"{name} overlaps another")
                missing = f"{position.last.seq + 1}..{segment.first - 1}"
                return ChainWalk(
                    position.last,
                    position.last.seq + 1,
                    f"entries {missing} are missing: no archive segment holds them",
                )
            try:
                read = await asyncio.to_thread(read_segment, segment.path)
            except ValueError as exc:
                return ChainWalk(position.last, segment.first, str(exc))
            walked = await loop.run_in_executor(self._executor, walk, read.rows, position.last)
            if walked.bad_seq is not None:
                return ChainWalk(walked.last, walked.bad_seq, f"{name}: {walked.problem}")
            if walked.last.seq != segment.last or read.header.get("last_hash") != walked.last.hash:
                return ChainWalk(
                    walked.last, walked.last.seq + 1, f"{name} does not hold what it names"
                )
            record = recorded.pop(segment.last, None)
            if record is not None:
                if record["last_hash"] != walked.last.hash:
                    return ChainWalk(
                        walked.last, segment.last, f"{name} ends on another hash than recorded"
                    )
                if await asyncio.to_thread(file_sha256, segment.path) != record["sha256"]:
                    return ChainWalk(
                        walked.last, segment.first, f"{name} was changed since it was archived"
                    )
            position = walked
        if recorded:
            last_seq = min(recorded)
            record = recorded[last_seq]
            return ChainWalk(
                position.last,
                int(record["first_seq"]),
                f"archive segment {record['file']} (entries {record['first_seq']}..{last_seq})"
                " is missing",
            )
        return position

    async def judge(
        self,
        done: ChainWalk,
        references: Sequence[tuple[str, ChainHead]],
        notes: Sequence[str] = (),
        warnings: Sequence[str] = (),
    ) -> ChainCheck:
        """The verdict on a followed chain, held against heads recorded elsewhere."""
        last = done.last
        if done.bad_seq is not None:
            return ChainCheck(
                False, last.seq, done.bad_seq, done.problem, tuple(notes), tuple(warnings), last
            )
        said = list(notes)
        for name, head in references:
            if last.seq < head.seq:
                first = last.seq + 1
                gone = (
                    f"entry {first} was"
                    if first == head.seq
                    else f"entries {first}..{head.seq} were"
                )
                return ChainCheck(
                    False,
                    last.seq,
                    first,
                    f"{gone} deleted: {name} records {head.seq} entries, the store has {last.seq}",
                    tuple(said),
                    tuple(warnings),
                    last,
                )
            if await self.hash_at(head.seq) != head.hash:
                return ChainCheck(
                    False,
                    last.seq,
                    head.seq,
                    f"entry {head.seq} does not carry the hash {name} records:"
                    " the chain was recomputed or replaced",
                    tuple(said),
                    tuple(warnings),
                    last,
                )
            if last.seq > head.seq:
                said.append(
                    f"{last.seq - head.seq} entries after {name}'s ({head.seq}) chain"
                    " correctly (written since, or a crash between a commit and the head)"
                )
        return ChainCheck(True, last.seq, None, "ok", tuple(said), tuple(warnings), last)
