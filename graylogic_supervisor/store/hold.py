"""Writes held in memory, in order, while the store cannot commit them.

An essential component (``policy.essentials``, the broker) must be recovered
even when its records cannot be written at once: the disk is full past the
store's reserve, or another process holds the database's write lock past a
short wait. Those records (failure, incident, verdicts, execution and steps)
are then kept here, in the order they were made, and the write returns as if
done. The database replays them, oldest first, in one transaction, as soon as
it can write again; nothing is replayed twice because an entry leaves the hold
only once its transaction has committed.

Which writes may be held is decided by the task that makes them:
``record_as(component)`` marks the rest of the current task (an incident's own
task) as recording for that component, and ``recording_for`` does the same
for a block; a ``ContextVar`` because it is task-local, so concurrent
incidents never see each other's mark. The database holds a write only when
the component it is told about is essential.

What this costs, documented: held rows are not visible to reads (the CLI, the
admin page, the daemon itself) until they are flushed, and a crash or stop
while rows are held loses those rows and only those (everything committed
before stays). The hold is bounded by rows and bytes; past the bound, writes
behave as they do without a hold (they wait for room or fail) and that is
logged once per episode.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiosqlite

logger = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]

_recording_for: ContextVar[str | None] = ContextVar("graylogic_recording_for", default=None)


def record_as(component: str) -> None:
    """From here to the end of the current task, writes are ``component``'s records."""
    _recording_for.set(component)


@contextmanager
def recording_for(component: str) -> Iterator[None]:
    """Writes inside the block are ``component``'s records."""
    token = _recording_for.set(component)
    try:
        yield
    finally:
        _recording_for.reset(token)


def recording_component() -> str | None:
    return _recording_for.get()


class HeldRowId(int):
    """The row id a held INSERT returns: a negative stand-in until the row is written.

    Later writes that pass it (a step's UPDATE by its row id) are held behind the
    INSERT, and rewritten with the real id when they are replayed or, once the
    INSERT has landed, when they are made.
    """

    written_as: int | None

    def __new__(cls, number: int) -> HeldRowId:
        instance = super().__new__(cls, -number)
        instance.written_as = None
        return instance


def unresolved(params: Params) -> bool:
    """Whether ``params`` name a held row that is not written yet."""
    values = params.values() if isinstance(params, dict) else params
    return any(isinstance(v, HeldRowId) and v.written_as is None for v in values)


def resolve(params: Params, landed: Mapping[int, int] | None = None) -> Params:
    """``params`` with every held row id replaced by the real one (``landed``: ids that
    were written in the transaction under way, not yet committed)."""

    def real(value: Any) -> Any:
        if not isinstance(value, HeldRowId):
            return value
        if value.written_as is not None:
            return value.written_as
        if landed is not None and int(value) in landed:
            return landed[int(value)]
        return int(value)  # its INSERT was dropped: the stand-in matches no row

    if not any(isinstance(value, HeldRowId) for value in _values(params)):
        return params
    if isinstance(params, dict):
        return {key: real(value) for key, value in params.items()}
    return tuple(real(value) for value in params)


@dataclass(frozen=True)
class HeldWrite:
    sql: str
    params: Params
    row_id: HeldRowId  # what an INSERT returns while held (an UPDATE ignores it)
    size: int

    @property
    def inserts(self) -> bool:
        return self.sql.lstrip()[:7].upper() in ("INSERT ", "REPLACE")


@dataclass(frozen=True)
class HoldLimits:
    max_rows: int = 1000
    max_bytes: int = 1024 * 1024


