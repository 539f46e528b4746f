"""How alike two failures are, and which remembered failures a new one resembles.

A failure is compared on eight weighted features, each scored 0..1, so the score
is 0..1 and every part of it can be shown to an operator. ``compare`` is the plain
reference form, on two contexts. ``MemoryIndex`` answers "which remembered
failures are most like this one?" over thousands of records within a few
milliseconds. It ranks by ``score * recency * (0.5 + 0.5 * effectiveness)``, so
a recent failure with a proven fix beats an old or unresolved lookalike.

Pure Python and in memory: the index is rebuilt from the store at start-up.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Hashable, Iterable
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timedelta

from graylogic_supervisor.domain.memory import (
    FailureContext,
    FailureRecord,
    RecentEvent,
    message_tokens,
)

HEALTHY = "healthy"  # health.monitor.Health.HEALTHY, as stored in other_health
SUPERVISOR = "supervisor"  # Resolution.fixed_by when no person was involved
_TIME_BANDS = 4  # 6-hour bands of the day
# Similarity of two 6-hour bands by their distance around the clock: same, adjacent, opposite.
_TIME_SIMILARITY = tuple(
    tuple((1.0, 0.5, 0.0, 0.5)[(a - b) % _TIME_BANDS] for b in range(_TIME_BANDS))
    for a in range(_TIME_BANDS)
)
_UPTIME_LIMITS_S = (3600.0, 86400.0, 7 * 86400.0)  # < 1 h, < 1 d, < 7 d, >= 7 d
_RESOURCE_FIGURES = 4
# Relative slack on pruning bounds, so float rounding never prunes a record that belongs.
_SLACK = 1e-9


@dataclass(frozen=True)
class Weights:
    """How much each feature counts; they sum to 1 so that a score stays in 0..1.

    The defaults put what names the failure first (error id, message, component),
    what surrounded it second, and the machine's state last: a full disk at 3 am
    is weak evidence that two failures share a cause.
    """

    error_id: float = 0.25
    message: float = 0.20
    component: float = 0.20
    symptoms: float = 0.10
    events: float = 0.10
    resources: float = 0.05
    time_of_day: float = 0.05
    uptime: float = 0.05

    def __post_init__(self) -> None:
        values = astuple(self)
        if any(w < 0 for w in values):
            raise ValueError(f"weights must not be negative: {self}")
        if not math.isclose(math.fsum(values), 1.0, abs_tol=1e-9):
            raise ValueError(f"weights must sum to 1, not {math.fsum(values)}: {self}")


DEFAULT_WEIGHTS = Weights()
DEFAULT_HALF_LIFE = timedelta(days=90)


@dataclass(frozen=True)
class FeatureScore:
    """One line of an explanation: how alike on one feature, and what that added."""

    name: str
    weight: float
    similarity: float

    @property
    def contribution(self) -> float:
        return self.weight * self.similarity


@dataclass(frozen=True)
class Match:
    """A remembered failure like the query, with everything that placed it."""

    failure_id: str
    detected_at: datetime
    score: float  # weighted similarity, 0..1
    features: tuple[FeatureScore, ...]
    recency: float  # 1.0 now, 0.5 one half-life ago
    effectiveness: float  # 1.0 the supervisor fixed it, 0.7 a person did, 0.0 unresolved

    @property
    def rank(self) -> float:
        return self.score * self.recency * (0.5 + 0.5 * self.effectiveness)

    def explain(self) -> str:
        """A few lines an operator can read: the rank, its factors, each feature's part."""
        lines = [
            f"{self.failure_id}: rank {self.rank:.3f} = score {self.score:.3f}"
            f" x recency {self.recency:.3f}"
            f" x (0.5 + 0.5 x effectiveness {self.effectiveness:.1f})"
        ]
        lines.extend(
            f"  {f.name:<12} similarity {f.similarity:.2f} x weight {f.weight:.2f}"
            f" = {f.contribution:.3f}"
            for f in self.features
        )
        return "\n".join(lines)


