"""Consolidation: near-identical records merge, stale patterns decay, old records shrink and
expire by outcome, open records are never touched, and a second run changes nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.domain.memory import (
    Attempt,
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.memory.consolidation import (
    ConsolidationReport,
    consolidate,
)
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = MemoryConfig()
ERROR_ID = "ERR-INFRA-MQTT-001"
PORT_8883 = "connection refused on port 8883"


@pytest.fixture
def repo(db: Database) -> MemoryRepository:
    return MemoryRepository(db)


def record(
    failure_id: str,
    days_ago: float = 1,
    *,
    fixed_by: str | None = "supervisor",
    fix_target: str = "mosquitto",
    attempts: tuple[str, ...] = ("exec-0",),
    message: str = "connection refused on port 1883",
    unhealthy: tuple[str, ...] = ("knx-bridge",),
    count: int = 1,
) -> FailureRecord:
    """A record; ``fixed_by=None`` with attempts is unresolved, without them it is open."""
    detected = NOW - timedelta(days=days_ago)
    health = {"database": "healthy"} | {name: "unhealthy" for name in unhealthy}
    return FailureRecord(
        context=FailureContext(
            failure_id=failure_id,
            incident_id=None,
            detected_at=detected,
            error_id=ERROR_ID,
            component="mqtt",
            severity="critical",
            message=message,
            other_health=health,
            recent_events=[
                RecentEvent(at=detected, kind="health", subject="mqtt", detail="probe failed")
            ],
            resources=Resources(
                memory_percent=40, disk_percent=70, cpu_percent=10, load_per_cpu=0.3
            ),
            environment=Environment(hour=3, weekday=1, uptime_s=1000),
        ),
        attempts=[
            Attempt(execution_id=e, kind="playbook", playbook_id="mqtt", status="escalated")
            for e in attempts
        ],
        resolution=None
        if fixed_by is None
        else Resolution(
            resolved_at=detected + timedelta(minutes=2),
            fixed_by=fixed_by,
            what_fixed_it="restart",
            fix_action="restart_service",
            fix_target=fix_target,
        ),
        count=count,
    )


async def save(repo: MemoryRepository, *records: FailureRecord) -> None:
    for saved in records:
        await repo.save(saved, NOW)


async def ids(repo: MemoryRepository) -> set[str]:
    return {r.context.failure_id for r in await repo.all_records()}


async def test_near_identical_records_merge_into_the_newest_standing_for_all(
    repo: MemoryRepository,
) -> None:
    # Numbers are masked in message tokens, and who fixed it only matters as human or not.
    await save(
        repo,
        record("fail-a", 3, fixed_by="alice", attempts=("exec-3", "exec-1")),
        record("fail-b", 1, fixed_by="bob", attempts=("exec-2",), count=2, message=PORT_8883),
        record("fail-c", 2, fixed_by="alice", attempts=("exec-1",)),
    )
    report = await consolidate(repo, SETTINGS, NOW)

    assert (report.merge_groups, report.records_merged) == (1, 2)
    assert await ids(repo) == {"fail-b"}
    merged = await repo.get("fail-b")
    assert merged is not None
    assert merged.count == 4
    assert [a.execution_id for a in merged.attempts] == ["exec-1", "exec-2", "exec-3"]
    newest = record("fail-b", 1, fixed_by="bob", message=PORT_8883)
    assert (merged.context, merged.resolution) == (newest.context, newest.resolution)


async def test_three_near_identical_records_become_one_with_count_three(
    repo: MemoryRepository,
) -> None:
    await save(
        repo,
        record("fail-1", 3, attempts=("exec-1",)),
        record("fail-2", 2, attempts=("exec-2",)),
        record("fail-3", 1, attempts=("exec-3", "exec-1")),
    )
    report = await consolidate(repo, SETTINGS, NOW)
    assert report.records_merged == 2
    [merged] = await repo.all_records()
    assert (merged.context.failure_id, merged.count) == ("fail-3", 3)
    assert [a.execution_id for a in merged.attempts] == ["exec-1", "exec-2", "exec-3"]


@pytest.mark.parametrize(
    "different",
    [
        record("fail-2", 2, fix_target="knx-bridge"),  # another fix
        record("fail-2", 2, fixed_by="alice"),  # a human fixed it
        record("fail-2", 2, fixed_by=None),  # nobody fixed it
        record("fail-2", 2, unhealthy=()),  # the neighbours were fine
        record("fail-2", 2, message="connection timed out on port 1883"),
    ],
    ids=["fix", "human", "unresolved", "neighbours", "message"],
)
async def test_records_that_differ_in_what_matters_are_not_merged(
    repo: MemoryRepository, different: FailureRecord
) -> None:
    await save(repo, record("fail-1", 1), different)
    report = await consolidate(repo, SETTINGS, NOW)
    assert report.records_merged == 0
    assert await ids(repo) == {"fail-1", "fail-2"}


async def test_unresolved_records_merge_with_each_other(repo: MemoryRepository) -> None:
    await save(
        repo,
        record("fail-1", 2, fixed_by=None, attempts=("exec-1",)),
        record("fail-2", 1, fixed_by=None, attempts=("exec-2",)),
    )
    assert (await consolidate(repo, SETTINGS, NOW)).records_merged == 1
    [merged] = await repo.all_records()
    assert (merged.context.failure_id, merged.count, merged.resolution) == ("fail-2", 2, None)


async def test_open_records_are_never_merged(repo: MemoryRepository) -> None:
    await save(
        repo,
        record("fail-1", 2, fixed_by=None, attempts=()),
        record("fail-2", 1, fixed_by=None, attempts=()),
    )
    report = await consolidate(repo, SETTINGS, NOW)
    assert report.records_merged == 0
    assert await ids(repo) == {"fail-1", "fail-2"}


async def test_merging_can_be_turned_off(repo: MemoryRepository) -> None:
    await save(repo, record("fail-1", 2), record("fail-2", 1))
    report = await consolidate(repo, SETTINGS, NOW, merge=False)
    assert report.merge_groups == 0
    assert await ids(repo) == {"fail-1", "fail-2"}


async def test_the_extractor_sees_the_merged_memory_and_its_answer_is_reported(
    repo: MemoryRepository,
) -> None:
    await save(repo, record("fail-1", 2), record("fail-2", 1), record("fail-3", 1, fixed_by="bob"))
    seen: list[list[FailureRecord]] = []

    async def extract(records: list[FailureRecord]) -> int:
        seen.append(records)
        return 7

    report = await consolidate(repo, SETTINGS, NOW, extract=extract)
    assert report.patterns_extracted == 7
    [records] = seen
    assert sorted((r.context.failure_id, r.count) for r in records) == [
        ("fail-2", 2),
        ("fail-3", 1),
    ]
    assert (await consolidate(repo, SETTINGS, NOW)).patterns_extracted is None


async def save_pattern(
    repo: MemoryRepository, pattern_id: str, created_days_ago: float, uses: tuple[bool, ...] = ()
) -> None:
    created = NOW - timedelta(days=created_days_ago)
    await repo.save_pattern(
        pattern_id,
        error_id=ERROR_ID,
        component="mqtt",
        tokens=["refused"],
        fix_action="restart_service",
        fix_target="mosquitto",
        members=["fail-1"],
        now=created,
    )
    for resolved in uses:
        await repo.record_pattern_use(pattern_id, resolved, created)


async def test_patterns_unmatched_too_long_decay(repo: MemoryRepository) -> None:
    await save_pattern(repo, "never-matched-91", 91)
    await save_pattern(repo, "never-matched-89", 89)
    await save_pattern(repo, "matched-91", 91, uses=(True,))
    await save_pattern(repo, "matched-89-days-ago", 400)
    await repo.record_pattern_use("matched-89-days-ago", True, NOW - timedelta(days=89))

    report = await consolidate(repo, SETTINGS, NOW)
    assert report.patterns_deleted == 2
    assert [p.id for p in await repo.patterns()] == ["matched-89-days-ago", "never-matched-89"]


async def test_patterns_that_rarely_help_are_flagged_with_the_figures(
    repo: MemoryRepository,
) -> None:
    await save_pattern(repo, "poor", 1, uses=(True, False, False, False, False, False))
    await save_pattern(repo, "too-few-matches", 1, uses=(False,) * 5)
    await save_pattern(repo, "good-enough", 1, uses=(True, True, False, False, False, False))

    report = await consolidate(repo, SETTINGS, NOW)
    assert report.patterns_flagged == 1
    flagged = {p.id: p.flag_reason for p in await repo.patterns() if p.flagged_for_review}
    assert flagged == {"poor": "its fix resolved 1 of 6 matches (17%), below 20%"}


async def test_old_records_are_compressed_and_stay_valid(
    db: Database, repo: MemoryRepository
) -> None:
    old = record("fail-old", 366, fixed_by="alice", attempts=("exec-1",), count=4)
    await save(repo, old, record("fail-young", 364, fixed_by="alice"))

    report = await consolidate(repo, SETTINGS, NOW, merge=False)
    assert report.records_compressed == 1
    compressed = await repo.get("fail-old")  # parsed and validated again
    assert compressed is not None
    assert (compressed.context.recent_events, compressed.context.other_health) == ([], {})
    kept = ("error_id", "component", "detected_at", "message", "resources", "environment")
    for field in kept:
        assert getattr(compressed.context, field) == getattr(old.context, field)
    assert (compressed.resolution, compressed.count, compressed.attempts) == (
        old.resolution,
        4,
        old.attempts,
    )
    rows = await db.fetchall("SELECT failure_id, compressed FROM failure_memory ORDER BY 1")
    assert [tuple(r) for r in rows] == [("fail-old", 1), ("fail-young", 0)]
    young = await repo.get("fail-young")
    assert young is not None and young.context.recent_events != []


async def test_retention_depends_on_the_outcome_and_spares_open_records(
    repo: MemoryRepository,
) -> None:
    await save(
        repo,
        record("routine-181", 181),
        record("routine-179", 179),
        record("human-181", 181, fixed_by="alice"),
        record("human-731", 731, fixed_by="alice"),
        record("unresolved-181", 181, fixed_by=None),
        record("unresolved-731", 731, fixed_by=None),
        record("open-1000", 1000, fixed_by=None, attempts=()),
    )
    report = await consolidate(repo, SETTINGS, NOW, merge=False)
    assert (report.routine_deleted, report.escalated_deleted) == (1, 2)
    assert await ids(repo) == {"routine-179", "human-181", "unresolved-181", "open-1000"}
    # Records about to be deleted were not compressed first; the open one is left whole.
    assert report.records_compressed == 0


async def test_a_second_run_changes_nothing(
    db: Database, repo: MemoryRepository, caplog: pytest.LogCaptureFixture
) -> None:
    await save(
        repo,
        record("fail-1", 3),
        record("fail-2", 2),
        record("human-400a", 401, fixed_by="alice", attempts=("exec-1",)),
        record("human-400b", 400, fixed_by="bob", attempts=("exec-2",)),
        record("routine-200", 200, fix_target="knx-bridge"),
        record("open", 500, fixed_by=None, attempts=()),
    )
    await save_pattern(repo, "stale", 100)
    await save_pattern(repo, "poor", 1, uses=(False,) * 6)
    await db.execute(
        "INSERT INTO failure_memory (failure_id, error_id, component, detected_at, record,"
        " outcome, updated_at) VALUES ('bad', ?, 'mqtt', '2020-01-01T00:00:00.000Z', 'x',"
        " 'resolved_by_supervisor', '2020-01-01T00:00:00.000Z')",
        (ERROR_ID,),
    )

    first = await consolidate(repo, SETTINGS, NOW)
    assert first == ConsolidationReport(
        merge_groups=2,
        records_merged=2,
        patterns_deleted=1,
        patterns_flagged=1,
        records_compressed=1,
        routine_deleted=1,
    )
    snapshot = [tuple(r) for r in await db.fetchall("SELECT * FROM failure_memory ORDER BY 1")]
    patterns = await repo.patterns()

    caplog.clear()
    second = await consolidate(repo, SETTINGS, NOW + timedelta(minutes=1))
    assert second == ConsolidationReport()
    assert [tuple(r) for r in await db.fetchall("SELECT * FROM failure_memory ORDER BY 1")] == (
        snapshot
    )
    assert await repo.patterns() == patterns
    # The unreadable row is left alone (not deleted though past retention) and logged once a run.
    assert "bad" in {row[0] for row in snapshot}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "skipping failure memory record bad: not valid JSON (Invalid JSON: expected value at"
        " line 1 column 1)"
    ]


@pytest.mark.parametrize(
    "nonsense",
    [{"keep_routine_days": -1}, {"review_min_matches": -1}, {"review_success_below": 1.5}],
)
def test_nonsense_settings_are_refused(nonsense: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MemoryConfig(**nonsense)  # type: ignore[arg-type]
