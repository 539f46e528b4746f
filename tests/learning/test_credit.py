"""A fix is credited only on health, and no learned change drops the last verification.

Scenarios of shape 1 (actions succeed whether or not they fixed anything; only the
health step tells) run through the real simulator, runner, store and learning loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graylogic_supervisor.learning.cases import load_cases
from graylogic_supervisor.learning.changes import (
    AddCondition,
    AddStep,
    Change,
    RemoveStep,
    SetTimeout,
    apply_change,
)
from graylogic_supervisor.learning.safety import verification_guard
from graylogic_supervisor.learning.service import LearningError
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning import LearningRepository
from tests.learning.simulated import run, simulation
from tests.learning.test_service import NOW

PLAYBOOK = "PLAY-CACHE-001"

# restart_service always "works"; under stale_cache only clear_cache removes the fault
SCENARIO = """
name: cache-success-is-not-a-fix
playbook_file: playbook.yaml
trigger: {{component: cache, error_id: ERR-CACHE-001}}
causes: {{{causes}}}
actions:
  restart_service:
    duration_s: 10
    outcome: {{default: success, crashed: fix}}
  clear_cache:
    duration_s: 3
    outcome: {{default: success, stale_cache: fix}}
  wait_for_health:
    duration_s: 2
    outcome: health
manual:
  resolve_s: 1800
  fix_actions: {{stale_cache: clear_cache, crashed: restart_service}}
"""

HEADER = """
id: PLAY-CACHE-001
name: Cache recovery
version: 1.0.0
trigger: {component: cache, error_ids: [ERR-CACHE-001]}
steps:
"""

TWO_FIXES = """
  - {id: restart, name: Restart, action: restart_service, on_success: verify_restart}
  - {id: verify_restart, name: Verify, action: wait_for_health, on_success: done,
     on_failure: clear}
  - {id: clear, name: Clear the cache, action: clear_cache, on_success: verify}
  - {id: verify, name: Verify again, action: wait_for_health, on_success: done}
"""

RESTART_THEN_VERIFY = """
  - {id: restart, name: Restart, action: restart_service, on_success: verify}
  - {id: verify, name: Verify, action: wait_for_health, on_success: done}
"""

RESTART_ONLY = """
  - {id: restart, name: Restart, action: restart_service, on_success: done}
