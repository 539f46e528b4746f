"""A site's own SQLite files (``actions.databases``): integrity check and vacuum.

Not the supervisor's store: each call opens the named file on a connection of
its own and closes it, so the supervisor's single writer is never held. VACUUM
on our own store is deliberately not offered: it would hold that writer (every
record of the running supervision) for as long as it rewrites the file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from graylogic_supervisor.errors import StoreError

BUSY_TIMEOUT_S = 5.0


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path))}?mode={mode}"


async def check_site_database(path: Path, *, quick: bool) -> str:
    """``ok``, or SQLite's first complaint; the file is opened read-only (never created)."""
    if not path.is_file():  # checked first: a failed connect leaves aiosqlite's thread behind
        raise StoreError(f"{path}: no such file")
    try:
        async with aiosqlite.connect(
            _uri(path, "ro"), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        ) as conn:
            cursor = await conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check")
            row = await cursor.fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from exc
    return str(row[0]) if row else "no answer"


@dataclass(frozen=True)
class Vacuumed:
    bytes_before: int
    bytes_after: int


async def vacuum_site_database(path: Path) -> Vacuumed:
    """Rebuild the file without its free pages; it must exist (never created here)."""
    try:
        before = path.stat().st_size
        async with aiosqlite.connect(
            _uri(path, "rw"), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        ) as conn:
            await conn.execute("VACUUM")
        after = path.stat().st_size
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{path}: {exc}") from exc
    return Vacuumed(before, after)