class WriteHold:
    """A bounded, ordered list of writes that could not be committed yet."""

    def __init__(self, limits: HoldLimits) -> None:
        self.limits = limits
        self._items: list[HeldWrite] = []
        self._bytes = 0
        self._ids = 0
        self._refused_logged = False
        self.held_total = 0
        self.flushed_total = 0
        self.dropped_total = 0
        self.reason = ""  # why the rows now held could not be written

    def __len__(self) -> int:
        return len(self._items)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def add(self, sql: str, params: Params, reason: str) -> HeldWrite | None:
        """Hold one write; None (and logged once) when the hold is at its bound."""
        items = self.add_all([(sql, params)], reason)
        return items[0] if items is not None else None

    def add_all(self, writes: Sequence[tuple[str, Params]], reason: str) -> list[HeldWrite] | None:
        """Hold writes that go together, in order: all of them, or (at the bound) none."""
        sizes = [len(sql) + sum(len(str(v)) for v in _values(params)) for sql, params in writes]
        limits = self.limits
        if (
            len(self._items) + len(writes) > limits.max_rows
            or self._bytes + sum(sizes) > limits.max_bytes
        ):
            if not self._refused_logged:
                self._refused_logged = True
                logger.error(
                    "the store's hold is full (%d rows, %d bytes): essential records now wait"
                    " for the store like any other (%s)",
                    len(self._items),
                    self._bytes,
                    self.reason,
                )
            return None
        if not self._items:
            self.reason = reason
            logger.error(
                "the store cannot write (%s): an essential component's records are held in"
                " memory until it can",
                reason,
            )
        items = []
        for (sql, params), size in zip(writes, sizes, strict=True):
            self._ids += 1
            items.append(HeldWrite(sql, params, HeldRowId(self._ids), size))
        self._items.extend(items)
        self._bytes += sum(sizes)
        self.held_total += len(items)
        return items

    def snapshot(self) -> list[HeldWrite]:
        return list(self._items)

    def landed(
        self,
        items: Sequence[HeldWrite],
        landed: Mapping[int, int],
        dropped: Sequence[tuple[HeldWrite, str]] = (),
    ) -> None:
        """``items`` (the oldest held) are committed, but for ``dropped`` (writes that can
        never be written: not a full disk, not a lock); their rows get their real ids."""
        for item, why in dropped:
            logger.error("a held write could not be written and is dropped: %s (%s)", why, item.sql)
        for item in items:
            item.row_id.written_as = landed.get(int(item.row_id))
        self._drop_front(len(items))
        self.dropped_total += len(dropped)
        self.flushed_total += len(items) - len(dropped)
        if not self._items:
            self._refused_logged = False
            logger.info(
                "the store writes again: %d held rows written in order (%d since start)",
                len(items) - len(dropped),
                self.flushed_total,
            )

    def _drop_front(self, count: int) -> None:
        gone, self._items = self._items[:count], self._items[count:]
        self._bytes -= sum(item.size for item in gone)

    def lost(self) -> int:
        """At close: what is still held is lost; said so, and counted."""
        count = len(self._items)
        if count:
            logger.error(
                "the store closes with %d held rows it could not write (%s): they are lost",
                count,
                self.reason,
            )
            self.dropped_total += count
            self._drop_front(count)
        return count


async def replay(
    conn: aiosqlite.Connection,
    items: Sequence[HeldWrite],
    transient: Callable[[sqlite3.Error], bool],
) -> tuple[dict[int, int], list[tuple[HeldWrite, str]]]:
    """The held writes, oldest first, in the transaction the caller began.

    Returns the rows the INSERTs wrote (stand-in to real id) and the writes that
    can never succeed, each with why: its statement alone is undone and the rest
    go on. A ``transient`` error (a full disk, a lock) is raised: all wait.
    """
    landed: dict[int, int] = {}
    dropped: list[tuple[HeldWrite, str]] = []
    for item in items:
        try:
            cursor = await conn.execute(item.sql, resolve(item.params, landed))
        except sqlite3.Error as exc:
            if transient(exc) or not conn.in_transaction:
                raise
            dropped.append((item, str(exc)))
            continue
        if item.inserts and cursor.lastrowid is not None:
            landed[int(item.row_id)] = cursor.lastrowid
    return landed, dropped


def _values(params: Params) -> Iterator[Any]:
    yield from params.values() if isinstance(params, dict) else params