def compare(
    a: FailureContext, b: FailureContext, weights: Weights = DEFAULT_WEIGHTS
) -> tuple[FeatureScore, ...]:
    """Each feature's similarity, in the order of ``Weights``; the reference for the index."""
    sims = {
        "error_id": 1.0 if a.error_id == b.error_id else 0.0,
        "message": _jaccard(message_tokens(a.message), message_tokens(b.message)),
        "component": 1.0 if a.component == b.component else 0.0,
        "symptoms": _jaccard(_symptoms(a), _symptoms(b)),
        "events": _jaccard(_event_keys(a), _event_keys(b)),
        "resources": sum(
            x == y for x, y in zip(_resource_bands(a), _resource_bands(b), strict=True)
        )
        / _RESOURCE_FIGURES,
        "time_of_day": _TIME_SIMILARITY[_time_band(a)][_time_band(b)],
        "uptime": 1.0 if _uptime_band(a) == _uptime_band(b) else 0.0,
    }
    return tuple(
        FeatureScore(f.name, getattr(weights, f.name), sims[f.name]) for f in fields(weights)
    )


def similarity(a: FailureContext, b: FailureContext, weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The weighted score, 0..1, symmetric in ``a`` and ``b``."""
    total = 0.0
    for feature in compare(a, b, weights):
        # Left to right, as the index adds: sum() compensates on 3.12+ and would differ.
        total += feature.contribution
    return total


def recency(
    detected_at: datetime, now: datetime, half_life: timedelta = DEFAULT_HALF_LIFE
) -> float:
    """Halves every ``half_life``; a failure stamped after ``now`` counts as new (1.0)."""
    return _recency(detected_at.timestamp(), now.timestamp(), half_life.total_seconds())


def effectiveness(record: FailureRecord) -> float:
    """How much the record's fix is worth repeating: our own fix is proven automatable."""
    resolution = record.resolution
    if resolution is None or resolution.fix_action is None:
        return 0.0
    return 1.0 if resolution.fixed_by == SUPERVISOR else 0.7


class MemoryIndex:
    """The remembered failures, ready to answer ``similar()`` in a few milliseconds.

    Each record is kept with a compact profile: message tokens, unhealthy
    neighbours and recent events as bitmasks over interned values (a Jaccard is
    then one ``&`` and one ``bit_count``), bands as small ints. Bit positions are
    never given back, so after heavy churn rebuild the index from the store.

    **Pruning.** A record that shares neither the query's error id nor its
    component scores at most ``1 - w.error_id - w.component`` (0.55 with the
    default weights); one sharing only the component at most 0.75, only the error
    id at most 0.80. Records sit in four groups (same error id and component, same
    error id, same component, all), each sorted by ``log(recency * (0.5 + 0.5 *
    effectiveness))`` less a term that depends only on ``now``, so that group
    order is rank-bound order for any ``now``. ``similar()`` scans the groups from
    the highest bound down and leaves a group at the first record whose bound
    times that factor cannot reach the current ``limit``-th rank. So records
    sharing neither are scored only while fewer than ``limit`` candidates that
    could beat them are known, and the result is exactly that of scoring every
    record.
    """

    def __init__(
        self,
        records: Iterable[FailureRecord] = (),
        *,
        weights: Weights = DEFAULT_WEIGHTS,
        half_life: timedelta = DEFAULT_HALF_LIFE,
    ) -> None:
        if half_life <= timedelta(0):
            raise ValueError(f"half_life must be positive, not {half_life}")
        self._weights = weights
        self._half_life_s = half_life.total_seconds()
        self._decay = math.log(2) / self._half_life_s
        self._epoch: float | None = None  # keeps ordering keys small, hence precise
        self._interner = _Interner()
        self._records: dict[str, FailureRecord] = {}
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._profiles: list[_Profile] = []
        self._order: list[float] = []  # per slot: minus its ordering key (groups ascend)
        self._all: list[int] = []
        self._by_error: dict[str, list[int]] = {}
        self._by_component: dict[str, list[int]] = {}
        self._by_pair: dict[tuple[str, str], list[int]] = {}
        full = math.fsum(astuple(weights))
        self._bounds = {  # score bound by what a record shares: (error id, component)
            (True, True): full,
            (True, False): full - weights.component,
            (False, True): full - weights.error_id,
            (False, False): full - weights.error_id - weights.component,
        }
        for record in records:
            self.add(record)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, failure_id: str) -> FailureRecord | None:
        return self._records.get(failure_id)

    def add(self, record: FailureRecord) -> None:
        """Index a record; one with the same failure id (say, now resolved) is replaced."""
        ctx = record.context
        self.remove(ctx.failure_id)
        profile = self._interner.profile(ctx, grow=True)
        profile.multiplier = 0.5 + 0.5 * effectiveness(record)
        if self._epoch is None:
            self._epoch = profile.detected
        key = (profile.detected - self._epoch) * self._decay + math.log(profile.multiplier)
        if self._free:
            slot = self._free.pop()
            self._profiles[slot] = profile
            self._order[slot] = -key
        else:
            slot = len(self._profiles)
            self._profiles.append(profile)
            self._order.append(-key)
        self._records[ctx.failure_id] = kept_in_memory(record)
        self._slots[ctx.failure_id] = slot
        for group in self._groups_of(ctx):
            insort(group, slot, key=self._order.__getitem__)

    def remove(self, failure_id: str) -> None:
        """Forget a record; an unknown id is ignored, so callers need not check first."""
        slot = self._slots.pop(failure_id, None)
        if slot is None:
            return
        ctx = self._records.pop(failure_id).context
        for group in self._groups_of(ctx):
            i = bisect_left(group, self._order[slot], key=self._order.__getitem__)
            while group[i] != slot:  # equal keys sit side by side
                i += 1
            del group[i]
        self._free.append(slot)  # the stale profile stays until the slot is reused

    def similar(
        self, context: FailureContext, now: datetime, limit: int = 3, min_score: float = 0.0
    ) -> list[Match]:
        """The ``limit`` best records by rank, ties newest first, never the query itself.

        Records scoring below ``min_score`` are left out.
        """
        if limit <= 0 or self._epoch is None:
            return []
        weights, order, profiles = self._weights, self._order, self._profiles
        query = self._interner.profile(context, grow=False)
        now_s = now.timestamp()
        log_now = (now_s - self._epoch) * self._decay
        tolerance = _SLACK * (1.0 + abs(log_now))
        e, c = context.error_id, context.component
        groups = (  # (slots, score bound, error id to skip, component to skip)
            (self._by_pair.get((e, c), []), self._bounds[True, True], None, None),
            (self._by_error.get(e, []), self._bounds[True, False], None, c),
            (self._by_component.get(c, []), self._bounds[False, True], e, None),
            (self._all, self._bounds[False, False], e, c),
        )
        own = self._slots.get(context.failure_id)
        best: list[_Candidate] = []  # sorted best first
        floor = -1.0  # the limit-th rank once there are limit candidates
        half_life_s = self._half_life_s
        for slots, bound, skip_error, skip_component in sorted(groups, key=lambda g: -g[1]):
            if bound * (1.0 + _SLACK) < min_score:
                continue
            cutoff = _cutoff(best, limit, bound, log_now, tol=tolerance)
            for slot in slots:
                if order[slot] > cutoff:
                    break  # the rest of the group ranks lower still
                p = profiles[slot]
                if slot == own or p.error_id == skip_error or p.component == skip_component:
                    continue  # the query itself, or already scored in an earlier group
                score = query.score(p, weights)
                if score < min_score or score * p.multiplier < floor:
                    continue  # recency is at most 1: it cannot rank high enough
                rec = _recency(p.detected, now_s, half_life_s)
                candidate = (-(score * rec * p.multiplier), -p.detected, p.failure_id, score, rec)
                if len(best) < limit or candidate < best[-1]:
                    insort(best, candidate)
                    del best[limit:]
                    if len(best) == limit:
                        floor = -best[-1][0]
                        cutoff = _cutoff(best, limit, bound, log_now, tol=tolerance)
        return [self._match(context, failure_id, score, rec) for *_, failure_id, score, rec in best]

    def _match(self, context: FailureContext, failure_id: str, score: float, rec: float) -> Match:
        record = self._records[failure_id]
        return Match(
            failure_id=failure_id,
            detected_at=record.context.detected_at,
            score=score,
            features=compare(context, record.context, self._weights),
            recency=rec,
            effectiveness=effectiveness(record),
        )

    def _groups_of(self, ctx: FailureContext) -> list[list[int]]:
        return [
            self._all,
            self._by_error.setdefault(ctx.error_id, []),
            self._by_component.setdefault(ctx.component, []),
            self._by_pair.setdefault((ctx.error_id, ctx.component), []),
        ]


