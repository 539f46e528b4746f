"""Consolidation: keep the failure memory small, current and honest as it grows for years.

A controller that runs for a decade sees the same broker hiccup thousands of
times. Remembering each one separately would slow every look-up and drown the
rare failures; forgetting them would lose the evidence of which fix works.
Consolidation, run on a schedule, does four things in this order:

1. **Merge** near-identical records (same error, component, message tokens,
   unhealthy neighbours and fix) into the newest one, which then stands for
   all of them (``count``) and carries all their attempts. Open records (still
   being handled) and compressed ones (which no longer hold what the
   comparison needs) are never merged. An optional extractor of patterns is
   then given the merged memory.
2. **Decay** patterns nobody has matched for a long time, and flag for review
   the ones that keep matching but rarely fix anything.
3. **Compress** old records: drop the bulky context (recent events, other
   components' health) and keep what the failure was, when, what fixed it and
   how often. The message is kept as it was, so message tokens, and with them
   matching, still work. Resources and environment are kept too: they are four
   and three numbers, required by the model, and zeroing them would make the
   record claim measurements nobody took. The ``compressed`` column marks it.
4. **Retention**: forget records resolved by the supervisor after
   ``keep_routine_days`` and records a human had to deal with (or that nobody
   resolved) after ``keep_escalated_days``. Open records are never deleted.

Every rule only acts on what is not yet done, so running twice changes nothing
the second time. Records are read once per run; a row that cannot be read is
logged by the repository and left untouched (never merged, compressed or
deleted here). Writes that depend on a record's content go through
``MemoryRepository.replace``, which refuses if the record changed meanwhile;
such a merge or compression is counted as skipped and tried again next run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.domain.memory import FailureRecord, message_tokens
from graylogic_supervisor.health.monitor import Health
from graylogic_supervisor.store.memory import (
    SUPERVISOR,
    MemoryRepository,
    StoredPattern,
    StoredRecord,
    outcome_of,
)

logger = logging.getLogger(__name__)

# Outcomes a person had to deal with, or that nobody resolved: kept longer, they are rarer
# and teach more.
ESCALATED = frozenset({"resolved_by_human", "unresolved"})

# Given the merged memory, learns patterns from it; returns how many it extracted.
Extract = Callable[[list[FailureRecord]], Awaitable[int]]


@dataclass(frozen=True)
class ConsolidationReport:
    """What each rule did in one run (all zero on a second run)."""

    merge_groups: int = 0  # groups of near-identical records merged into one
    records_merged: int = 0  # records folded into another, and deleted
    merges_skipped: int = 0  # groups that changed while being merged
    patterns_extracted: int | None = None  # None when no extractor was given
    patterns_deleted: int = 0
    patterns_flagged: int = 0
    records_compressed: int = 0
    compressions_skipped: int = 0  # records that changed while being compressed
    routine_deleted: int = 0
    escalated_deleted: int = 0


def merge_key(stored: StoredRecord) -> Hashable | None:
    """What near-identical records share; None for a record that is never merged."""
    if stored.outcome == "open" or stored.compressed:
        return None
    context = stored.record.context
    unhealthy = frozenset(
        name for name, health in context.other_health.items() if health != Health.HEALTHY
    )
    resolution = stored.record.resolution
    fix = (
        None
        if resolution is None
        else (resolution.fix_action, resolution.fix_target, resolution.fixed_by == SUPERVISOR)
    )
    return (context.error_id, context.component, message_tokens(context.message), unhealthy, fix)


def _age_order(record: FailureRecord) -> tuple[datetime, str]:
    return record.context.detected_at, record.context.failure_id


def merge_records(records: Sequence[FailureRecord]) -> FailureRecord:
    """The newest record, standing for all: counts summed, attempts united by execution id."""
    by_age = sorted(records, key=_age_order)
    newest = by_age[-1]
    # Oldest first, so that the newest copy of an attempt seen twice wins.
    attempts = {a.execution_id: a for record in by_age for a in record.attempts}
    return FailureRecord(
        context=newest.context,
        attempts=[attempts[execution_id] for execution_id in sorted(attempts)],
        resolution=newest.resolution,
        count=sum(record.count for record in records),
    )


def compress_record(record: FailureRecord) -> FailureRecord:
    """The record without its bulky context (see the module docstring for what stays)."""
    context = record.context.model_copy(update={"recent_events": [], "other_health": {}})
    return record.model_copy(update={"context": context})


async def consolidate(
    repo: MemoryRepository,
    settings: MemoryConfig,
    now: datetime,
    extract: Extract | None = None,
    *,
    merge: bool = True,
) -> ConsolidationReport:
    """Run the rules in order (merge, extract, decay, compress, retention); see the module.

    The periods and thresholds are the ``memory`` section of the config; ``merge=False``
    leaves near-identical records apart.
    """
    records = {s.record.context.failure_id: s for s in await repo.stored_records()}

    groups, merged, merges_skipped = 0, 0, 0
    if merge:
        groups, merged, merges_skipped = await _merge(repo, records, now)

    extracted = None
    if extract is not None:
        extracted = await extract([stored.record for stored in records.values()])

    patterns_deleted, patterns_flagged = await _decay(repo, settings, now)

    routine, escalated = _expired(records.values(), settings, now)
    compress_before = now - timedelta(days=settings.compress_after_days)
    expired = {*routine, *escalated}
    to_compress = [
        stored
        for failure_id, stored in records.items()
        if not stored.compressed
        and stored.outcome != "open"
        and failure_id not in expired  # about to be deleted: compressing it is wasted work
        and stored.record.context.detected_at < compress_before
    ]
    compressed, compressions_skipped = 0, 0
    for stored in to_compress:
        if await repo.replace(
            [stored.record], compress_record(stored.record), now, compressed=True
        ):
            compressed += 1
        else:
            compressions_skipped += 1

    report = ConsolidationReport(
        merge_groups=groups,
        records_merged=merged,
        merges_skipped=merges_skipped,
        patterns_extracted=extracted,
        patterns_deleted=patterns_deleted,
        patterns_flagged=patterns_flagged,
        records_compressed=compressed,
        compressions_skipped=compressions_skipped,
        routine_deleted=await repo.delete(routine),
        escalated_deleted=await repo.delete(escalated),
    )
    logger.info("failure memory consolidated: %s", report)
    return report


async def _merge(
    repo: MemoryRepository, records: dict[str, StoredRecord], now: datetime
) -> tuple[int, int, int]:
    """Merge each group of near-identical records; updates ``records`` to match the store."""
    groups: defaultdict[Hashable, list[StoredRecord]] = defaultdict(list)
    for stored in records.values():
        key = merge_key(stored)
        if key is not None:
            groups[key].append(stored)
    merged_groups, absorbed, skipped = 0, 0, 0
    for group in groups.values():
        if len(group) < 2:
            continue
        originals = [stored.record for stored in group]
        merged = merge_records(originals)
        if not await repo.replace(originals, merged, now, compressed=False):
            skipped += 1
            continue
        merged_groups += 1
        absorbed += len(group) - 1
        for record in originals:
            del records[record.context.failure_id]
        records[merged.context.failure_id] = StoredRecord(
            record=merged, outcome=outcome_of(merged), compressed=False, updated_at=now
        )
        logger.debug(
            "merged %d records into %s",
            len(group),
            merged.context.failure_id,
            extra={"error_id": merged.context.error_id},
        )
    return merged_groups, absorbed, skipped


def _review_reason(pattern: StoredPattern, settings: MemoryConfig) -> str | None:
    """Why a pattern needs a person's review, or None when it does not."""
    rate = pattern.success_rate
    if (
        pattern.flagged_for_review
        or rate is None
        or pattern.times_matched <= settings.review_min_matches
        or rate >= settings.review_success_below
    ):
        return None
    return (
        f"its fix resolved {pattern.times_resolved} of {pattern.times_matched} matches"
        f" ({rate:.0%}), below {settings.review_success_below:.0%}"
    )


