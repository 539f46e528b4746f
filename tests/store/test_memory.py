"""The failure memory store: records round-trip whole, outcomes follow one rule, a corrupt
row is reported without hiding the others, and pattern counters add up."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from graylogic_supervisor.domain.memory import (
    Attempt,
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import (
    CorruptRecordError,
    MemoryRepository,
    outcome_of,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ERROR_ID = "ERR-INFRA-MQTT-001"


@pytest.fixture
def repo(db: Database) -> MemoryRepository:
    return MemoryRepository(db)


def record(
    failure_id: str,
    *,
    attempts: tuple[Attempt, ...] = (),
    resolution: Resolution | None = None,
    count: int = 1,
) -> FailureRecord:
    detected = NOW - timedelta(minutes=5)
    return FailureRecord(
        context=FailureContext(
            failure_id=failure_id,
            incident_id=f"inc-{failure_id}",
            detected_at=detected,
            error_id=ERROR_ID,
            component="mqtt",
            severity="critical",
            message="connection refused on port 1883",
            other_health={"knx-bridge": "unhealthy", "database": "healthy"},
            recent_events=[
                RecentEvent(at=detected, kind="health", subject="mqtt", detail="probe failed"),
                RecentEvent(at=detected, kind="user", subject="alice", detail="config edit"),
            ],
            resources=Resources(
                memory_percent=41.5, disk_percent=77.0, cpu_percent=12.25, load_per_cpu=0.4
            ),
            environment=Environment(hour=11, weekday=3, uptime_s=86400.5),
        ),
        attempts=list(attempts),
        resolution=resolution,
        count=count,
    )


def attempt(execution_id: str, status: str = "escalated") -> Attempt:
    return Attempt(
        execution_id=execution_id, kind="playbook", playbook_id="mqtt-recovery", status=status
    )


def resolution(fixed_by: str = "supervisor") -> Resolution:
    return Resolution(
        resolved_at=NOW,
        fixed_by=fixed_by,
        what_fixed_it="restarted the broker",
        fix_action="restart_service",
        fix_target="mosquitto",
        root_cause="leaked file descriptors",
    )


async def test_save_then_get_round_trips_every_field_and_fills_the_columns(
    db: Database, repo: MemoryRepository
) -> None:
    original = record(
        "fail-1", attempts=(attempt("exec-1"), attempt("exec-2", "resolved")), count=3
    )
    original = original.model_copy(update={"resolution": resolution()})
    await repo.save(original, NOW)

    assert await repo.get("fail-1") == original
    row = await db.fetchone("SELECT * FROM failure_memory WHERE failure_id = 'fail-1'")
    assert row is not None
    assert dict(row) | {"record": None} == {
        "failure_id": "fail-1",
        "error_id": ERROR_ID,
        "component": "mqtt",
        "detected_at": "2026-11-26T11:55:00.000Z",
        "record": None,
        "outcome": "resolved_by_supervisor",
        "fix_action": "restart_service",
        "fix_target": "mosquitto",
        "count": 3,
        "compressed": 0,
        "updated_at": "2026-11-26T12:00:00.000Z",
    }


@pytest.mark.parametrize(
    ("attempts", "fixed_by", "outcome"),
    [
        ((), None, "open"),
        ((attempt("exec-1", "running"),), None, "open"),  # nothing finished yet
        ((attempt("exec-1", "failed"),), None, "unresolved"),
        ((attempt("exec-1", "resolved"),), "supervisor", "resolved_by_supervisor"),
        ((), "supervisor", "resolved_by_supervisor"),
        ((attempt("exec-1"),), "alice", "resolved_by_human"),
    ],
)
async def test_outcome_follows_the_resolution_then_the_finished_attempts(
    db: Database,
    repo: MemoryRepository,
    attempts: tuple[Attempt, ...],
    fixed_by: str | None,
    outcome: str,
) -> None:
    saved = record(
        "fail-1",
        attempts=attempts,
        resolution=None if fixed_by is None else resolution(fixed_by),
    )
    assert outcome_of(saved) == outcome
    await repo.save(saved, NOW)
    row = await db.fetchone("SELECT outcome FROM failure_memory")
    assert row is not None and row["outcome"] == outcome


async def test_save_replaces_the_record_with_the_same_failure_id(
    db: Database, repo: MemoryRepository
) -> None:
    await repo.save(record("fail-1"), NOW)
    await repo.save(record("fail-1", count=2), NOW + timedelta(minutes=1))
    rows = await db.fetchall("SELECT count, updated_at FROM failure_memory")
    assert [tuple(r) for r in rows] == [(2, "2026-11-26T12:01:00.000Z")]


async def test_attempts_and_resolution_are_added_to_the_stored_record(
    db: Database, repo: MemoryRepository
) -> None:
    await repo.save(record("fail-1"), NOW)
    assert await repo.add_attempt("fail-1", attempt("exec-1", "running"), NOW)
    assert await repo.add_attempt("fail-1", attempt("exec-1", "escalated"), NOW)  # same run, ended
    assert await repo.add_attempt("fail-1", attempt("exec-2", "failed"), NOW)
    stored = await repo.get("fail-1")
    assert stored is not None
    assert [(a.execution_id, a.status) for a in stored.attempts] == [
        ("exec-1", "escalated"),
        ("exec-2", "failed"),
    ]
    row = await db.fetchone("SELECT outcome, fix_action FROM failure_memory")
    assert row is not None and tuple(row) == ("unresolved", None)

    assert await repo.resolve("fail-1", resolution("bob"), NOW)
    stored = await repo.get("fail-1")
    assert stored is not None and stored.resolution == resolution("bob")
    assert len(stored.attempts) == 2
    row = await db.fetchone("SELECT outcome, fix_action, fix_target FROM failure_memory")
    assert row is not None
    assert tuple(row) == ("resolved_by_human", "restart_service", "mosquitto")


async def test_updated_since_returns_what_was_written_from_then_on(
    repo: MemoryRepository,
) -> None:
    await repo.save(record("fail-1"), NOW)
    await repo.save(record("fail-2"), NOW + timedelta(minutes=1))
    await repo.resolve("fail-1", resolution("alice"), NOW + timedelta(minutes=2))
    changed = await repo.updated_since(NOW + timedelta(minutes=1))
    assert [(r.context.failure_id, r.resolution is not None) for r in changed] == [
        ("fail-2", False),
        ("fail-1", True),
    ]
    assert await repo.updated_since(NOW + timedelta(minutes=3)) == []


async def test_unknown_failures_are_none_or_false(repo: MemoryRepository) -> None:
    assert await repo.get("nope") is None
    assert not await repo.add_attempt("nope", attempt("exec-1"), NOW)
    assert not await repo.resolve("nope", resolution(), NOW)
    assert await repo.delete(["nope"]) == 0


async def test_delete_forgets_only_the_named_records(repo: MemoryRepository) -> None:
    for failure_id in ("fail-1", "fail-2", "fail-3"):
        await repo.save(record(failure_id), NOW)
    assert await repo.delete(["fail-1", "fail-3", "nope"]) == 2
    assert [r.context.failure_id for r in await repo.all_records()] == ["fail-2"]


async def test_replace_refuses_when_a_record_changed_since_it_was_read(
    repo: MemoryRepository,
) -> None:
    await repo.save(record("fail-1"), NOW)
    await repo.save(record("fail-2"), NOW)
    read = await repo.all_records()
    await repo.add_attempt("fail-1", attempt("exec-9"), NOW)  # written meanwhile
    merged = read[1].model_copy(update={"count": 2})
    assert not await repo.replace(read, merged, NOW, compressed=False)
    assert len(await repo.all_records()) == 2  # nothing written, nothing deleted

    read = await repo.all_records()
    merged = read[1].model_copy(update={"count": 2})
    assert await repo.replace(read, merged, NOW, compressed=False)
    assert await repo.all_records() == [merged]


@pytest.mark.parametrize(
    ("stored_json", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"context": {"failure_id": "fail-2"}}', "not a valid FailureRecord: context.incident_id"),
        (record("fail-9").model_dump_json(), "its JSON is the record of failure fail-9"),
    ],
)
async def test_a_corrupt_row_is_a_clear_error_from_get_and_skipped_once_by_all_records(
    db: Database,
    repo: MemoryRepository,
    caplog: pytest.LogCaptureFixture,
    stored_json: str,
    reason: str,
) -> None:
    for failure_id in ("fail-1", "fail-2", "fail-3"):
        await repo.save(record(failure_id), NOW)
    await db.execute(
        "UPDATE failure_memory SET record = ? WHERE failure_id = 'fail-2'", (stored_json,)
    )

    with pytest.raises(CorruptRecordError, match=f"record fail-2 is corrupt: {reason}") as info:
        await repo.get("fail-2")
    assert info.value.failure_id == "fail-2"
    # Writes that must read the record first refuse too, and leave it as it was.
    with pytest.raises(CorruptRecordError):
        await repo.add_attempt("fail-2", attempt("exec-1"), NOW)

    caplog.set_level(logging.WARNING, logger="graylogic_supervisor.store.memory")
    loaded = await repo.all_records()
    assert [r.context.failure_id for r in loaded] == ["fail-1", "fail-3"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "fail-2" in warnings[0].getMessage() and reason in warnings[0].getMessage()
    row = await db.fetchone("SELECT record FROM failure_memory WHERE failure_id = 'fail-2'")
    assert row is not None and row["record"] == stored_json  # kept for a person to look at


# -- patterns ------------------------------------------------------------------


async def save_pattern(repo: MemoryRepository, pattern_id: str, now: datetime = NOW) -> None:
    await repo.save_pattern(
        pattern_id,
        error_id=ERROR_ID,
        component="mqtt",
        tokens=["refused", "connection", "port"],
        fix_action="restart_service",
        fix_target="mosquitto",
        members=["fail-2", "fail-1"],
        now=now,
    )


async def test_a_pattern_round_trips_with_its_json_columns_parsed(
    repo: MemoryRepository,
) -> None:
    await save_pattern(repo, "pat-1")
    pattern = await repo.pattern("pat-1")
    assert pattern is not None
    assert pattern.tokens == frozenset({"refused", "connection", "port"})
    assert pattern.members == ("fail-2", "fail-1")
    assert (pattern.fix_action, pattern.fix_target) == ("restart_service", "mosquitto")
    assert (pattern.created_at, pattern.last_matched) == (NOW, None)
    assert (pattern.times_matched, pattern.times_resolved) == (0, 0)
    assert (pattern.flagged_for_review, pattern.flag_reason) == (False, None)
    assert pattern.success_rate is None  # never matched: no evidence either way
    assert await repo.pattern("nope") is None


async def test_pattern_use_counts_matches_and_resolutions(repo: MemoryRepository) -> None:
    await save_pattern(repo, "pat-1")
    for minute, resolved in enumerate([True, False, True, True]):
        assert await repo.record_pattern_use("pat-1", resolved, NOW + timedelta(minutes=minute))
    assert not await repo.record_pattern_use("nope", True, NOW)
    pattern = await repo.pattern("pat-1")
    assert pattern is not None
    assert (pattern.times_matched, pattern.times_resolved) == (4, 3)
    assert pattern.success_rate == 0.75
    assert pattern.last_matched == NOW + timedelta(minutes=3)

    # Found again by extraction: what it is made of changes, its evidence stays.
    await save_pattern(repo, "pat-1", now=NOW + timedelta(days=1))
    again = await repo.pattern("pat-1")
    assert again is not None
    assert (again.created_at, again.times_matched, again.times_resolved) == (NOW, 4, 3)


async def test_patterns_are_flagged_listed_and_deleted(repo: MemoryRepository) -> None:
    for pattern_id in ("pat-1", "pat-2", "pat-3"):
        await save_pattern(repo, pattern_id)
    assert await repo.flag_pattern("pat-2", "rarely helps")
    assert not await repo.flag_pattern("nope", "x")
    assert await repo.delete_patterns(["pat-1", "nope"]) == 1
    listed = await repo.patterns()
    assert [(p.id, p.flagged_for_review, p.flag_reason) for p in listed] == [
        ("pat-2", True, "rarely helps"),
        ("pat-3", False, None),
    ]
