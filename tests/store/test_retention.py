"""Retention: old records go in small batches; what is live, or counted, stays as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import RetentionConfig
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning_metrics import TABLES
from graylogic_supervisor.store.retention import RetentionStore
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
NOW = datetime(2026, 12, 6, 3, 45, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
LEARNING_TABLES = [
    "learning_version_metrics",
    "learning_step_metrics",
    "learning_step_pairs",
    "learning_paths",
    "learning_histograms",
]


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every learning aggregate, as rows (sorted): what learning reads its metrics from."""
    assert set(TABLES) == {"versions", "steps", "pairs", "paths", "histograms"}
    return {
        table: sorted(tuple(row) for row in await db.fetchall(f"SELECT * FROM {table}"))
        for table in LEARNING_TABLES
    }


async def metrics_read(sim: Any) -> tuple[Any, ...]:
    """What the learning's metrics service reports (the figures the analysis uses)."""
    metrics = sim.learning.metrics
    return (
        await metrics.version(PLAYBOOK, "1.0.0"),
        sorted(map(repr, await metrics.steps(PLAYBOOK, "1.0.0"))),
        sorted(map(repr, await metrics.paths(PLAYBOOK, "1.0.0"))),
    )


async def count(db: Database, table: str, where: str = "1") -> int:
    row = await db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE {where}")
    assert row is not None
    return int(row[0])


async def test_learning_metrics_keep_their_counts(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 40)
    before, read_before = await snapshot(db), await metrics_read(sim)
    steps_before = await count(db, "execution_steps")
    newest = await db.fetchone("SELECT MAX(started_at) FROM executions")
    assert newest is not None
    later = datetime.fromisoformat(newest[0]) + timedelta(days=400)

    report = await RetentionStore(
        db, RetentionConfig(executions_days=365, keep_recent_executions=0, batch_rows=50)
    ).run(later)

    assert report.removed["executions"] == 39  # all but the version's newest
    assert report.removed["execution_steps"] == steps_before - await count(db, "execution_steps")
    assert await count(db, "executions") == 1
    assert await snapshot(db) == before
    assert await metrics_read(sim) == read_before
    # a newer execution is still counted on top of the kept totals
    await run(sim, 1)
    version = await sim.learning.metrics.version(PLAYBOOK, "1.0.0")
    assert version is not None and version.executions == 41


async def insert_execution(
    db: Database,
    execution_id: str,
    *,
    started: datetime = OLD,
    status: str = "resolved",
    learned: int = 1,
    steps: int = 3,
    incident: str | None = None,
    version: str = "1.0.0",
) -> None:
    ended = None if status == "running" else isoformat(started + timedelta(seconds=30))
    await db.execute(
        "INSERT INTO executions (id, playbook_id, playbook_version, error_id, component,"
        " status, started_at, completed_at, learned, incident_id)"
        " VALUES (?, 'pb', ?, 'ERR-X', 'mqtt', ?, ?, ?, ?, ?)",
        (execution_id, version, status, isoformat(started), ended, learned, incident),
    )
    await db.executemany(
        "INSERT INTO execution_steps (execution_id, seq, step_id, name, action, started_at,"
        " outcome) VALUES (?, ?, ?, ?, 'log', ?, 'success')",
        [(execution_id, seq, f"s{seq}", f"S{seq}", isoformat(started)) for seq in range(steps)],
    )


async def playbook(db: Database, *versions: str) -> None:
    await db.execute("INSERT INTO playbooks (id, name, created_at) VALUES ('pb', 'pb', 'x')")
    for version in versions:
        await db.execute(
            "INSERT INTO playbook_versions (playbook_id, version, definition, source_yaml,"
            " created_at, created_by, reason) VALUES ('pb', ?, '{}', '', 'x', 'me', 'r')",
            (version,),
        )


async def incident(db: Database, incident_id: str, *, closed: bool = True) -> None:
    await db.execute(
        "INSERT INTO incidents (id, component, error_id, phase, opened_at, updated_at,"
        " closed_at) VALUES (?, 'mqtt', 'ERR-X', ?, ?, ?, ?)",
        (
            incident_id,
            "resolved" if closed else "executing",
            isoformat(OLD),
            isoformat(OLD),
            isoformat(OLD) if closed else None,
        ),
    )


async def remaining(db: Database) -> set[str]:
    return {str(row[0]) for row in await db.fetchall("SELECT id FROM executions")}


async def test_what_is_live_or_uncounted_is_never_removed(db: Database) -> None:
    await playbook(db, "1.0.0", "2.0.0", "3.0.0")
    await incident(db, "inc-open", closed=False)
    await incident(db, "inc-escalated")
    await incident(db, "inc-done")
    await db.execute(
        "INSERT INTO escalations (id, incident_id, component, severity, message, raised_at)"
        " VALUES ('esc-1', 'inc-escalated', 'mqtt', 'high', 'call', ?)",
        (isoformat(OLD),),
    )
    await db.execute(
        "INSERT INTO learning_trials (id, playbook_id, base_version, trial_version, share,"
        " started_at, started_by, status) VALUES ('t1', 'pb', '2.0.0', '3.0.0', 0.2, ?,"
        " 'me', 'running')",
        (isoformat(OLD),),
    )
    await insert_execution(db, "running", status="running")
    await insert_execution(db, "uncounted", learned=0)
    await insert_execution(db, "open-incident", incident="inc-open")
    await insert_execution(db, "escalated", incident="inc-escalated")
    await insert_execution(db, "trial-base", version="2.0.0")
    await insert_execution(db, "trial-base-newest", version="2.0.0", started=OLD + timedelta(1))
    await insert_execution(db, "old-1", incident="inc-done")
    await insert_execution(db, "old-2", started=OLD + timedelta(hours=1))
    await insert_execution(db, "recent", started=NOW - timedelta(days=10))

    report = await RetentionStore(db, RetentionConfig(keep_recent_executions=0)).run(NOW)

    assert await remaining(db) == {
        "running",
        "uncounted",
        "open-incident",
        "escalated",
        "trial-base",
        "trial-base-newest",
        "recent",  # younger than the limit, and the version's newest
    }
    assert report.removed["executions"] == 2
    assert report.removed["execution_steps"] == 6
    assert await count(db, "execution_steps", "execution_id IN ('old-1', 'old-2')") == 0
    # the closed incident no execution refers to any more went too; the others stay
    assert {str(r[0]) for r in await db.fetchall("SELECT id FROM incidents")} == {
        "inc-open",
        "inc-escalated",
    }


