"""The failure memory in SQLite: one row per remembered failure, the learned patterns, and
each learned fix's record of its own runs.

A record is stored whole, as the JSON of its ``FailureRecord``. The columns
beside it (error id, component, time, outcome, fix, count) are copies, there so
that look-ups and consolidation can filter without parsing every record; they
are always written from the record in the same statement, so they cannot
disagree with it.

The outcome column follows one rule (``outcome_of``):

- a resolution whose ``fixed_by`` is ``"supervisor"`` → ``resolved_by_supervisor``;
- a resolution by anyone else (a named person) → ``resolved_by_human``;
- no resolution, but at least one finished attempt (any status but ``running``)
  → ``unresolved``: something was tried and nothing fixed it (yet);
- otherwise → ``open``: detected, nothing finished yet.

A row whose JSON cannot be read back is reported, never silently lost or
dropped: ``get`` raises ``CorruptRecordError`` naming it, ``all_records`` logs
it once and loads the others, and nothing here deletes it behind the reader's
back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import aiosqlite
from pydantic import TypeAdapter, ValidationError

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.memory import Attempt, FailureRecord, Resolution
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.executions import resolve_by_hand_in

logger = logging.getLogger(__name__)

Outcome = Literal["open", "resolved_by_supervisor", "resolved_by_human", "unresolved"]
SUPERVISOR = "supervisor"  # Resolution.fixed_by when no human was involved
RUNNING = "running"  # the one attempt status that is not finished

_STRINGS: TypeAdapter[list[str]] = TypeAdapter(list[str])

_UPSERT = (
    "INSERT INTO failure_memory (failure_id, error_id, component, detected_at, record, outcome,"
    " fix_action, fix_target, count, compressed, updated_at)"
    " VALUES (:failure_id, :error_id, :component, :detected_at, :record, :outcome,"
    " :fix_action, :fix_target, :count, :compressed, :updated_at)"
    " ON CONFLICT(failure_id) DO UPDATE SET error_id = excluded.error_id,"
    " component = excluded.component, detected_at = excluded.detected_at,"
    " record = excluded.record, outcome = excluded.outcome, fix_action = excluded.fix_action,"
    " fix_target = excluded.fix_target, count = excluded.count, updated_at = excluded.updated_at"
)
_SELECT_STORED = (
    "SELECT failure_id, error_id, record, outcome, compressed, updated_at FROM failure_memory"
)
# A pattern with the failures its members stand for (see ``StoredPattern.occurrences``);
# members that are not valid JSON are left to the parser, which names the row.
_SELECT_PATTERNS = (
    "SELECT p.*, CASE WHEN json_valid(p.members) THEN (SELECT COALESCE(SUM(COALESCE(f.count, 1)),"
    " 0) FROM json_each(p.members) AS m LEFT JOIN failure_memory AS f"
    " ON f.failure_id = m.value) ELSE 0 END AS occurrences FROM memory_patterns AS p"
)
# Only consolidation decides what is compressed; every other write keeps the flag.
_UPSERT_SETTING_COMPRESSED = _UPSERT + ", compressed = excluded.compressed"


class CorruptRecordError(StoreError):
    """A failure memory row whose JSON is not a valid ``FailureRecord``."""

    def __init__(self, failure_id: str, reason: str) -> None:
        self.failure_id = failure_id
        self.reason = reason
        super().__init__(f"failure memory record {failure_id} is corrupt: {reason}")


class AlreadyResolvedError(StoreError):
    """A resolution refused because the record has one (a person may replace it on purpose)."""

    def __init__(self, failure_id: str, resolution: Resolution) -> None:
        self.failure_id = failure_id
        self.resolution = resolution
        super().__init__(f"failure {failure_id} is already resolved by {resolution.fixed_by}")


class CorruptPatternError(StoreError):
    """A learned pattern row whose tokens, members or times cannot be read."""

    def __init__(self, pattern_id: str, reason: str) -> None:
        self.pattern_id = pattern_id
        self.reason = reason
        super().__init__(f"memory pattern {pattern_id} is corrupt: {reason}")


def outcome_of(record: FailureRecord) -> Outcome:
    """The outcome column's value for a record (the rule is in the module docstring)."""
    if record.resolution is not None:
        if record.resolution.fixed_by == SUPERVISOR:
            return "resolved_by_supervisor"
        return "resolved_by_human"
    if any(attempt.status != RUNNING for attempt in record.attempts):
        return "unresolved"
    return "open"


