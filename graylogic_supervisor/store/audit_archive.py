"""Old audit entries moved out of the table into compressed archive segments.

A segment is a gzip file of JSON lines in ``<store dir>/audit-archive``: a header
(first and last sequence numbers, the hash the first entry chains from, the last
entry's hash) and then each entry exactly as stored. The order of work is what
makes a crash harmless: the segment is written to a temporary file, fsynced,
renamed into place and its directory fsynced; only then is the segment recorded
in ``audit_archive`` and the entries it holds deleted (the table's trigger allows
deleting only entries an archive record covers). A crash before the record
leaves an extra file that the next run overwrites; one between the record and the
last delete leaves entries that the next run deletes.

The last archived entry's hash is the chain's anchor: the first live entry's
``prev_hash``. Verification follows the segments from the genesis, one after the
other, then the live rows from that anchor: a segment changed, missing or out of
place, or a live chain that does not start where the archive ends, is reported.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.store.audit_head import EMPTY, ChainHead
from graylogic_supervisor.store.database import Database

DIRECTORY = "audit-archive"
SEGMENT = re.compile(r"^segment-(\d{12})-(\d{12})\.jsonl\.gz$")
COLUMNS = ("seq", "at", "actor", "action", "subject", "detail", "prev_hash", "hash")
SEGMENT_MAX = 10_000
"""Entries per segment at most (a segment is read whole when verified)."""
DELETE_BATCH = 500
"""Archived entries deleted per transaction: the writer is never held long."""


class ArchiveRefused(SupervisorError):
    """Nothing was archived (a chain that does not verify, a file that cannot be written):
    the entries stay in the table; the next run tries again."""


@dataclass(frozen=True)
class Segment:
    """One archive file: entries ``first``..``last`` chaining from ``prev_hash``."""

    path: Path
    first: int
    last: int


@dataclass(frozen=True)
class SegmentRead:
    """A segment's header and entries (rows as dicts with the table's columns)."""

    header: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Archived:
    """What one archive run did: the segment written (None when nothing was old enough)."""

    segment: Path | None
    entries: int
    anchor: ChainHead


def archive_dir(database: Path) -> Path | None:
    """``<store dir>/audit-archive``; None for an in-memory store."""
    name = str(database)
    if name == ":memory:" or name.startswith("file::memory:") or "mode=memory" in name:
        return None
    return database.parent / DIRECTORY


def segment_name(first: int, last: int) -> str:
    return f"segment-{first:012d}-{last:012d}.jsonl.gz"


def segments(directory: Path) -> list[Segment]:
    """The segment files in ``directory``, by first sequence number. Blocking."""
    found: list[Segment] = []
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        match = SEGMENT.match(path.name)
        if match:
            found.append(Segment(path, int(match[1]), int(match[2])))
    return sorted(found, key=lambda segment: (segment.first, segment.last))


def write_segment(directory: Path, rows: Sequence[dict[str, Any]], prev_hash: str) -> Path:
    """Atomically: a temporary file, fsync, rename, fsync of the directory. Blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    first, last = int(rows[0]["seq"]), int(rows[-1]["seq"])
    header = {
        "kind": "audit-archive-segment",
        "first_seq": first,
        "last_seq": last,
        "prev_hash": prev_hash,
        "last_hash": rows[-1]["hash"],
        "entries": len(rows),
    }
    target = directory / segment_name(first, last)
    temporary = target.with_name(target.name + ".tmp")
    with temporary.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
            packed.write((json.dumps(header, sort_keys=True) + "\n").encode())
            for row in rows:
                packed.write((json.dumps(row, sort_keys=True) + "\n").encode())
        raw.flush()
        os.fsync(raw.fileno())
    temporary.replace(target)
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)
    return target


def drop_unrecorded(directory: Path, anchor_seq: int) -> None:
    """Segments past the anchor: a crash left them before their record (their entries
    are all still in the table). Blocking."""
    for segment in segments(directory):
        if segment.first > anchor_seq:
            segment.path.unlink()


