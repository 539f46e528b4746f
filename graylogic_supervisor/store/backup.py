"""Backup and restore of the store file, safe while the daemon writes.

``backup`` copies through SQLite's online backup API from a connection that holds
one read transaction for the whole copy: in WAL mode a reader never blocks the
daemon's writer, and the copy is one consistent snapshot (without the held
transaction, every commit the daemon makes would restart the copy). It copies a
few pages at a time with a short pause between steps, writes a temporary file in
the destination's directory, fsyncs it and renames it into place. The audit
head file is read *before* the snapshot and written beside the backup, so a
restore can tell a backup's tail was cut off.

``restore`` copies the backup beside the live store and checks that copy
(``PRAGMA integrity_check``, then the audit chain as ``audit verify`` does)
before it touches the live file; it refuses while a daemon holds the state
directory, and keeps the old file (with its WAL and head) as
``<name>.before-restore-<timestamp>``.

Blocking work (``backup``, the copies, the integrity check): call ``backup``
from a CLI process or a worker thread, never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.statelock import StateDirInUse, StateLock
from graylogic_supervisor.store.audit import AuditLog, ChainCheck
from graylogic_supervisor.store.audit_head import ChainHead, HeadFile, HeadFileError, head_path
from graylogic_supervisor.store.database import Database

PAGES_PER_STEP = 256
"""Pages copied per step (1 MiB at 4 KiB pages)."""
PAUSE_S = 0.005
"""The pause between steps: the daemon's reads and commits get the disk in between."""


class RestoreRefused(StoreError):
    """The restore did not happen; the live store is as it was. ``reason`` says why."""

    def __init__(self, backup_file: Path, reason: str) -> None:
        self.backup_file = backup_file
        self.reason = reason
        super().__init__(f"restore of {backup_file} refused: {reason}")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    audit_head: ChainHead | None
    """The live head file's head when the copy began (None: there was none)."""


@dataclass(frozen=True)
class Restored:
    db_path: Path
    kept: Path | None
    """The old store, renamed; None when there was no store to replace."""
    check: ChainCheck


NIGHTLY = re.compile(r"^nightly-\d{8}T\d{6}Z\.db$")
"""The nightly job's backups: the only files its pruning removes."""


def nightly_name(moment: datetime) -> str:
    return f"nightly-{timestamp(moment)}.db"


def prune_nightly(directory: Path, keep: int) -> list[Path]:
    """Remove the oldest nightly backups beyond ``keep`` (with their audit head files);
    returns those removed. Other files (``backup`` by hand, anything else) stay. Blocking."""
    if not directory.is_dir():
        return []
    made = sorted(path for path in directory.iterdir() if NIGHTLY.match(path.name))
    removed = made[: max(0, len(made) - keep)]
    for path in removed:
        path.unlink(missing_ok=True)
        for suffix in (".audit-head", ".audit-head.lock"):
            _sidecar(path, suffix).unlink(missing_ok=True)
    return removed


