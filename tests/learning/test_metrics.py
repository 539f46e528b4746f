"""Metrics per version, step and path: counted once per execution, matching the rows."""

from __future__ import annotations

import json
import math

from graylogic_supervisor.learning.metrics import LearningMetrics
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning_metrics import MetricsTables
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"


async def test_version_metrics_match_the_recorded_executions(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 60)
    metrics = await sim.learning.metrics.version(PLAYBOOK, "1.0.0")
    rows = await db.fetchall("SELECT status, duration_seconds FROM executions")
    resolved = sorted(r["duration_seconds"] for r in rows if r["status"] == "resolved")
    assert metrics is not None
    assert metrics.executions == 60
    assert metrics.resolutions == len(resolved)
    assert metrics.escalations == sum(1 for r in rows if r["status"] == "escalated")
    assert metrics.success_rate == len(resolved) / 60
    assert math.isclose(metrics.mean_resolution_s or 0, sum(resolved) / len(resolved))
    exact_p95 = resolved[math.ceil(0.95 * len(resolved)) - 1]
    assert metrics.p95_resolution_s is not None
    assert abs(metrics.p95_resolution_s - exact_p95) <= 0.025 * exact_p95


async def test_step_metrics_and_paths_follow_what_ran(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 60)
    steps = {s.step_id: s for s in await sim.learning.metrics.steps(PLAYBOOK, "1.0.0")}
    ran = await db.fetchall(
        "SELECT step_id, COUNT(DISTINCT execution_id) AS n,"
        " SUM(outcome = 'success') AS ok, AVG(duration_seconds) AS mean"
        " FROM execution_steps GROUP BY step_id"
    )
    for row in ran:
        step = steps[row["step_id"]]
        assert (step.executions, step.successes) == (row["n"], row["ok"])
        assert math.isclose(step.mean_duration_s or 0, row["mean"])
    # The check succeeds whenever the broker did not crash, and then restart does not run.
    assert steps["restart"].often_skipped_after == "check_broker_success"
    assert steps["check_broker"].fixes == 0
    assert (
        steps["restart"].fixes
        == (await db.fetchone("SELECT COUNT(*) FROM executions WHERE resolved_by = 'restart'"))[0]
    )
    paths = await sim.learning.metrics.paths(PLAYBOOK, "1.0.0")
    assert math.isclose(sum(p.frequency for p in paths), 1.0)
    by_path = {p.path: p for p in paths}
    assert by_path[("check_broker", "verify", "escalate")].success_rate == 0.0
    assert by_path[("check_broker", "restart", "verify", "done")].success_rate == 1.0


async def test_an_execution_is_counted_once_even_if_told_twice(db: Database) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 3)
    last = await db.fetchone("SELECT id FROM executions ORDER BY started_at DESC LIMIT 1")
    assert await sim.learning.after_execution(last["id"]) is None
    assert await sim.learning.metrics.apply(last["id"]) is None
    metrics = await sim.learning.metrics.version(PLAYBOOK, "1.0.0")
    assert metrics is not None and metrics.executions == 3


async def test_what_finished_uncounted_is_counted_at_the_next_start(db: Database) -> None:
    """A supervisor killed between an execution's end and its counting loses nothing."""
    sim = await simulation(db, "already-good")
    await run(sim, 4, count=False)
    assert await sim.learning.metrics.version(PLAYBOOK, "1.0.0") is None
    assert await sim.learning.catch_up() == 4
    assert await sim.learning.catch_up() == 0
    fresh = LearningMetrics(MetricsTables(db))  # as after a restart: nothing in memory
    metrics = await fresh.version(PLAYBOOK, "1.0.0")
    assert metrics is not None and metrics.executions == 4
    unlearned = await db.fetchone("SELECT COUNT(*) FROM executions WHERE learned = 0")
    assert unlearned[0] == 0


async def test_paths_are_stored_as_step_ids_then_the_end(db: Database) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 5)
    rows = await db.fetchall("SELECT path FROM learning_paths")
    for row in rows:
        path = json.loads(row["path"])
        assert path[0] == "check_broker" and path[-1] in ("done", "escalate")