@dataclass(frozen=True)
class StoredRecord:
    """A record with what the row says about it beyond the record itself."""

    record: FailureRecord
    outcome: Outcome
    compressed: bool
    updated_at: datetime


@dataclass(frozen=True)
class StoredPattern:
    """One row of ``memory_patterns``, its JSON columns parsed."""

    id: str
    error_id: str
    component: str
    tokens: frozenset[str]
    fix_action: str
    fix_target: str | None
    members: tuple[str, ...]  # failure ids
    created_at: datetime
    times_matched: int
    times_resolved: int
    last_matched: datetime | None
    flagged_for_review: bool
    flag_reason: str | None
    # the failures its members stand for (a merged record counts what it absorbed; a member
    # no longer stored counts one): the history behind its fix, as the memory weighs it
    occurrences: int = 0

    @property
    def success_rate(self) -> float | None:
        """Share of matches the fix resolved; None before the first match (no evidence yet)."""
        if self.times_matched == 0:
            return None
        return self.times_resolved / self.times_matched


@dataclass(frozen=True)
class LearnedFixUse:
    """One learned fix's own record (a row of ``learned_fix_uses``): its runs ahead of the
    playbook, whatever evidence chose it, and how they went."""

    playbook_id: str
    ran_first: int
    resolved: int
    failed_in_a_row: int  # since its last success
    last_used: datetime | None

    @property
    def success_rate(self) -> float | None:
        """Share of its runs that resolved the failure; None before the first."""
        if self.ran_first == 0:
            return None
        return self.resolved / self.ran_first


def _problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg']})"
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"not a valid FailureRecord: {where}: {first['msg']}{more}"


def _parse_record(failure_id: str, text: str) -> FailureRecord:
    try:
        record = FailureRecord.model_validate_json(text)
    except ValidationError as exc:
        raise CorruptRecordError(failure_id, _problem(exc)) from exc
    if record.context.failure_id != failure_id:
        raise CorruptRecordError(
            failure_id, f"its JSON is the record of failure {record.context.failure_id}"
        )
    return record


