"""The failure memory as the supervisor uses it: capture, recall, decide, learn.

Deciding is honest arithmetic, never a clamp. A learned fix is tried first when
its confidence reaches the threshold (0.8 by default), where

    confidence = fit * p(success)

``fit`` is how well the new failure matches (a pattern's fit, or the mean
similarity of the past failures fixed that way), and ``p(success)`` is the
Laplace estimate ``(successes + 1) / (trials + 2)`` over the evidence behind it:
for a pattern, the failures it was learned from plus every later use of it;
for similar past failures, those fixed this way among all that were similar.
Three identical failures fixed by one action give 4/5 = 0.8 before the first
use; a use that fails brings it down, and the playbook runs instead.

Confidence is not enough: the fix also needs a history (BR-WF-LEARNING-001,
``memory.learned_fix_min_history``, 10 by default) of alike failures behind it.
For a pattern, the failures it was learned from (alike by construction and fixed
this way: its members' occurrences); for similar failures, those scoring at least
``similar_min_score``, however they ended (the confidence weighs how many this fix
resolved). Below it the decision says "not enough history (7 of 10)" and the
playbook runs; patterns are still learned, and shown, from ``pattern_min_members``.

Do no harm: a learned fix whose last ``review_min_matches`` runs ahead of the
playbook all failed never runs first again, whatever the evidence that would
choose it (a pattern or similar failures); the decision names it as held back.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.domain.memory import Attempt, FailureContext, FailureRecord, Resolution
from graylogic_supervisor.domain.states import ExecutionStatus
from graylogic_supervisor.memory.consolidation import ConsolidationReport, consolidate
from graylogic_supervisor.memory.learned import learned_playbook_id
from graylogic_supervisor.memory.patterns import extract_patterns, pattern_matches
from graylogic_supervisor.memory.similarity import Match, MemoryIndex
from graylogic_supervisor.store.memory import MemoryRepository

logger = logging.getLogger(__name__)

NEIGHBOURHOOD = 50  # records considered when a resolution may complete a pattern
RECALL = 3  # how many past failures a decision shows


@dataclass(frozen=True)
class Option:
    """One fix the memory could try, with the evidence behind it."""

    fix_action: str
    fix_target: str | None
    fit: float
    successes: int
    trials: int
    source: str  # "pattern" or "similar failures"
    pattern_id: str | None = None
    history: int = 0  # alike failures behind it (the module docstring says which)

    @property
    def p_success(self) -> float:
        return (self.successes + 1) / (self.trials + 2)

    @property
    def confidence(self) -> float:
        return self.fit * self.p_success

    def describe(self) -> str:
        target = f" {self.fix_target}" if self.fix_target else ""
        return f"{self.fix_action}{target} ({self.source})"


@dataclass(frozen=True)
class Decision:
    """What the memory proposes for a failure, and why; the audit log's decision record."""

    failure_id: str
    matches: tuple[Match, ...]
    best: Option | None
    threshold: float
    playbook_id: str | None
    min_history: int = 1
    held_back: tuple[str, ...] = ()  # fixes kept from running first, each with why

    @property
    def confident(self) -> bool:
        return self.best is not None and self.best.confidence >= self.threshold

    @property
    def enough_history(self) -> bool:
        return self.best is not None and self.best.history >= self.min_history

    @property
    def use_learned_fix(self) -> bool:
        return self.confident and self.enough_history

    def record(self) -> dict[str, Any]:
        best = self.best
        chosen = best.describe() if best is not None and self.use_learned_fix else self.playbook_id
        set_aside = (
            self.playbook_id
            if self.use_learned_fix
            else (best.describe() if best is not None else None)
        )
        return {
            "failure_id": self.failure_id,
            "chosen": chosen,
            "set_aside": set_aside,
            "confidence": None if best is None else round(best.confidence, 4),
            "threshold": self.threshold,
            "min_history": self.min_history,
            "held_back": list(self.held_back),
            "why": self.why(),
            "evidence": None
            if best is None
            else {
                "source": best.source,
                "pattern_id": best.pattern_id,
                "fit": round(best.fit, 4),
                "successes": best.successes,
                "sample_size": best.trials,
                "success_rate_estimate": round(best.p_success, 4),
                "history": best.history,
            },
            "matched": [
                {
                    "failure_id": m.failure_id,
                    "score": round(m.score, 4),
                    "rank": round(m.rank, 4),
                    "features": {f.name: round(f.similarity, 3) for f in m.features},
                }
                for m in self.matches
            ],
        }

    def why(self) -> str:
        best = self.best
        held = f"; held back: {'; '.join(self.held_back)}" if self.held_back else ""
        if best is None and self.held_back:
            return (
                f"the remembered fix is held back: {'; '.join(self.held_back)}: the playbook runs"
            )
        if best is None:
            return "no remembered fix for a failure like this one: the playbook runs"
        figures = (
            f"confidence {best.confidence:.2f} = fit {best.fit:.2f} x success"
            f" {best.p_success:.2f} ({best.successes} of {best.trials})"
        )
        history = f"history {best.history} of {self.min_history} alike failures"
        if self.use_learned_fix:
            return (
                f"{best.describe()} worked before: {figures} >= {self.threshold:g}, {history}{held}"
            )
        if self.confident:
            return (
                f"{best.describe()} set aside: not enough history ({best.history} of"
                f" {self.min_history}): {figures} >= {self.threshold:g}, but it runs first"
                f" only after {self.min_history} alike failures{held}"
            )
        return f"{best.describe()} set aside: {figures} < {self.threshold:g}{held}"


