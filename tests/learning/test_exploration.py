"""What no execution recorded: a fix never tried first, a fix cut off by its timeout.

Each test fills a real store through the simulator (real runner, real learning
service) with one of the scenarios in ``tests/learning/scenarios``, runs the
analysis, and reads what it recommends as a person would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graylogic_supervisor.learning.changes import ReorderSteps, apply_change
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning import StoredRecommendation
from tests.learning.simulated import run

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


async def analysed(db: Database, name: str, incidents: int = 150) -> Simulation:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    sim = await Simulation.start(db, scenario, SimulationOptions(seed=0))
    await run(sim, incidents)
    await sim.learning.analyze("test")
    return sim


async def pending(sim: Simulation) -> list[StoredRecommendation]:
    return await sim.learning.store.listing("pending")


def considered(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for playbook in report["playbooks"] for entry in playbook["considered"]]


async def test_a_cheap_fix_nobody_ran_first_is_offered_as_a_trial(db: Database) -> None:
    sim = await analysed(db, "zigbee-reboot-first")

    reorders = [r for r in await pending(sim) if r.type == "reorder_steps"]
    assert len(reorders) == 1
    rec = reorders[0]
    assert rec.change["order"] == ["reinit", "reboot"]
    assert rec.summary.startswith("trial:")
    # it pays off if the re-initialisation fixes a few per cent of what the reboot fixes
    assert rec.expected_impact["break_even_fix_chance"] < 0.1
    assert rec.confidence == round(1 - rec.expected_impact["break_even_fix_chance"], 3)
    # what it costs if the cheap fix never works: a few seconds per failure, stated
    current = rec.expected_impact["resolution_time_s"]["current"]
    assert current < rec.expected_impact["if_it_never_fixes_s"] < current * 1.1


async def test_a_fix_cut_off_by_its_timeout_gets_more_time_and_is_never_dropped(
    db: Database,
) -> None:
    sim = await analysed(db, "historian-fsck-cut-off")

    recs = await pending(sim)
    timeouts = [r for r in recs if r.type == "set_timeout"]
    assert [r.change for r in timeouts] == [
        {"type": "set_timeout", "step_id": "fsck", "timeout_seconds": 120.0}
    ]
    assert timeouts[0].summary.startswith("trial:")
    # the check always timed out, so it never "fixed" anything, yet it is the fix:
    # nothing proposes to remove it or to run it less
    assert not [r for r in recs if r.type in ("remove_step", "add_condition")]


async def test_a_flaky_fix_with_retries_is_ranked_by_its_chance_over_all_its_tries(
    db: Database,
) -> None:
    sim = await analysed(db, "knx-flaky-reset-last")

    reorders = [r for r in await pending(sim) if r.type == "reorder_steps"]
    assert [(r.change["order"], r.summary.startswith("trial:")) for r in reorders] == [
        (["reset", "cycle"], False)
    ]
    impact = reorders[0].expected_impact["resolution_time_s"]
    assert impact["proposed"] < 0.8 * impact["current"]


async def test_a_fix_with_its_own_verification_moves_as_one_block(db: Database) -> None:
    scenario = load_scenario(SCENARIOS / "zigbee-reboot-first.yaml")
    sim = await Simulation.start(db, scenario, SimulationOptions(seed=0))
    playbook = await sim.versions.active_playbook(sim.playbook_id)
    assert playbook is not None

    changed = apply_change(
        playbook,
        ReorderSteps(chain=["reboot", "reinit"], order=["reinit", "reboot"]),
        "1.1.0",
        sim.learning.specs,
    )

    flow = [(s.id, s.on_success, s.on_failure) for s in changed.steps]
    assert flow == [
        ("reinit", "verify_reinit", "reboot"),
        ("verify_reinit", "done", "reboot"),
        ("reboot", "verify_reboot", "escalate"),
        ("verify_reboot", "done", "escalate"),
    ]