def kept_in_memory(record: FailureRecord) -> FailureRecord:
    """The record as the index holds it: its recent events only as distinct (kind, subject).

    Similarity reads nothing else of them, and the ring of 50 events with their text
    was most of a record's memory (about 22 KiB each in Python, so a daemon that had
    seen a few thousand failures grew by tens of MB). The whole record stays in the
    store; ``why`` and the admin page read it from there.
    """
    seen: set[tuple[str, str]] = set()
    events: list[RecentEvent] = []
    for event in record.context.recent_events:
        key = (event.kind, event.subject)
        if key not in seen:
            seen.add(key)
            events.append(event.model_copy(update={"detail": ""}))
    if len(events) == len(record.context.recent_events) and all(
        not event.detail for event in record.context.recent_events
    ):
        return record
    context = record.context.model_copy(update={"recent_events": events})
    return record.model_copy(update={"context": context})


# (-rank, -detected, failure_id, score, recency): sorts best first, ties newest first.
_Candidate = tuple[float, float, str, float, float]


def _cutoff(
    best: list[_Candidate], limit: int, bound: float, log_now: float, *, tol: float
) -> float:
    """The (negated) ordering key past which no record of a group can enter ``best``.

    A record's rank is at most ``bound * exp(key - log_now)``. It must reach the
    ``limit``-th rank so far: an equal rank may still win as the newer record.
    """
    if len(best) < limit or best[-1][0] >= 0.0:  # not full, or the worst rank is 0
        return math.inf
    if bound <= 0.0:
        return -math.inf
    return -(log_now + math.log(-best[-1][0] / bound) - tol)