def _stored_record(row: Row) -> StoredRecord:
    record = _parse_record(row["failure_id"], row["record"])
    return StoredRecord(
        record=record,
        outcome=row["outcome"],
        compressed=bool(row["compressed"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _parse_pattern(row: Row) -> StoredPattern:
    try:
        tokens = _STRINGS.validate_json(row["tokens"])
        members = _STRINGS.validate_json(row["members"])
        created_at = datetime.fromisoformat(row["created_at"])
        last_matched = (
            None if row["last_matched"] is None else datetime.fromisoformat(row["last_matched"])
        )
    except (ValidationError, ValueError) as exc:
        raise CorruptPatternError(row["id"], str(exc).splitlines()[0]) from exc
    return StoredPattern(
        id=row["id"],
        error_id=row["error_id"],
        component=row["component"],
        tokens=frozenset(tokens),
        fix_action=row["fix_action"],
        fix_target=row["fix_target"],
        members=tuple(members),
        created_at=created_at,
        times_matched=row["times_matched"],
        times_resolved=row["times_resolved"],
        last_matched=last_matched,
        flagged_for_review=bool(row["flagged_for_review"]),
        flag_reason=row["flag_reason"],
        occurrences=row["occurrences"],
    )


def _learned_fix_use(row: Row) -> LearnedFixUse:
    return LearnedFixUse(
        playbook_id=row["playbook_id"],
        ran_first=row["ran_first"],
        resolved=row["resolved"],
        failed_in_a_row=row["failed_in_a_row"],
        last_used=None if row["last_used"] is None else datetime.fromisoformat(row["last_used"]),
    )


def _row_values(record: FailureRecord, now: datetime, compressed: bool) -> dict[str, Any]:
    resolution = record.resolution
    return {
        "failure_id": record.context.failure_id,
        "error_id": record.context.error_id,
        "component": record.context.component,
        "detected_at": isoformat(record.context.detected_at),
        "record": record.model_dump_json(),
        "outcome": outcome_of(record),
        "fix_action": None if resolution is None else resolution.fix_action,
        "fix_target": None if resolution is None else resolution.fix_target,
        "count": record.count,
        "compressed": int(compressed),
        "updated_at": isoformat(now),
    }


async def _write(
    conn: aiosqlite.Connection, record: FailureRecord, now: datetime, compressed: bool | None
) -> None:
    """Upsert; ``compressed=None`` keeps an existing row's flag (a new row is uncompressed)."""
    sql = _UPSERT if compressed is None else _UPSERT_SETTING_COMPRESSED
    await conn.execute(sql, _row_values(record, now, bool(compressed)))


async def _read(conn: aiosqlite.Connection, failure_id: str) -> FailureRecord | None:
    async with conn.execute(
        "SELECT record FROM failure_memory WHERE failure_id = ?", (failure_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else _parse_record(failure_id, row[0])


class MemoryRepository:
    """The ``failure_memory``, ``memory_patterns`` and ``learned_fix_uses`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- records --------------------------------------------------------------

    async def save(self, record: FailureRecord, now: datetime) -> None:
        """Insert the record, or replace the one with its failure id.

        A replaced row keeps its compressed flag: only consolidation sets it.
        """
        await self._db.execute(_UPSERT, _row_values(record, now, compressed=False))

    async def get(self, failure_id: str) -> FailureRecord | None:
        """The record, None if unknown; raises ``CorruptRecordError`` if it cannot be read."""
        row = await self._db.fetchone(
            "SELECT record FROM failure_memory WHERE failure_id = ?", (failure_id,)
        )
        return None if row is None else _parse_record(failure_id, row["record"])

    async def stored_records(self) -> list[StoredRecord]:
        """Every readable record, oldest first, with its outcome and compressed flag.

        An unreadable row is skipped with one WARNING naming it, so one bad row
        never hides the rest of the memory; the row itself is left in place for
        a person to look at.
        """
        return self._readable(
            await self._db.fetchall(f"{_SELECT_STORED} ORDER BY detected_at, failure_id")
        )

    async def all_records(self) -> list[FailureRecord]:
        """Every readable record, oldest first: what the in-memory index is built from."""
        return [stored.record for stored in await self.stored_records()]

    async def updated_since(self, since: datetime) -> list[FailureRecord]:
        """Readable records written at or after ``since``, oldest write first.

        How a process keeps its index current with what another process (the
        CLI recording a technician's resolution) wrote; unreadable rows are
        skipped as in ``stored_records``.
        """
        rows = await self._db.fetchall(
            f"{_SELECT_STORED} WHERE updated_at >= ? ORDER BY updated_at, failure_id",
            (isoformat(since),),
        )
        return [stored.record for stored in self._readable(rows)]

    @staticmethod
    def _readable(rows: Iterable[Row]) -> list[StoredRecord]:
        loaded: list[StoredRecord] = []
        for row in rows:
            try:
                loaded.append(_stored_record(row))
            except CorruptRecordError as exc:
                logger.warning(
                    "skipping failure memory record %s: %s",
                    exc.failure_id,
                    exc.reason,
                    extra={"error_id": row["error_id"]},
                )
        return loaded

    async def add_attempt(self, failure_id: str, attempt: Attempt, now: datetime) -> bool:
        """Add an attempt (replacing one with the same execution id); False if unknown."""
        async with self._db.transaction() as conn:
            record = await _read(conn, failure_id)
            if record is None:
                return False
            others = [a for a in record.attempts if a.execution_id != attempt.execution_id]
            updated = record.model_copy(update={"attempts": [*others, attempt]})
            await _write(conn, updated, now, compressed=None)
        return True

    async def resolve(
        self,
        failure_id: str,
        resolution: Resolution,
        now: datetime,
        *,
        replace: bool = True,
        by_hand: bool = False,
    ) -> bool:
        """Record what fixed it; False if unknown. An earlier resolution is replaced, or,
        with ``replace=False``, kept: ``AlreadyResolvedError`` (checked in the same transaction).
        ``by_hand`` (a technician's resolution) also writes it onto the failure's executions
        (``resolve_by_hand_in``), in the same transaction."""
        async with self._db.transaction() as conn:
            record = await _read(conn, failure_id)
            if record is None:
                return False
            if not replace and record.resolution is not None:
                raise AlreadyResolvedError(failure_id, record.resolution)
            updated = record.model_copy(update={"resolution": resolution})
            await _write(conn, updated, now, compressed=None)
            if by_hand:
                await resolve_by_hand_in(conn, failure_id, resolution.what_fixed_it)
        return True

    async def replace(
        self,
        originals: Sequence[FailureRecord],
        replacement: FailureRecord,
        now: datetime,
        *,
        compressed: bool,
    ) -> bool:
        """Write ``replacement`` in place of ``originals``, only if none changed since read.

        For consolidation, which reads the whole memory, decides, then writes:
        an attempt or resolution recorded in between must not be overwritten or
        deleted. ``replacement`` keeps its own failure id, which must be one of
        the originals'; the other originals are deleted. Returns False (nothing
        written) when any original changed or vanished.
        """
        ids = [original.context.failure_id for original in originals]
        if replacement.context.failure_id not in ids:
            raise ValueError(f"{replacement.context.failure_id} replaces none of {ids}")
        async with self._db.transaction() as conn:
            for original in originals:
                if await _read(conn, original.context.failure_id) != original:
                    return False
            await _write(conn, replacement, now, compressed)
            for failure_id in ids:
                if failure_id != replacement.context.failure_id:
                    await conn.execute(
                        "DELETE FROM failure_memory WHERE failure_id = ?", (failure_id,)
                    )
        return True

    async def delete(self, failure_ids: Iterable[str]) -> int:
        """Forget these records; returns how many there were."""
        deleted = 0
        async with self._db.transaction() as conn:
            for failure_id in failure_ids:
                async with conn.execute(
                    "DELETE FROM failure_memory WHERE failure_id = ?", (failure_id,)
                ) as cursor:
                    deleted += cursor.rowcount
        return deleted

    # -- patterns -------------------------------------------------------------

    async def save_pattern(
        self,
        pattern_id: str,
        *,
        error_id: str,
        component: str,
        tokens: Iterable[str],
        fix_action: str,
        fix_target: str | None,
        members: Iterable[str],
        now: datetime,
    ) -> None:
        """Insert a pattern, or update what it is made of.

        Re-extraction refreshes an existing pattern's tokens, fix and members but
        keeps its creation time, its match counters and any review flag: the
        evidence of how well it worked is not reset by being found again.
        """
        await self._db.execute(
            "INSERT INTO memory_patterns (id, error_id, component, tokens, fix_action, fix_target,"
            " members, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET error_id = excluded.error_id,"
            " component = excluded.component, tokens = excluded.tokens,"
            " fix_action = excluded.fix_action, fix_target = excluded.fix_target,"
            " members = excluded.members",
            (
                pattern_id,
                error_id,
                component,
                _STRINGS.dump_json(sorted(set(tokens))).decode(),
                fix_action,
                fix_target,
                _STRINGS.dump_json(list(members)).decode(),
                isoformat(now),
            ),
        )

    async def pattern(self, pattern_id: str) -> StoredPattern | None:
        """The pattern, None if unknown; raises ``CorruptPatternError`` if it cannot be read."""
        row = await self._db.fetchone(f"{_SELECT_PATTERNS} WHERE p.id = ?", (pattern_id,))
        return None if row is None else _parse_pattern(row)

    async def patterns(self) -> list[StoredPattern]:
        """Every readable pattern by id; an unreadable one is skipped with one WARNING."""
        loaded: list[StoredPattern] = []
        for row in await self._db.fetchall(f"{_SELECT_PATTERNS} ORDER BY p.id"):
            try:
                loaded.append(_parse_pattern(row))
            except CorruptPatternError as exc:
                logger.warning(
                    "skipping memory pattern %s: %s",
                    exc.pattern_id,
                    exc.reason,
                    extra={"error_id": row["error_id"]},
                )
        return loaded

    async def record_pattern_use(self, pattern_id: str, resolved: bool, now: datetime) -> bool:
        """Count one match of the pattern and whether its fix resolved it; False if unknown."""
        changed = await self._db.execute(
            "UPDATE memory_patterns SET times_matched = times_matched + 1,"
            " times_resolved = times_resolved + ?, last_matched = ? WHERE id = ?",
            (int(resolved), isoformat(now), pattern_id),
        )
        return changed > 0

    async def record_learned_fix_run(
        self, playbook_id: str, pattern_id: str | None, *, resolved: bool, now: datetime
    ) -> None:
        """One run of a learned fix ahead of the playbook, in one transaction: its own
        record, and the pattern's match counters when a pattern chose it."""
        stamp = isoformat(now)
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO learned_fix_uses (playbook_id, ran_first, resolved, failed_in_a_row,"
                " last_used) VALUES (:id, 1, :ok, 1 - :ok, :now) ON CONFLICT(playbook_id) DO"
                " UPDATE SET ran_first = ran_first + 1, resolved = resolved + :ok,"
                " failed_in_a_row = CASE WHEN :ok THEN 0 ELSE failed_in_a_row + 1 END,"
                " last_used = :now",
                {"id": playbook_id, "ok": int(resolved), "now": stamp},
            )
            if pattern_id is not None:
                await conn.execute(
                    "UPDATE memory_patterns SET times_matched = times_matched + 1,"
                    " times_resolved = times_resolved + ?, last_matched = ? WHERE id = ?",
                    (int(resolved), stamp, pattern_id),
                )

    async def learned_fix_uses(self) -> dict[str, LearnedFixUse]:
        """Every learned fix's own record, by its playbook id."""
        rows = await self._db.fetchall("SELECT * FROM learned_fix_uses ORDER BY playbook_id")
        return {row["playbook_id"]: _learned_fix_use(row) for row in rows}

    async def learned_fix_use(self, playbook_id: str) -> LearnedFixUse | None:
        """One learned fix's record; None before it first ran."""
        row = await self._db.fetchone(
            "SELECT * FROM learned_fix_uses WHERE playbook_id = ?", (playbook_id,)
        )
        return None if row is None else _learned_fix_use(row)

    async def flag_pattern(self, pattern_id: str, reason: str) -> bool:
        """Ask a person to review the pattern, saying why; False if unknown."""
        changed = await self._db.execute(
            "UPDATE memory_patterns SET flagged_for_review = 1, flag_reason = ? WHERE id = ?",
            (reason, pattern_id),
        )
        return changed > 0

    async def delete_patterns(self, pattern_ids: Iterable[str]) -> int:
        """Forget these patterns; returns how many there were."""
        deleted = 0
        async with self._db.transaction() as conn:
            for pattern_id in pattern_ids:
                async with conn.execute(
                    "DELETE FROM memory_patterns WHERE id = ?", (pattern_id,)
                ) as cursor:
                    deleted += cursor.rowcount
        return deleted
