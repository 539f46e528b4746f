"""The one connection that owns the database.

WAL with ``synchronous=FULL``: a committed step survives a power cut, not only a
kill -9 (measured here: 0.28 ms per commit against 0.02 ms with NORMAL; a
recovery writes about six rows). Writes are serialised by a lock so a
multi-statement transaction never interleaves with another coroutine's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from graylogic_supervisor.errors import StoreClosedError, StoreError, StoreFullError
from graylogic_supervisor.store.migrations import MIGRATIONS
from graylogic_supervisor.store.reserve import DiskReserve

logger = logging.getLogger(__name__)

Row = sqlite3.Row
_T = TypeVar("_T")
DISK_ERROR_ID = "ERR-SYS-DISK-001"
_PendingWrite = tuple[
    str, "Sequence[Any] | dict[str, Any]", "asyncio.Future[tuple[int, int | None]]"
]


def is_disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL, whichever extended code or message it came with."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc)


class Database:
    """An aiosqlite connection with migrations, pragmas and serialised writes."""

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str] = MIGRATIONS,
        *,
        reserve: DiskReserve | None = None,
    ) -> None:
        """``reserve`` is freed the first time the disk is found full; ``on_full``, once
        set, is told each time a write finds it full, with whether room was made."""
        self.path = path
        self._migrations = migrations
        self._reserve = reserve
        self.on_full: Callable[[bool], None] | None = None
        self._connection: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._pending: list[_PendingWrite] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        connection.row_factory = sqlite3.Row
        self._connection = connection
        try:
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA foreign_keys=ON",
                "PRAGMA busy_timeout=5000",
            ):
                await connection.execute(pragma)
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Idempotent; using the database afterwards raises ``StoreClosedError``.

        Writes already handed over are committed first.
        """
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await self._flusher
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._connection is None:
            raise StoreClosedError(
                "the store is closed" if self._closed else "the store is not open"
            )
        return self._connection

    async def _migrate(self) -> None:
        conn = self._conn()
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > len(self._migrations):
            raise StoreError(
                f"{self.path} has schema {current},"
                f" newer than this program's {len(self._migrations)}"
            )
        for number in range(current + 1, len(self._migrations) + 1):
            script = self._migrations[number - 1]
            # executescript commits first; the whole migration and its number go in one transaction.
            try:
                await conn.executescript(
                    f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise StoreError(f"migration {number} failed: {exc}") from exc
            logger.info("applied store migration %d", number)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One write, committed before this returns; returns the rowcount."""
        rowcount, _ = await self._write(sql, params)
        return rowcount

    async def insert(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One INSERT, committed before this returns; returns the new row id."""
        _, row_id = await self._write(sql, params)
        if row_id is None:
            raise StoreError("insert returned no row id")
        return row_id

    async def _write(
        self, sql: str, params: Sequence[Any] | dict[str, Any]
    ) -> tuple[int, int | None]:
        """Group commit: writes that arrive while a commit is under way share the next one.

        Each caller still returns only once its own write is committed (durable as
        before); many concurrent executions then pay one disk sync per batch instead
        of one per write. The first waiting writer flushes for everyone queued.
        """
        self._conn()  # a closed store refuses at once
        future: asyncio.Future[tuple[int, int | None]] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, params, future))
        if self._flusher is None or self._flusher.done():
            # Its own task: a caller that is cancelled does not take the others' writes
            # with it (its own write still completes; the store never half-writes).
            self._flusher = asyncio.create_task(self._flush_pending(), name="store-writer")
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self._flush(batch)

    async def _flush(self, batch: list[_PendingWrite]) -> None:
        async with self._write_lock:
            conn = self._conn()
            if len(batch) > 1:
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    results = [await self._run(conn, sql, params) for sql, params, _ in batch]
                    await conn.execute("COMMIT")
                except sqlite3.Error:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                except BaseException as exc:  # the store closing under a batch
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(StoreError(f"write not committed: {exc!r}"))
                    raise
                else:
                    for (_, _, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
                    return
            # one write, or a batch in which one failed: each on its own, with its own result
            for sql, params, future in batch:
                try:
                    result = await self._run_making_room(conn, sql, params)
                except StoreError as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)

    async def _run_making_room(
        self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any]
    ) -> tuple[int, int | None]:
        """One autocommitted write; on a full disk, free the reserve and try once more."""
        for attempt in range(2):
            try:
                return await self._run(conn, sql, params)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                if not is_disk_full(exc):
                    raise StoreError(f"write failed: {exc}") from exc
                room_made = self._make_room()
                if attempt or not room_made:
                    raise StoreFullError(f"write failed: {exc}", room_made=False) from exc
        raise AssertionError("unreachable")

    def _make_room(self) -> bool:
        """The disk is full: give up the reserve (if still held) and say so once per event."""
        room_made = self._reserve is not None and self._reserve.release()
        if room_made:
            logger.error(
                "the disk holding %s is full: released the store's reserve to keep recording",
                self.path,
                extra={"error_id": DISK_ERROR_ID},
            )
        if self.on_full is not None:
            self.on_full(room_made)
        return room_made

    @staticmethod
    async def _run(
        conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any]
    ) -> tuple[int, int | None]:
        # One trip: a finished write's cursor holds no statement (sqlite3 releases it
        # when the write is done), so it needs no second trip to be closed.
        cursor = await conn.execute(sql, params)
        return cursor.rowcount, cursor.lastrowid

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several writes that commit together or not at all.

        On a full disk it rolls back, frees the reserve and raises
        ``StoreFullError``; its ``room_made`` says whether trying again can work
        (``run_transaction`` does that).
        """
        async with self._write_lock:
            conn = self._conn()
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    if is_disk_full(exc):
                        room_made = self._make_room()
                        raise StoreFullError(
                            f"transaction failed: {exc}", room_made=room_made
                        ) from exc
                    raise StoreError(f"transaction failed: {exc}") from exc
                raise

    async def run_transaction(self, body: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """``body`` in a transaction, run a second time if the first found the disk full
        and the reserve made room (records such as the audit chain must not be lost)."""
        try:
            async with self.transaction() as conn:
                return await body(conn)
        except StoreFullError as exc:
            if not exc.room_made:
                raise
        async with self.transaction() as conn:
            return await body(conn)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        """One trip to the database thread (a cursor costs three: execute, fetch, close)."""
        return list(await self._conn().execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        """The first row; for queries by key, which return one row or none."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    async def integrity_check(self, quick: bool = False) -> str:
        """``ok``, or SQLite's first complaint."""
        row = await self.fetchone("PRAGMA quick_check" if quick else "PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"

    async def checkpoint(self) -> tuple[int, int]:
        """Fold the WAL into the database and truncate it; returns (frames in WAL, frames moved)."""
        async with self._write_lock:
            row = await self.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        if row is None or row[0]:
            raise StoreError("checkpoint blocked by a reader")
        return int(row[1]), int(row[2])