class _Profile:
    """A context reduced to what scoring needs: ints and bitmasks, no sets to build."""

    __slots__ = (
        "component",
        "detected",
        "error_id",
        "events",
        "failure_id",
        "multiplier",
        "n_events",
        "n_symptoms",
        "n_tokens",
        "resources",
        "symptoms",
        "time_band",
        "tokens",
        "uptime_band",
    )

    def __init__(
        self,
        ctx: FailureContext,
        tokens: tuple[int, int],
        symptoms: tuple[int, int],
        events: tuple[int, int],
    ) -> None:
        self.failure_id = ctx.failure_id
        self.detected = ctx.detected_at.timestamp()
        self.multiplier = 0.0  # 0.5 + 0.5 * effectiveness, set by the index
        self.error_id = ctx.error_id
        self.component = ctx.component
        self.tokens, self.n_tokens = tokens
        self.symptoms, self.n_symptoms = symptoms
        self.events, self.n_events = events
        # One bit per (figure, band): the count of shared bits is the count of equal bands.
        self.resources = sum(1 << (3 * i + band) for i, band in enumerate(_resource_bands(ctx)))
        self.time_band = _time_band(ctx)
        self.uptime_band = _uptime_band(ctx)

    def score(self, other: _Profile, w: Weights) -> float:
        """The arithmetic of ``similarity``, in its order, so both give the same float."""
        shared = (self.tokens & other.tokens).bit_count()
        union = self.n_tokens + other.n_tokens - shared
        message = shared / union if union else 1.0
        shared = (self.symptoms & other.symptoms).bit_count()
        union = self.n_symptoms + other.n_symptoms - shared
        symptoms = shared / union if union else 1.0
        shared = (self.events & other.events).bit_count()
        union = self.n_events + other.n_events - shared
        events = shared / union if union else 1.0
        resources = (self.resources & other.resources).bit_count() / _RESOURCE_FIGURES
        total = w.error_id * (1.0 if self.error_id == other.error_id else 0.0)
        total += w.message * message
        total += w.component * (1.0 if self.component == other.component else 0.0)
        total += w.symptoms * symptoms
        total += w.events * events
        total += w.resources * resources
        total += w.time_of_day * _TIME_SIMILARITY[self.time_band][other.time_band]
        total += w.uptime * (1.0 if self.uptime_band == other.uptime_band else 0.0)
        return total