class FailureMemory:
    def __init__(self, repository: MemoryRepository, settings: MemoryConfig, clock: Clock) -> None:
        self._repository = repository
        self._settings = settings
        self._clock = clock
        self._index = MemoryIndex()
        self._loaded_at: datetime | None = None

    @property
    def settings(self) -> MemoryConfig:
        return self._settings

    def __len__(self) -> int:
        return len(self._index)

    async def load(self) -> int:
        """Build the in-memory index from the store (start-up, after consolidation)."""
        self._index = MemoryIndex()
        for record in await self._repository.all_records():
            self._index.add(record)
        self._loaded_at = self._clock.now()
        return len(self._index)

    async def refresh(self) -> int:
        """Take in what another process (the CLI: a technician's resolution) wrote."""
        since = self._loaded_at or datetime(1970, 1, 1, tzinfo=UTC)
        self._loaded_at = self._clock.now()
        changed = await self._repository.updated_since(since - timedelta(seconds=1))
        for record in changed:
            self._index.add(record)
        return len(changed)

    async def capture(self, context: FailureContext) -> None:
        record = FailureRecord(context=context)
        await self._repository.save(record, self._clock.now())
        self._index.add(record)

    async def note_attempt(self, failure_id: str, attempt: Attempt) -> None:
        if await self._repository.add_attempt(failure_id, attempt, self._clock.now()):
            await self._reindex(failure_id)

    async def resolve(self, failure_id: str, resolution: Resolution) -> bool:
        done = await self._repository.resolve(failure_id, resolution, self._clock.now())
        if done:
            await self._reindex(failure_id)
        return done

    def similar(self, context: FailureContext) -> list[Match]:
        return self._index.similar(context, self._clock.now(), limit=RECALL)

    async def decide(self, context: FailureContext, playbook_id: str | None) -> Decision:
        """The best remembered fix for this failure, or none; never runs anything.

        Preferred: a fix that may run first (confident, with the history); else the most
        confident, so that the record says what came closest and why it did not run."""
        settings = self._settings
        limit = max(RECALL, 10, settings.learned_fix_min_history)
        matches = self._index.similar(context, self._clock.now(), limit=limit)
        options = await self._pattern_options(context)
        options += self._similar_options(matches)
        options, held_back = await self._do_no_harm(context.component, options)
        best = max(
            options,
            key=lambda o: (
                o.confidence >= settings.confidence_threshold
                and o.history >= settings.learned_fix_min_history,
                o.confidence,
                o.trials,
            ),
            default=None,
        )
        return Decision(
            context.failure_id,
            tuple(matches[:RECALL]),
            best,
            settings.confidence_threshold,
            playbook_id,
            min_history=settings.learned_fix_min_history,
            held_back=held_back,
        )

    async def learned_fix_outcome(
        self, playbook_id: str, pattern_id: str | None, *, resolved: bool
    ) -> None:
        """Count a run of a learned fix ahead of the playbook: its own record, and its
        pattern's when a pattern chose it."""
        await self._repository.record_learned_fix_run(
            playbook_id, pattern_id, resolved=resolved, now=self._clock.now()
        )

    async def learn_around(self, failure_id: str) -> int:
        """Patterns that a newly resolved failure may complete: only its neighbourhood.

        A pattern's members are alike by definition, so the failures most similar to
        this one are all that can form one with it; the nightly run sees everything.
        """
        record = self._index.get(failure_id)
        if record is None:
            return 0
        neighbours = self._index.similar(record.context, self._clock.now(), limit=NEIGHBOURHOOD)
        records = [record] + [
            r for r in (self._index.get(m.failure_id) for m in neighbours) if r is not None
        ]
        return await self._store_patterns(records)

    async def consolidate(self) -> ConsolidationReport:
        """Merge, extract patterns, decay, compress, apply retention; then re-index."""
        report = await consolidate(
            self._repository,
            self._settings,
            self._clock.now(),
            extract=self._store_patterns_async,
        )
        await self.load()
        return report

    # -- internals ------------------------------------------------------------

    async def _store_patterns_async(self, records: list[FailureRecord]) -> int:
        return await self._store_patterns(records)

    async def _store_patterns(self, records: list[FailureRecord]) -> int:
        candidates = extract_patterns(
            records, self._settings.pattern_threshold, self._settings.pattern_min_members
        )
        now = self._clock.now()
        for candidate in candidates:
            await self._repository.save_pattern(
                pattern_id(
                    candidate.error_id,
                    candidate.component,
                    candidate.fix_action,
                    candidate.fix_target,
                    first_member=candidate.member_ids[-1],
                ),
                error_id=candidate.error_id,
                component=candidate.component,
                tokens=sorted(candidate.tokens),
                fix_action=candidate.fix_action,
                fix_target=candidate.fix_target,
                members=candidate.member_ids,
                now=now,
            )
        if candidates:
            logger.info("failure memory: %d patterns learned or refreshed", len(candidates))
        return len(candidates)

    async def _pattern_options(self, context: FailureContext) -> list[Option]:
        options = []
        for pattern in await self._repository.patterns():
            if pattern.flagged_for_review:
                continue
            fit = pattern_matches(pattern.tokens, pattern.error_id, pattern.component, context)
            if fit <= 0:
                continue
            members = pattern.occurrences
            options.append(
                Option(
                    pattern.fix_action,
                    pattern.fix_target,
                    fit,
                    successes=members + pattern.times_resolved,
                    trials=members + pattern.times_matched,
                    source="pattern",
                    pattern_id=pattern.id,
                    history=members,
                )
            )
        return options

    async def _do_no_harm(
        self, component: str, options: list[Option]
    ) -> tuple[list[Option], tuple[str, ...]]:
        """The options that may run, and why the others may not: a learned fix whose last
        ``review_min_matches`` runs first all failed never runs first again."""
        if not options:
            return options, ()
        limit = self._settings.review_min_matches
        uses = await self._repository.learned_fix_uses()
        allowed: list[Option] = []
        held: dict[str, str] = {}
        for option in options:
            use = uses.get(learned_playbook_id(component, option.fix_action, option.fix_target))
            if use is None or use.failed_in_a_row < limit:
                allowed.append(option)
                continue
            fix = " ".join(p for p in (option.fix_action, option.fix_target) if p)
            held[fix] = (
                f"{fix} failed its last {use.failed_in_a_row} runs ahead of the playbook"
                f" (memory.review_min_matches {limit})"
            )
        return allowed, tuple(held.values())

    def _similar_options(self, matches: list[Match]) -> list[Option]:
        alike = [m for m in matches if m.score >= self._settings.similar_min_score]
        if not alike:
            return []
        trials = 0  # the alike failures: the history behind every fix among them
        by_fix: dict[tuple[str, str | None], list[tuple[Match, int]]] = defaultdict(list)
        failed_tries: Counter[str] = Counter()  # learned playbook id -> runs that did not fix
        for match in alike:
            record = self._index.get(match.failure_id)
            if record is None:
                continue
            trials += record.count
            if record.resolution is not None and record.resolution.fix_action is not None:
                key = (record.resolution.fix_action, record.resolution.fix_target)
                by_fix[key].append((match, record.count))
            for attempt in record.attempts:
                if attempt.kind == "learned_fix" and attempt.status != ExecutionStatus.RESOLVED:
                    failed_tries[attempt.playbook_id] += 1
        options = []
        for (action, target), fixed in by_fix.items():
            successes = sum(count for _, count in fixed)
            fit = sum(m.score * count for m, count in fixed) / successes
            component = self._component_of(fixed[0][0])
            misses = failed_tries[learned_playbook_id(component, action, target)]
            options.append(
                Option(
                    action,
                    target,
                    fit,
                    successes,
                    trials + misses,
                    source="similar failures",
                    history=trials,
                )
            )
        return options

    def _component_of(self, match: Match) -> str:
        record = self._index.get(match.failure_id)
        return record.context.component if record is not None else ""

    async def _reindex(self, failure_id: str) -> None:
        record = await self._repository.get(failure_id)
        if record is not None:
            self._index.add(record)


def pattern_id(
    error_id: str, component: str, fix_action: str, fix_target: str | None, *, first_member: str
) -> str:
    """Stable across re-extraction: the same cluster keeps its id (and its counters)."""
    key = f"{error_id}|{component}|{fix_action}|{fix_target}|{first_member}"
    return "pat-" + hashlib.sha256(key.encode()).hexdigest()[:12]
