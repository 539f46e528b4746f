"""Recurring failures with a recurring fix: candidates for a learned pattern.

A pattern is worth proposing when the same error on the same component, with
messages and surroundings alike, was fixed the same way several times. Only
resolved records count (a fix action is known), and only records with the same
fix group together: two lookalike failures fixed differently teach nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

from graylogic_supervisor.domain.memory import FailureContext, FailureRecord, message_tokens
from graylogic_supervisor.memory.similarity import (
    DEFAULT_WEIGHTS,
    SUPERVISOR,
    Weights,
    similarity,
)


@dataclass(frozen=True)
class PatternCandidate:
    """A cluster of alike resolved failures that share one fix."""

    error_id: str
    component: str
    tokens: frozenset[str]  # the message tokens every member has
    fix_action: str
    fix_target: str | None
    member_ids: tuple[str, ...]  # newest first
    occurrences: int  # the members' counts added up: failures seen, not records
    supervisor_fixed: int  # members (records) whose fix the supervisor made, not a person


def extract_patterns(
    records: Iterable[FailureRecord],
    threshold: float = 0.8,
    min_members: int = 3,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[PatternCandidate]:
    """Pattern candidates among the resolved records, in a deterministic order.

    Records are grouped by (error id, component, fix action, fix target). Within
    a group, oldest first, each record joins the first cluster whose first member
    it resembles by at least ``threshold``, else starts one. Oldest first keeps a
    cluster's seed stable as new failures arrive. A cluster whose counts add up
    to ``min_members`` becomes a candidate. Candidates come most frequent first,
    then by error id, component, fix and first member.
    """
    resolved = sorted((r for r in records if r.resolved), key=_group_key)
    candidates: list[PatternCandidate] = []
    for _, group in groupby(resolved, key=_group_key):
        clusters: list[list[FailureRecord]] = []
        for record in sorted(group, key=lambda r: (r.context.detected_at, r.context.failure_id)):
            for cluster in clusters:
                if similarity(cluster[0].context, record.context, weights) >= threshold:
                    cluster.append(record)
                    break
            else:
                clusters.append([record])
        candidates.extend(
            _candidate(cluster)
            for cluster in clusters
            if sum(r.count for r in cluster) >= min_members
        )
    return sorted(
        candidates,
        key=lambda p: (
            -p.occurrences,
            p.error_id,
            p.component,
            p.fix_action,
            p.fix_target is not None,
            p.fix_target or "",
            p.member_ids[-1],
        ),
    )


def pattern_matches(
    pattern_tokens: frozenset[str], error_id: str, component: str, context: FailureContext
) -> float:
    """How well a new failure fits a pattern: 0 if error id or component differ, else 0.5..1.

    The half for error id and component makes any same-kind failure a weak fit;
    the other half is the share of the pattern's tokens found in the new message.
    A pattern without tokens (its members' messages shared none) fits fully.
    """
    if context.error_id != error_id or context.component != component:
        return 0.0
    if not pattern_tokens:
        return 1.0
    present = len(pattern_tokens & message_tokens(context.message))
    return 0.5 + 0.5 * present / len(pattern_tokens)


def _group_key(record: FailureRecord) -> tuple[str, str, str, bool, str]:
    resolution = record.resolution
    assert resolution is not None and resolution.fix_action is not None  # resolved records
    target = resolution.fix_target
    ctx = record.context
    return ctx.error_id, ctx.component, resolution.fix_action, target is not None, target or ""


def _candidate(cluster: list[FailureRecord]) -> PatternCandidate:
    first = cluster[0]
    resolution = first.resolution
    assert resolution is not None and resolution.fix_action is not None
    newest_first = sorted(
        cluster, key=lambda r: (r.context.detected_at, r.context.failure_id), reverse=True
    )
    return PatternCandidate(
        error_id=first.context.error_id,
        component=first.context.component,
        tokens=frozenset.intersection(*(message_tokens(r.context.message) for r in cluster)),
        fix_action=resolution.fix_action,
        fix_target=resolution.fix_target,
        member_ids=tuple(r.context.failure_id for r in newest_first),
        occurrences=sum(r.count for r in cluster),
        supervisor_fixed=sum(
            1 for r in cluster if r.resolution is not None and r.resolution.fixed_by == SUPERVISOR
        ),
    )
