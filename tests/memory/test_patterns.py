"""Pattern candidates: alike resolved failures that share a fix, and how a new one fits."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.memory.patterns import PatternCandidate, extract_patterns, pattern_matches

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REFUSED = "broker on 127.0.0.1:{port} refused connection after {n} retries"


def context(
    failure_id: str,
    *,
    days_ago: int = 1,
    message: str = REFUSED.format(port=1883, n=3),
    unhealthy: tuple[str, ...] = ("knx-bridge",),
    error_id: str = "E-BROKER-DOWN",
    component: str = "mosquitto",
) -> FailureContext:
    detected_at = NOW - timedelta(days=days_ago)
    return FailureContext(
        failure_id=failure_id,
        incident_id=None,
        detected_at=detected_at,
        error_id=error_id,
        component=component,
        severity="critical",
        message=message,
        other_health={
            n: "unhealthy" if n in unhealthy else "healthy" for n in ("knx-bridge", "db")
        },
        recent_events=[RecentEvent(at=detected_at, kind="config", subject="mosquitto", detail="")],
        resources=Resources(memory_percent=40, disk_percent=30, cpu_percent=20, load_per_cpu=0.3),
        environment=Environment(hour=14, weekday=2, uptime_s=86400 * 3),
    )


def resolved(
    ctx: FailureContext,
    fix_action: str | None = "restart_service",
    fixed_by: str = "supervisor",
    count: int = 1,
) -> FailureRecord:
    resolution = Resolution(
        resolved_at=ctx.detected_at + timedelta(minutes=1),
        fixed_by=fixed_by,
        what_fixed_it="restarted the broker",
        fix_action=fix_action,
        fix_target="mosquitto",
    )
    return FailureRecord(context=ctx, resolution=resolution, count=count)


def refused(
    failure_id: str,
    days_ago: int,
    fix_action: str | None = "restart_service",
    fixed_by: str = "supervisor",
    count: int = 1,
) -> FailureRecord:
    """The same refusal each time, with other numbers in its message."""
    message = REFUSED.format(port=1883 + days_ago, n=days_ago)
    ctx = context(failure_id, days_ago=days_ago, message=message)
    return resolved(ctx, fix_action=fix_action, fixed_by=fixed_by, count=count)


def test_three_alike_failures_with_the_same_fix_make_one_pattern() -> None:
    records = [
        refused("f1", 30),
        refused("f2", 20, fixed_by="alice"),
        resolved(context("f3", days_ago=10, message="broker on 10.0.0.2:8883 refused connection")),
    ]

    assert extract_patterns(records) == [
        PatternCandidate(
            error_id="E-BROKER-DOWN",
            component="mosquitto",
            tokens=frozenset({"broker", "refused", "connection"}),  # "after", "retries": not f3
            fix_action="restart_service",
            fix_target="mosquitto",
            member_ids=("f3", "f2", "f1"),
            occurrences=3,
            supervisor_fixed=2,
        )
    ]


def test_two_alike_failures_are_not_yet_a_pattern() -> None:
    assert extract_patterns([refused("f1", 30), refused("f2", 20)]) == []
    assert len(extract_patterns([refused("f1", 30), refused("f2", 20)], min_members=2)) == 1


def test_a_merged_record_counts_for_the_failures_it_stands_for() -> None:
    (pattern,) = extract_patterns([refused("merged", 5, count=3)])
    assert pattern.member_ids == ("merged",)
    assert pattern.occurrences == 3


def test_different_fixes_make_different_patterns() -> None:
    restarts = [refused(f"r{i}", i) for i in range(1, 4)]
    reloads = [refused(f"c{i}", i + 10, fix_action="reload_config") for i in range(1, 5)]

    patterns = extract_patterns(restarts + reloads)

    assert [(p.fix_action, p.member_ids) for p in patterns] == [
        ("reload_config", ("c1", "c2", "c3", "c4")),  # seen more often: first
        ("restart_service", ("r1", "r2", "r3")),
    ]


def test_unresolved_failures_make_no_pattern() -> None:
    open_ = [FailureRecord(context=context(f"o{i}", days_ago=i)) for i in range(1, 4)]
    no_action = [refused(f"n{i}", i, fix_action=None) for i in range(1, 4)]
    assert extract_patterns(open_ + no_action) == []


def test_alike_only_by_kind_splits_into_clusters_by_threshold() -> None:
    refusals = [refused(f"r{i}", i) for i in range(1, 4)]
    overflows = [
        resolved(context(f"q{i}", days_ago=i, message="queue overflow", unhealthy=()))
        for i in range(1, 4)
    ]

    patterns = extract_patterns(refusals + overflows)

    assert sorted(sorted(p.tokens) for p in patterns) == [
        ["after", "broker", "connection", "refused", "retries"],
        ["overflow", "queue"],
    ]
    assert extract_patterns(refusals + overflows, threshold=0.5)[0].occurrences == 6


def test_the_order_of_the_input_does_not_matter() -> None:
    records = [refused(f"r{i}", i) for i in range(1, 6)]
    records += [refused(f"c{i}", i, fix_action="reload_config") for i in range(1, 6)]
    expected = extract_patterns(records)
    random.Random(3).shuffle(records)
    assert extract_patterns(records) == expected


def test_a_new_failure_fits_a_pattern_by_its_kind_and_the_pattern_s_words() -> None:
    tokens = frozenset({"broker", "refused", "connection", "retries"})
    fits = context("new", message="broker refused connection after 9 retries")
    half = context("new", message="broker refused; link down")
    other_component = context("new", component="knx-bridge")

    assert pattern_matches(tokens, "E-BROKER-DOWN", "mosquitto", fits) == 1.0
    assert pattern_matches(tokens, "E-BROKER-DOWN", "mosquitto", half) == 0.75
    assert pattern_matches(tokens, "E-OTHER", "mosquitto", fits) == 0.0
    assert pattern_matches(tokens, "E-BROKER-DOWN", "mosquitto", other_component) == 0.0
    assert pattern_matches(frozenset(), "E-BROKER-DOWN", "mosquitto", half) == 1.0