def timestamp(moment: datetime) -> str:
    """``20261206T202500Z``: sorts, and is safe in a file name."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def backup(
    db_path: Path,
    dest: Path,
    *,
    pages: int = PAGES_PER_STEP,
    pause_s: float = PAUSE_S,
) -> BackupResult:
    """Copy the store at ``db_path`` to ``dest`` (and its audit head to ``dest``'s).

    Blocking on purpose: it paces itself with ``time.sleep`` between steps so the
    daemon's writer is never held long. The CLI calls it in its own process; code on an
    event loop must run it in a thread."""
    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}")
    started = time.monotonic()
    live_head = _read_head(db_path)  # before the snapshot: the copy has at least this
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.tmp")
    temp.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            source.execute("BEGIN")  # one read transaction: one snapshot for every step
            source.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            target = sqlite3.connect(temp, isolation_level=None)
            try:
                source.backup(target, pages=pages, progress=lambda *_: time.sleep(pause_s))
                # the copy is a plain file on its own: no WAL beside it to lose
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
            source.execute("COMMIT")
        finally:
            source.close()
        _fsync(temp)
        temp.replace(dest)
        _fsync(dest.parent)
    except sqlite3.Error as exc:
        raise StoreError(f"backup of {db_path} failed: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    dest_head = head_path(dest)
    if live_head is not None and dest_head is not None:
        dest_head.unlink(missing_ok=True)  # an older backup's, under the same name
        HeadFile(dest_head).create(live_head)
    return BackupResult(dest, dest.stat().st_size, time.monotonic() - started, live_head)


async def restore(
    backup_file: Path,
    db_path: Path,
    *,
    state_dir: Path,
    now: datetime,
    actor: str,
) -> Restored:
    """Replace the store at ``db_path`` with ``backup_file`` once the copy checks out;
    the restore, by ``actor``, is the restored audit log's newest entry.

    Raises ``RestoreRefused`` (the live store untouched) when the state directory is
    in use, the backup is not an intact SQLite file, or its audit chain is broken.
    """
    if not backup_file.is_file():
        raise RestoreRefused(backup_file, "no such file")
    lock = StateLock(state_dir, now)
    try:
        lock.acquire()  # no daemon runs on this store, and none starts while we swap
    except StateDirInUse as exc:
        raise RestoreRefused(backup_file, f"{exc}; stop the daemon first") from exc
    try:
        restored = await _restore_locked(backup_file, db_path, now)
        async with Database(db_path) as db:  # still under the lock: no daemon yet
            await AuditLog(db).append(
                actor,
                "store.restore",
                str(backup_file),
                {"kept": None if restored.kept is None else str(restored.kept)},
                now=now,
            )
        return restored
    finally:
        lock.release()


async def _restore_locked(backup_file: Path, db_path: Path, now: datetime) -> Restored:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    candidate = db_path.with_name(f"{db_path.name}.restore-tmp")
    try:
        await asyncio.to_thread(_prepare_candidate, backup_file, candidate)
        check = await _verify_chain(backup_file, candidate)
        kept = await asyncio.to_thread(_swap, candidate, db_path, check, now)
    finally:
        _remove_store_files(candidate)
    return Restored(db_path, kept, check)


def _prepare_candidate(backup_file: Path, candidate: Path) -> None:
    """Copy the backup and its head beside the live store, and check the copy's pages."""
    _remove_store_files(candidate)
    shutil.copyfile(backup_file, candidate)
    _fsync(candidate)
    problems = _integrity_problems(candidate)
    if problems:
        raise RestoreRefused(backup_file, f"integrity check failed: {'; '.join(problems[:5])}")
    source_head, candidate_head = head_path(backup_file), head_path(candidate)
    if source_head is not None and candidate_head is not None and source_head.exists():
        shutil.copyfile(source_head, candidate_head)


def _integrity_problems(path: Path) -> list[str]:
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    results = [str(row[0]) for row in rows]
    return [] if results == ["ok"] else results


async def _verify_chain(backup_file: Path, candidate: Path) -> ChainCheck:
    try:
        async with Database(candidate) as db:  # migrates the copy, never the backup
            check = await AuditLog(db).verify()
    except StoreError as exc:
        raise RestoreRefused(backup_file, f"cannot open it as a store: {exc}") from exc
    if not check.ok:
        where = f" at entry {check.first_bad_seq}" if check.first_bad_seq is not None else ""
        raise RestoreRefused(backup_file, f"audit chain broken{where}: {check.problem}")
    return check


def _swap(candidate: Path, db_path: Path, check: ChainCheck, now: datetime) -> Path | None:
    """Keep the old store (file, WAL, head) under a new name; put the candidate in place."""
    _without_wal(candidate)  # its checked content in the one file that moves
    kept: Path | None = None
    live_head = head_path(db_path)
    if db_path.exists():
        kept = _free_name(db_path.with_name(f"{db_path.name}.before-restore-{timestamp(now)}"))
        db_path.replace(kept)
        # its WAL may hold commits not yet checkpointed: it goes with the file it belongs to
        _move_if_there(_sidecar(db_path, "-wal"), _sidecar(kept, "-wal"))
        _sidecar(db_path, "-shm").unlink(missing_ok=True)  # an index of the WAL, rebuilt
        kept_head = head_path(kept)
        if live_head is not None and kept_head is not None:
            _move_if_there(live_head, kept_head)
    elif live_head is not None:
        live_head.unlink(missing_ok=True)
    candidate.replace(db_path)
    if live_head is not None and check.head is not None and check.head.seq > 0:
        HeadFile(live_head).create(check.head)  # the restored chain's verified head
    _fsync(db_path.parent)
    return kept


def _without_wal(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")  # checkpoints, then drops the WAL
    finally:
        connection.close()


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``...: a second restore never overwrites a kept store."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _read_head(db_path: Path) -> ChainHead | None:
    path = head_path(db_path)
    if path is None:
        return None
    try:
        return HeadFile(path).read()
    except HeadFileError:
        return None  # unreadable: the backup carries none, and `audit verify` says why


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _move_if_there(source: Path, target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        source.replace(target)


def _remove_store_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".audit-head", ".audit-head.lock"):
        _sidecar(path, suffix).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """A file's bytes, or a directory's entries (a rename), onto the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