class _Interner:
    """Bit positions for tokens, neighbours and event keys, one table each to keep masks short."""

    def __init__(self) -> None:
        self._tokens: dict[Hashable, int] = {}
        self._neighbours: dict[Hashable, int] = {}
        self._events: dict[Hashable, int] = {}

    def profile(self, ctx: FailureContext, *, grow: bool) -> _Profile:
        """A record's profile (``grow``: new values get bits) or a query's (they do not)."""
        return _Profile(
            ctx,
            _bits(message_tokens(ctx.message), self._tokens, grow),
            _bits(_symptoms(ctx), self._neighbours, grow),
            _bits(_event_keys(ctx), self._events, grow),
        )


def _bits(values: frozenset[Hashable], table: dict[Hashable, int], grow: bool) -> tuple[int, int]:
    """A bitmask of the values' positions, and the set's size.

    A query's values unknown to the table get no bit, yet count in the size, so
    they still widen the union of a Jaccard as they would in ``compare``.
    """
    mask = 0
    for value in values:
        position = table.get(value)
        if position is None:
            if not grow:
                continue
            position = table[value] = len(table)
        mask |= 1 << position
    return mask, len(values)


def _recency(detected_s: float, now_s: float, half_life_s: float) -> float:
    return math.pow(0.5, max(0.0, now_s - detected_s) / half_life_s)


def _jaccard(a: frozenset[Hashable], b: frozenset[Hashable]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0  # nothing on either side: alike


def _symptoms(ctx: FailureContext) -> frozenset[Hashable]:
    """The other components that were not healthy: what else the failure came with."""
    return frozenset(name for name, health in ctx.other_health.items() if health != HEALTHY)


def _event_keys(ctx: FailureContext) -> frozenset[Hashable]:
    return frozenset((event.kind, event.subject) for event in ctx.recent_events)


def _resource_bands(ctx: FailureContext) -> tuple[int, int, int, int]:
    r = ctx.resources
    return (
        _band(r.memory_percent, 50.0, 80.0),
        _band(r.disk_percent, 50.0, 80.0),
        _band(r.cpu_percent, 50.0, 80.0),
        _band(r.load_per_cpu, 1.0, 2.0),
    )


def _band(value: float, low: float, high: float) -> int:
    """0 below ``low``, 1 from ``low`` to ``high`` inclusive, 2 above."""
    return 0 if value < low else 1 if value <= high else 2


def _time_band(ctx: FailureContext) -> int:
    return ctx.environment.hour // 6


def _uptime_band(ctx: FailureContext) -> int:
    return sum(ctx.environment.uptime_s >= limit for limit in _UPTIME_LIMITS_S)
