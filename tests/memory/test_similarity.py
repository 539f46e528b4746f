"""Similarity of failures, and the index that finds the remembered ones most alike."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.memory.similarity import (
    Match,
    MemoryIndex,
    Weights,
    compare,
    effectiveness,
    recency,
    similarity,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def context(
    failure_id: str,
    *,
    error_id: str = "E-BROKER-DOWN",
    component: str = "mosquitto",
    message: str = "broker on 127.0.0.1:1883 refused connection after 3 retries",
    unhealthy: Iterable[str] = ("knx-bridge", "dali-bridge"),
    events: Iterable[tuple[str, str]] = (("config", "mosquitto"),),
    detected_at: datetime = NOW - DAY,
    hour: int = 14,
    uptime_s: float = 3 * 86400,
    memory_percent: float = 40.0,
) -> FailureContext:
    sick = set(unhealthy)
    neighbours = {"knx-bridge", "dali-bridge", "modbus-bridge", "database", *sick}
    return FailureContext(
        failure_id=failure_id,
        incident_id=None,
        detected_at=detected_at,
        error_id=error_id,
        component=component,
        severity="critical",
        message=message,
        other_health={n: "unhealthy" if n in sick else "healthy" for n in sorted(neighbours)},
        recent_events=[
            RecentEvent(
                at=detected_at - timedelta(minutes=1), kind=kind, subject=subject, detail=""
            )
            for kind, subject in events
        ],
        resources=Resources(
            memory_percent=memory_percent, disk_percent=30.0, cpu_percent=20.0, load_per_cpu=0.4
        ),
        environment=Environment(hour=hour, weekday=2, uptime_s=uptime_s),
    )


def record(
    ctx: FailureContext, fixed_by: str | None = "supervisor", fix_action: str | None = "restart"
) -> FailureRecord:
    resolution = None
    if fixed_by is not None:
        resolution = Resolution(
            resolved_at=ctx.detected_at + timedelta(minutes=2),
            fixed_by=fixed_by,
            what_fixed_it=f"{fix_action} {ctx.component}",
            fix_action=fix_action,
            fix_target=ctx.component,
        )
    return FailureRecord(context=ctx, resolution=resolution)


def feature(match: Match, name: str) -> float:
    return next(f.similarity for f in match.features if f.name == name)


def test_a_near_identical_failure_ranks_above_an_unrelated_one_and_says_why() -> None:
    alike = context("alike", message="broker on 10.0.0.7:8883 refused connection after 12 retries")
    unrelated = context(
        "unrelated", component="knx-bridge", message="telegram queue overflow", unhealthy=()
    )
    index = MemoryIndex([record(unrelated), record(alike)])

    matches = index.similar(context("query"), NOW)

    assert [m.failure_id for m in matches] == ["alike", "unrelated"]
    best = matches[0]
    assert feature(best, "message") == 1.0  # the numbers differ, the words do not
    assert feature(best, "component") == 1.0
    assert feature(best, "symptoms") == 1.0
    assert feature(matches[1], "message") == 0.0
    assert feature(matches[1], "component") == 0.0
    text = best.explain()
    assert text.startswith(f"alike: rank {best.rank:.3f} = score 1.000")
    assert "message      similarity 1.00 x weight 0.20 = 0.200" in text
    assert "component    similarity 1.00 x weight 0.20 = 0.200" in text


def test_a_score_adds_up_its_explanation_and_agrees_with_the_plain_form() -> None:
    stored = context(
        "a", message="broker refused connection", unhealthy=("database", "knx-bridge"), hour=2
    )
    index = MemoryIndex([record(stored)])
    query = context("q")

    (match,) = index.similar(query, NOW)

    assert match.score == similarity(query, stored)
    assert match.score == pytest.approx(sum(f.contribution for f in match.features))
    assert [f.name for f in match.features] == [
        "error_id",
        "message",
        "component",
        "symptoms",
        "events",
        "resources",
        "time_of_day",
        "uptime",
    ]
    assert feature(match, "symptoms") == pytest.approx(1 / 3)  # knx of database, knx, dali
    assert feature(match, "time_of_day") == 0.0  # 0-6 h against 12-18 h


def test_a_recent_lookalike_outranks_an_old_identical_one() -> None:
    old = context("old", detected_at=NOW - 180 * DAY)  # two half-lives
    recent = context("recent", detected_at=NOW - DAY, message="broker refused connection")
    index = MemoryIndex([record(old), record(recent)])

    matches = index.similar(context("query"), NOW)

    assert [m.failure_id for m in matches] == ["recent", "old"]
    assert matches[1].score > matches[0].score
    assert matches[1].recency == pytest.approx(0.25)


def test_the_half_life_is_configurable() -> None:
    stored = context("a", detected_at=NOW - 10 * DAY)
    (match,) = MemoryIndex([record(stored)], half_life=10 * DAY).similar(context("q"), NOW)
    assert match.recency == pytest.approx(0.5)
    assert recency(NOW + DAY, NOW) == 1.0  # stamped after now: new, not more than new


def test_our_own_fix_outranks_a_person_s_which_outranks_none() -> None:
    ctx = context("x")
    supervisor = record(ctx.model_copy(update={"failure_id": "supervisor"}))
    person = record(ctx.model_copy(update={"failure_id": "person"}), fixed_by="alice")
    open_ = record(ctx.model_copy(update={"failure_id": "open"}), fixed_by=None)
    no_action = record(ctx.model_copy(update={"failure_id": "no-action"}), fix_action=None)
    index = MemoryIndex([open_, person, supervisor, no_action])

    matches = index.similar(context("q"), NOW, limit=4)

    assert [m.failure_id for m in matches[:2]] == ["supervisor", "person"]
    assert [m.effectiveness for m in matches] == [1.0, 0.7, 0.0, 0.0]
    ranks = [m.rank for m in matches]
    assert ranks[1] / ranks[0] == pytest.approx(0.85)
    assert ranks[2] / ranks[0] == pytest.approx(0.5)
    assert effectiveness(no_action) == 0.0


def test_ties_go_to_the_newer_record() -> None:
    older = context("older", detected_at=NOW - 2 * DAY)
    newer = context("newer", detected_at=NOW - DAY)
    index = MemoryIndex([record(older), record(newer)], half_life=timedelta(days=10**6))
    matches = index.similar(context("q"), NOW)
    assert [m.failure_id for m in matches] == ["newer", "older"]


def test_scores_are_symmetric_and_between_0_and_1() -> None:
    contexts = random_memory(random.Random(7), 30)
    for a in contexts:
        assert similarity(a, a) == pytest.approx(1.0)
        for b in contexts:
            assert 0.0 <= similarity(a, b) <= 1.0 + 1e-12
            assert similarity(a, b) == pytest.approx(similarity(b, a), abs=1e-15)


@pytest.mark.parametrize(
    ("a", "b", "name", "expected"),
    [
        ({"unhealthy": ()}, {"unhealthy": ()}, "symptoms", 1.0),
        ({"events": ()}, {"events": ()}, "events", 1.0),
        ({"events": ()}, {}, "events", 0.0),
        ({"hour": 23}, {"hour": 1}, "time_of_day", 0.5),  # adjacent across midnight
        ({"hour": 5}, {"hour": 6}, "time_of_day", 0.5),
        ({"hour": 0}, {"hour": 12}, "time_of_day", 0.0),
        ({"uptime_s": 3599}, {"uptime_s": 3600}, "uptime", 0.0),
        ({"uptime_s": 8 * 86400}, {"uptime_s": 700 * 86400}, "uptime", 1.0),
        ({"memory_percent": 50}, {"memory_percent": 80}, "resources", 1.0),
        ({"memory_percent": 80}, {"memory_percent": 80.5}, "resources", 0.75),
        ({"message": "12 3.4"}, {"message": "deadbeef01 10.0.0.5"}, "message", 1.0),  # no words
    ],
)
def test_feature_bands_and_empty_sets(
    a: dict[str, object], b: dict[str, object], name: str, expected: float
) -> None:
    features = compare(context("a", **a), context("b", **b))  # type: ignore[arg-type]
    assert next(f.similarity for f in features if f.name == name) == expected


def test_weights_must_sum_to_1_and_change_the_score() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        Weights(error_id=0.5)
    with pytest.raises(ValueError, match="negative"):
        Weights(error_id=-0.05, message=0.5)
    only_message = Weights(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    a, b = context("a"), context("b", error_id="E-OTHER", component="database")
    assert similarity(a, b) == pytest.approx(0.55)  # the bound the index prunes with
    assert similarity(a, b, only_message) == 0.0


def test_the_query_s_own_record_is_never_returned() -> None:
    index = MemoryIndex([record(context("self")), record(context("other"))])
    assert [m.failure_id for m in index.similar(context("self"), NOW)] == ["other"]


def test_add_replaces_remove_forgets_and_limit_and_min_score_apply() -> None:
    index = MemoryIndex([record(context("a"), fixed_by=None), record(context("b"))])
    index.add(record(context("a")))  # resolved since
    far = context("far", error_id="E-DISK", component="database", message="disk full")
    index.add(record(far))
    assert len(index) == 3
    replaced = index.get("a")
    assert replaced is not None
    assert effectiveness(replaced) == 1.0

    assert [m.failure_id for m in index.similar(context("q"), NOW, limit=1)] == ["a"]  # a tie
    assert index.similar(context("q"), NOW, limit=0) == []
    assert {m.failure_id for m in index.similar(context("q"), NOW, min_score=0.9)} == {"a", "b"}

    index.remove("b")
    index.remove("never-added")
    assert len(index) == 2
    assert index.get("b") is None
    assert [m.failure_id for m in index.similar(context("q"), NOW)] == ["a", "far"]
    assert MemoryIndex().similar(context("q"), NOW) == []


def test_a_fresh_record_sharing_neither_beats_stale_ones_sharing_both() -> None:
    stale = [
        record(context(f"stale-{i}", detected_at=NOW - 900 * DAY), fixed_by=None) for i in range(5)
    ]
    fresh = context("fresh", error_id="E-DISK", component="database", detected_at=NOW)
    index = MemoryIndex([*stale, record(fresh)])

    matches = index.similar(context("q"), NOW)

    assert matches[0].failure_id == "fresh"
    assert matches[0].score == pytest.approx(0.55)


SKEWED = Weights(0.10, 0.30, 0.30, 0.10, 0.10, 0.05, 0.05, 0.0)  # component before error id


@pytest.mark.parametrize(
    ("weights", "half_life"), [(Weights(), timedelta(days=90)), (SKEWED, timedelta(days=3))]
)
def test_pruning_finds_exactly_what_scoring_every_record_finds(
    weights: Weights, half_life: timedelta
) -> None:
    rng = random.Random(20261126)
    records = [random_record(rng, ctx) for ctx in random_memory(rng, 350)]
    index = MemoryIndex(records, weights=weights, half_life=half_life)
    for churn in records[:150:3]:  # replaced and removed records must not linger
        index.add(random_record(rng, churn.context))
    for gone in records[1:150:3]:
        index.remove(gone.context.failure_id)
    kept = [r for r in (index.get(r.context.failure_id) for r in records) if r is not None]
    queries = [
        *random_memory(rng, 25, prefix="q"),
        *(r.context for r in kept[:8]),  # each must not find itself
        *(  # sharing neither error id nor component with any record
            q.model_copy(update={"error_id": "E-NEW", "component": "new"})
            for q in random_memory(rng, 7, prefix="n")
        ),
    ]

    for query in queries:
        everything = brute_force(kept, query, weights, half_life)
        for limit, min_score in [(1, 0.0), (3, 0.0), (5, 0.0), (3, 0.6)]:
            got = index.similar(query, NOW, limit=limit, min_score=min_score)
            expected = [(i, rank) for i, rank, score in everything if score >= min_score]
            assert [(m.failure_id, m.rank) for m in got] == expected[:limit]


def brute_force(
    records: list[FailureRecord], query: FailureContext, weights: Weights, half_life: timedelta
) -> list[tuple[str, float, float]]:
    """Every other record as (failure id, rank, score), best first, ties newest first."""
    ranked = []
    for r in records:
        ctx = r.context
        if ctx.failure_id == query.failure_id:
            continue
        score = similarity(query, ctx, weights)
        rank = score * recency(ctx.detected_at, NOW, half_life) * (0.5 + 0.5 * effectiveness(r))
        ranked.append((-rank, -ctx.detected_at.timestamp(), ctx.failure_id, score))
    return [(failure_id, -rank, score) for rank, _, failure_id, score in sorted(ranked)]


ERRORS = ["E-BROKER-DOWN", "E-BRIDGE-SILENT", "E-DB-SLOW", "E-DISK"]
COMPONENTS = ["mosquitto", "knx-bridge", "dali-bridge", "database", "modbus-bridge", "disk"]
WORDS = ["refused", "timeout", "broker", "connection", "lost", "queue", "full", "slow", "reset"]


def random_memory(rng: random.Random, n: int, prefix: str = "f") -> list[FailureContext]:
    """Few error ids and components, so that many records share one and ranks often tie."""
    return [
        context(
            f"{prefix}-{i}",
            error_id=rng.choice(ERRORS),
            component=rng.choice(COMPONENTS),
            message=" ".join(rng.sample(WORDS, rng.randint(0, 4))) + f" {rng.randint(1, 99)}",
            unhealthy=rng.sample(COMPONENTS, rng.randint(0, 2)),
            events=[("health", c) for c in rng.sample(COMPONENTS, rng.randint(0, 2))],
            detected_at=NOW - rng.choice([0, 1, 2, 30, 90, 400]) * DAY,  # equal times: ties
            hour=rng.randrange(24),
            uptime_s=rng.choice([60, 7200, 200000, 10**7]),
            memory_percent=rng.choice([10, 60, 90]),
        )
        for i in range(n)
    ]


def random_record(rng: random.Random, ctx: FailureContext) -> FailureRecord:
    return record(ctx, fixed_by=rng.choice(["supervisor", "alice", None]))


def test_the_index_keeps_a_record_slim_and_explains_it_exactly_as_the_full_one() -> None:
    """A ring of 50 events with their text was most of a record's memory: the index keeps
    each distinct (kind, subject) once, which is all similarity reads of them."""
    detected = NOW - DAY
    ring = [
        RecentEvent(
            at=detected - timedelta(seconds=i),
            kind="health",
            subject=("mqtt", "knx-bridge", "database")[i % 3],
            detail=f"healthy: MQTT round trip {i / 10:.1f} ms",
        )
        for i in range(50)
    ]
    full = record(context("f-1", events=()).model_copy(update={"recent_events": ring}))
    index = MemoryIndex([full])

    kept = index.get("f-1")
    assert kept is not None
    assert [(e.kind, e.subject, e.detail) for e in kept.context.recent_events] == [
        ("health", "mqtt", ""),
        ("health", "knx-bridge", ""),
        ("health", "database", ""),
    ]
    assert kept.resolution == full.resolution and kept.context.message == full.context.message

    query = context("q", events=[("health", "mqtt"), ("config", "mosquitto")])
    [match] = index.similar(query, NOW)
    assert match.score == similarity(query, full.context, Weights())
    assert match.features == compare(query, full.context, Weights())