def read_segment(path: Path) -> SegmentRead:
    """Blocking. ``ValueError`` for a file that is not a readable segment."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            parsed = [json.loads(line) for line in lines if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not a readable segment: {exc}") from exc
    if not parsed or not isinstance(parsed[0], dict) or "last_hash" not in parsed[0]:
        raise ValueError(f"{path.name} has no segment header")
    rows = parsed[1:]
    if not all(isinstance(row, dict) and set(COLUMNS) <= set(row) for row in rows):
        raise ValueError(f"{path.name} holds a line that is not an audit entry")
    return SegmentRead(parsed[0], rows)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


class ArchiveRecords:
    """The ``audit_archive`` table: the segments written, and the chain's anchor."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def anchor(self) -> ChainHead:
        """The last archived entry (the live chain starts after it); empty if none."""
        row = await self._db.fetchone(
            "SELECT last_seq, last_hash FROM audit_archive ORDER BY last_seq DESC LIMIT 1"
        )
        return EMPTY if row is None else ChainHead(int(row["last_seq"]), str(row["last_hash"]))

    async def recorded(self) -> list[dict[str, Any]]:
        rows = await self._db.fetchall("SELECT * FROM audit_archive ORDER BY last_seq")
        return [dict(row) for row in rows]

    async def archive(
        self, directory: Path, before: datetime, now: datetime, *, limit: int = SEGMENT_MAX
    ) -> Archived:
        """Move the entries older than ``before`` (never the newest entry: it is the
        head) into one new segment, at most ``limit`` of them; returns what it did."""
        anchor = await self.anchor()
        await self._delete_archived(anchor)
        rows = await self._db.fetchall(
            f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq > ? AND at < ?"  # noqa: S608
            " AND seq < (SELECT MAX(seq) FROM audit_log) ORDER BY seq LIMIT ?",
            (anchor.seq, isoformat(before), limit),
        )
        # only a contiguous run from the anchor: an entry is never archived past a gap
        entries = [dict(row) for row in rows]
        for index, row in enumerate(entries):
            if int(row["seq"]) != anchor.seq + index + 1:
                entries = entries[:index]
                break
        if not entries:
            return Archived(None, 0, anchor)
        if entries[0]["prev_hash"] != anchor.hash:
            raise ArchiveRefused(
                f"audit entry {entries[0]['seq']} does not chain from the archive's anchor:"
                " run `audit verify`; nothing archived"
            )
        try:
            await asyncio.to_thread(drop_unrecorded, directory, anchor.seq)
            path = await asyncio.to_thread(write_segment, directory, entries, anchor.hash)
            digest = await asyncio.to_thread(file_sha256, path)
        except OSError as exc:  # a full disk, a read-only directory: the entries stay
            raise ArchiveRefused(f"audit archive segment not written: {exc}") from exc
        last = ChainHead(int(entries[-1]["seq"]), str(entries[-1]["hash"]))
        await self._db.execute(
            "INSERT INTO audit_archive (last_seq, first_seq, last_hash, file, sha256,"
            " archived_at) VALUES (?, ?, ?, ?, ?, ?)",
            (last.seq, entries[0]["seq"], last.hash, path.name, digest, isoformat(now)),
        )
        await self._delete_archived(last)
        return Archived(path, len(entries), last)

    async def _delete_archived(self, anchor: ChainHead) -> None:
        """The entries up to ``anchor`` still in the table, a batch per transaction."""
        while True:
            deleted = await self._db.execute(
                "DELETE FROM audit_log WHERE seq IN"
                " (SELECT seq FROM audit_log WHERE seq <= ? ORDER BY seq LIMIT ?)",
                (anchor.seq, DELETE_BATCH),
            )
            if deleted < DELETE_BATCH:
                return
            await asyncio.sleep(0)