async def _decay(repo: MemoryRepository, settings: MemoryConfig, now: datetime) -> tuple[int, int]:
    """Delete patterns unmatched for too long; flag the ones that rarely help."""
    unmatched_before = now - timedelta(days=settings.pattern_unmatched_days)
    stale: list[str] = []
    flagged = 0
    for pattern in await repo.patterns():
        if (pattern.last_matched or pattern.created_at) < unmatched_before:
            stale.append(pattern.id)
            continue
        reason = _review_reason(pattern, settings)
        if reason is not None and await repo.flag_pattern(pattern.id, reason):
            logger.info(
                "memory pattern %s flagged for review: %s",
                pattern.id,
                reason,
                extra={"error_id": pattern.error_id},
            )
            flagged += 1
    return await repo.delete_patterns(stale), flagged


def _expired(
    records: Iterable[StoredRecord], settings: MemoryConfig, now: datetime
) -> tuple[list[str], list[str]]:
    """Records past retention: (resolved by the supervisor, escalated or unresolved)."""
    routine_before = now - timedelta(days=settings.keep_routine_days)
    escalated_before = now - timedelta(days=settings.keep_escalated_days)
    routine: list[str] = []
    escalated: list[str] = []
    for stored in records:
        detected_at = stored.record.context.detected_at
        if stored.outcome == "resolved_by_supervisor" and detected_at < routine_before:
            routine.append(stored.record.context.failure_id)
        elif stored.outcome in ESCALATED and detected_at < escalated_before:
            escalated.append(stored.record.context.failure_id)
    return routine, escalated