async def test_the_newest_runs_of_each_playbook_are_kept(db: Database) -> None:
    await playbook(db, "1.0.0")
    for index in range(10):
        await insert_execution(db, f"e{index}", started=OLD + timedelta(minutes=index))
    await RetentionStore(db, RetentionConfig(keep_recent_executions=4)).run(NOW)
    assert await remaining(db) == {"e6", "e7", "e8", "e9"}


async def test_batches_are_small_and_children_go_first(db: Database) -> None:
    await playbook(db, "1.0.0")
    for index in range(30):
        await insert_execution(db, f"e{index}", started=OLD + timedelta(minutes=index), steps=4)
    report = await RetentionStore(db, RetentionConfig(keep_recent_executions=0, batch_rows=10)).run(
        NOW
    )
    # each batch: whole executions with their steps, about 10 rows (2 executions of 5)
    assert report.removed == {"executions": 29, "execution_steps": 116}
    assert report.batches >= 15
    assert await remaining(db) == {"e29"}
    assert await count(db, "execution_steps") == 4


async def test_other_kinds_follow_their_own_limits(db: Database) -> None:
    await incident(db, "inc-1")
    await incident(db, "inc-open", closed=False)
    for index, incident_id in enumerate(["inc-1", "inc-1", "inc-open"]):
        await db.execute(
            "INSERT INTO viability_evaluations (incident_id, component, evaluated_at,"
            " allowed, reason, detail, attempts_in_window, max_attempts, breaker)"
            " VALUES (?, 'mqtt', ?, 1, 'ok', '', 1, 3, 'closed')",
            (incident_id, isoformat(OLD + timedelta(minutes=index))),
        )
    for failure_id in ("f-old", "f-remembered"):
        await db.execute(
            "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
            " VALUES (?, 'mqtt', 'ERR-X', 'high', 'down', ?)",
            (failure_id, isoformat(OLD)),
        )
    await db.execute(
        "INSERT INTO failure_memory (failure_id, error_id, component, detected_at, record,"
        " outcome, updated_at) VALUES ('f-remembered', 'ERR-X', 'mqtt', ?, '{}', 'open', ?)",
        (isoformat(OLD), isoformat(OLD)),
    )
    for command_id, applied in ((1, isoformat(OLD)), (2, None)):
        await db.execute(
            "INSERT INTO execution_commands (id, execution_id, command, issued_by, reason,"
            " issued_at, applied_at) VALUES (?, 'x', 'pause', 'me', 'r', ?, ?)",
            (command_id, isoformat(OLD), applied),
        )
    for analysis_id in ("a-old", "a-cited"):
        await db.execute(
            "INSERT INTO learning_analyses (id, started_at, finished_at, trigger,"
            " recommendations, report) VALUES (?, ?, ?, 'schedule', 0, '{}')",
            (analysis_id, isoformat(OLD), isoformat(OLD)),
        )
    await db.execute(
        "INSERT INTO learning_recommendations (id, playbook_id, base_version, type, priority,"
        " confidence, sample_size, summary, change, evidence, expected_impact, fingerprint,"
        " analysis_id, status, generated_at, expires_at) VALUES ('r1', 'pb', '1.0.0', 't',"
        " 'low', 0.9, 10, 's', '{}', '{}', '{}', 'fp', 'a-cited', 'pending', 'x', 'y')"
    )

    report = await RetentionStore(db, RetentionConfig()).run(NOW)

    assert report.removed["viability_evaluations"] == 2  # the open incident's stays
    assert await count(db, "viability_evaluations", "incident_id = 'inc-open'") == 1
    assert report.removed["incidents"] == 1
    assert report.removed["failures"] == 1
    assert await count(db, "failures", "id = 'f-remembered'") == 1
    assert report.removed["execution_commands"] == 1
    assert await count(db, "execution_commands", "applied_at IS NULL") == 1
    assert report.removed["learning_analyses"] == 1
    assert await count(db, "learning_analyses", "id = 'a-cited'") == 1


async def test_zero_days_keeps_a_kind_for_ever(db: Database) -> None:
    await playbook(db, "1.0.0")
    for index in range(3):
        await insert_execution(db, f"e{index}", started=OLD + timedelta(minutes=index))
    report = await RetentionStore(
        db, RetentionConfig(executions_days=0, keep_recent_executions=0)
    ).run(NOW + timedelta(days=3650))
    assert report.total == 0
    assert len(await remaining(db)) == 3
