"""Replay predicts what a version would have done; the rollback rule is a stated test."""

from __future__ import annotations

import math
import random

from graylogic_supervisor.learning.cases import load_cases
from graylogic_supervisor.learning.changes import AddStep, apply_change
from graylogic_supervisor.learning.replay import compare, mean_expectation, replay
from graylogic_supervisor.learning.rollback import rollback_test
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning import LearningRepository
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"


async def test_replaying_the_version_that_ran_gives_back_what_happened(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    times = await run(sim, 200)
    specs = sim.learning.specs
    data = await load_cases(LearningRepository(db), PLAYBOOK, specs, 1000)
    model = data.model(specs, 1800.0)
    playbook = await sim.versions.active_playbook(PLAYBOOK)
    assert playbook is not None
    expected = mean_expectation([(replay(playbook, c, model), n) for c, n in data.cases.items()])
    actual = sum(times) / len(times)
    assert abs(expected.time_s - actual) <= 0.01 * actual
    resolved = (await db.fetchone("SELECT AVG(status = 'resolved') FROM executions"))[0]
    assert math.isclose(expected.p_resolved, resolved, abs_tol=1e-9)


async def test_adding_the_fix_technicians_used_is_predicted_to_help(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 200)
    specs = sim.learning.specs
    data = await load_cases(LearningRepository(db), PLAYBOOK, specs, 1000)
    assert data.human_fixes["remove_firewall_rule"] > 40
    model = data.model(specs, 1800.0)
    playbook = await sim.versions.active_playbook(PLAYBOOK)
    assert playbook is not None
    step = {"id": "unblock", "name": "Unblock", "action": "remove_firewall_rule"}
    proposed = apply_change(
        playbook,
        AddStep(step={**step, "on_success": "done"}, before="check_broker"),
        "1.1.0",
        specs,
    )
    comparison = compare(playbook, proposed, data.cases, model, rng=random.Random(1))
    share = data.human_fixes["remove_firewall_rule"] / 200
    assert math.isclose(
        comparison.current.p_escalated - comparison.proposed.p_escalated, share, abs_tol=0.01
    )
    assert comparison.proposed.time_s < 0.7 * comparison.current.time_s
    assert comparison.confidence == 1.0


def test_one_bad_run_in_ten_does_not_roll_back() -> None:
    test = rollback_test(previous_successes=9, previous_n=10, new_successes=8, new_n=10)
    assert test is not None and not test.rollback


def test_a_consistent_drop_of_more_than_ten_points_rolls_back() -> None:
    test = rollback_test(previous_successes=95, previous_n=100, new_successes=10, new_n=20)
    assert test is not None and test.rollback
    assert "z =" in test.describe() and test.as_dict()["critical_z"] == 1.645


def test_a_drop_within_ten_points_is_kept_however_many_runs() -> None:
    test = rollback_test(previous_successes=900, previous_n=1000, new_successes=830, new_n=1000)
    assert test is not None and not test.rollback


def test_nothing_is_judged_before_ten_executions_of_each() -> None:
    assert rollback_test(previous_successes=9, previous_n=9, new_successes=0, new_n=40) is None
    assert rollback_test(previous_successes=90, previous_n=100, new_successes=0, new_n=9) is None