"""


async def started(db: Database, tmp_path: Path, steps: str, causes: str) -> Simulation:
    (tmp_path / "playbook.yaml").write_text(HEADER + steps)
    (tmp_path / "scenario.yaml").write_text(SCENARIO.format(causes=causes))
    scenario = load_scenario(tmp_path / "scenario.yaml")
    sim = await Simulation.start(db, scenario, SimulationOptions(seed=1))
    await sim.learning.users.add("ada", "admin", "correct horse battery", NOW)
    return sim


async def test_the_fix_credited_is_the_one_a_verification_found_healthy_after(
    db: Database, tmp_path: Path
) -> None:
    sim = await started(db, tmp_path, TWO_FIXES, "stale_cache: 1.0, crashed: 0.0")
    await run(sim, 12)
    rows = await db.fetchall("SELECT resolved_by, status, healthy_after FROM executions")
    # the restart succeeded every time, but only the cache clearing made it healthy
    assert {tuple(r) for r in rows} == {("clear", "resolved", 1)}
    memory = await db.fetchall("SELECT fix_action, outcome FROM failure_memory")
    assert {tuple(r) for r in memory} == {("clear_cache", "resolved_by_supervisor")}
    steps = {s.step_id: s for s in await sim.learning.metrics.steps(PLAYBOOK, "1.0.0")}
    assert steps["restart"].successes == 12 and steps["restart"].fixes == 0
    assert steps["clear"].fixes == 12
    data = await load_cases(LearningRepository(db), PLAYBOOK, sim.learning.specs, 100)
    assert {case.fixer for case in data.cases} == {"clear_cache"}
    assert not data.success_means_health("restart_service")  # 12 of 12 were not followed by it


async def test_a_run_that_reached_done_unhealthy_is_not_a_success(
    db: Database, tmp_path: Path
) -> None:
    sim = await started(db, tmp_path, RESTART_ONLY, "stale_cache: 1.0, crashed: 0.0")
    await run(sim, 12)
    rows = await db.fetchall("SELECT status, healthy_after FROM executions")
    assert {tuple(r) for r in rows} == {("resolved", 0)}
    version = await sim.learning.metrics.version(PLAYBOOK, "1.0.0")
    assert version is not None
    assert (version.executions, version.resolutions, version.success_rate) == (12, 0, 0.0)
    assert await sim.learning.metrics.counts(PLAYBOOK, ["1.0.0"]) == {"1.0.0": (0, 12)}
    (path,) = await sim.learning.metrics.paths(PLAYBOOK, "1.0.0")
    assert path.success_rate == 0.0
    steps = {s.step_id: s for s in await sim.learning.metrics.steps(PLAYBOOK, "1.0.0")}
    assert steps["restart"].fixes == 0
    # the technician's fix is what fixed these failures, and the restart's success did not
    data = await load_cases(LearningRepository(db), PLAYBOOK, sim.learning.specs, 100)
    (case,) = data.cases
    assert case.fixer == "clear_cache" and case.by_human
    assert case.outcomes()[("restart_service", False)] == ("success",)


async def test_a_learned_step_goes_to_a_verification_of_its_own_on_success(
    db: Database, tmp_path: Path
) -> None:
    sim = await started(db, tmp_path, RESTART_THEN_VERIFY, "stale_cache: 0.5, crashed: 0.5")
    await run(sim, 40)
    report = await sim.learning.analyze("test")
    (considered,) = [p["considered"] for p in report["playbooks"]]
    added = [c["change"] for c in considered if c["change"]["type"] == "add_step"]
    assert added and all(c["verification"]["action"] == "wait_for_health" for c in added)
    recs = [r for r in await sim.learning.store.listing("pending") if r.type == "add_step"]
    assert recs and all(r.change["step"]["action"] == "clear_cache" for r in recs)
    version = await sim.learning.approve(recs[0].id, "ada", "")
    playbook = await sim.versions.definition(PLAYBOOK, version)
    assert playbook is not None
    learned = playbook.step(recs[0].change["step"]["id"])
    check = playbook.step(learned.on_success)
    # its success is checked, and a check that fails goes on where its failure would
    assert check.action == "wait_for_health" and check.on_success == "done"
    assert playbook.resolve_transition(check, check.on_failure) == playbook.resolve_transition(
        learned, learned.on_failure
    )


async def test_success_means_health_only_from_enough_verified_successes(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 80)
    data = await load_cases(
        LearningRepository(db), "PLAY-MQTT-RECOVER-001", sim.learning.specs, 1000
    )
    # here a restart succeeds only when it fixed the broker: the verification always agreed
    healthy, successes = data.health_after_success["restart_service"]
    assert successes >= 20 and healthy == successes
    assert data.success_means_health("restart_service")
    assert not data.success_means_health("disk_cleanup")  # never ran: no evidence


@pytest.fixture
async def guarded(db: Database, tmp_path: Path) -> Simulation:
    sim = await started(db, tmp_path, RESTART_THEN_VERIFY, "stale_cache: 0.5, crashed: 0.5")
    await run(sim, 30)
    return sim


async def test_the_guard_refuses_to_remove_condition_or_bypass_the_verification(
    guarded: Simulation,
) -> None:
    sim = guarded
    current = await sim.versions.active_playbook(PLAYBOOK)
    assert current is not None
    specs = sim.learning.specs

    def guard(change: Change, means_health: bool = False) -> str | None:
        proposed = apply_change(current, change, "1.1.0", specs)
        return verification_guard(current, proposed, specs, lambda _: means_health)

    removed = guard(RemoveStep(step_id="verify", route_to="done"))
    assert removed is not None and "last health verification" in removed
    assert "verify" in removed
    conditioned = guard(AddCondition(step_id="verify", when="steps.restart.outcome == 'failure'"))
    assert conditioned is not None and "would run only when" in conditioned
    learned = {"id": "clear", "name": "Clear", "action": "clear_cache", "on_success": "done"}
    bypass = AddStep(step={**learned, "on_failure": "restart"}, before="restart")
    bypassed = guard(bypass)
    assert bypassed is not None and "clear (clear_cache) would lead to done on success" in bypassed
    # where the records show the action's success meant health, going to done is allowed
    assert guard(bypass, means_health=True) is None
    # a verification made cheaper is fine
    assert guard(SetTimeout(step_id="verify", timeout_seconds=5)) is None


async def test_an_approval_that_would_drop_the_verification_is_refused(
    guarded: Simulation,
) -> None:
    sim = guarded
    report = await sim.learning.analyze("test")
    recommended = [
        c["change"]
        for p in report["playbooks"]
        for c in p["considered"]
        if c["verdict"] == "recommended"
    ]
    assert recommended and not any(
        c.get("step_id") == "verify" and c["type"] in ("remove_step", "add_condition")
        for c in recommended
    )
    rec = (await sim.learning.store.listing("pending"))[0]
    for modified in (
        {"type": "remove_step", "step_id": "verify", "route_to": "done"},
        {"type": "add_condition", "step_id": "verify", "when": "steps.restart.outcome != 'x'"},
    ):
        with pytest.raises(LearningError, match="last health verification"):
            await sim.learning.approve(rec.id, "ada", "skip the check", modified)
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
