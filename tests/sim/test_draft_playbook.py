"""A site whose failure no playbook covers: technicians fix it by hand, the analysis
drafts a playbook from their fixes, a person approves it, and it then resolves the
failure without a technician; a draft that does worse than escalating is retired."""

from __future__ import annotations

from pathlib import Path

import pytest

from graylogic_supervisor.learning.draft_steps import playbook_id_for
from graylogic_supervisor.sim.scenario import ScenarioError, load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, simulate
from graylogic_supervisor.store.database import Database

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
DRAFT = playbook_id_for("ERR-SYS-MEM-001", "memory")
NEVER = 1e12  # no scheduled analysis inside a round: only the one at its end


async def test_an_approved_draft_resolves_without_a_technician(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "memory-uncovered.yaml")
    store = tmp_path / "site.db"
    options = SimulationOptions(
        incidents=60, rounds=2, auto_approve=True, analysis_interval_s=NEVER, store=store
    )
    report = await simulate(scenario, options)

    before, after = report["rounds"]
    assert before["playbook_version"] == "none"
    assert (before["resolved_by_playbook"], before["escalated"]) == (0, 60)
    assert before["mttr_s"] == scenario.manual.resolve_s  # every one waited for a person
    [draft] = [r for r in before["recommendations"] if r["type"] == "new_playbook"]
    assert draft["approved"] and draft["base_version"] == "none"

    assert after["playbook_version"] == "1.0.0"
    assert after["resolved_by_playbook"] >= 0.8 * after["incidents"]
    assert after["mttr_s"] < before["mttr_s"] / 3
    async with Database(store) as db:
        rows = await db.fetchall(
            "SELECT e.status, m.outcome, json_extract(m.record, '$.resolution.fixed_by') AS by"
            " FROM executions e JOIN failure_memory m ON m.failure_id = e.failure_id"
            " WHERE e.playbook_id = ? AND e.playbook_version = '1.0.0'",
            (DRAFT,),
        )
        resolved = [r for r in rows if r["status"] == "resolved"]
        assert len(resolved) == after["resolved_by_playbook"]
        assert {(r["outcome"], r["by"]) for r in resolved} == {
            ("resolved_by_supervisor", "supervisor")
        }
        approval = await db.fetchone(
            "SELECT actor FROM audit_log WHERE action = 'recommendation.approve' AND subject = ?",
            (DRAFT,),
        )
        assert approval is not None and approval["actor"] == "simulator"


UNHELPFUL = """\
name: memory-unhelpful
uncovered: true
trigger: {component: memory, error_id: ERR-SYS-MEM-001}
causes: {stray_process: 0.9, bridge_leak: 0.1}
actions:
  restart_service: {duration_s: 50, outcome: {default: failure, bridge_leak: fix}}
  kill_stray_process: {duration_s: 40, outcome: {default: failure, stray_process: fix}}
  wait_for_health: {duration_s: 5, outcome: health}
manual:
  resolve_s: 60     # the technician is on site and quick
  fix_actions: {stray_process: restart_service}   # what the technicians wrote down
"""


async def test_a_draft_that_does_worse_than_escalating_is_retired(tmp_path: Path) -> None:
    file = tmp_path / "memory-unhelpful.yaml"
    file.write_text(UNHELPFUL, encoding="utf-8")
    store = tmp_path / "site.db"
    options = SimulationOptions(
        incidents=30, rounds=3, auto_approve=True, analysis_interval_s=NEVER, store=store
    )
    report = await simulate(load_scenario(file), options)

    first, second, third = report["rounds"]
    assert first["playbook_version"] == "none"
    assert second["playbook_version"] == "1.0.0"
    assert second["resolved_by_playbook"] < second["incidents"] / 2
    assert second["rolled_back_to"] == "none"
    assert third["playbook_version"] == "none"  # escalated at once again, as before
    assert report["final_version"] == "none"
    # not drafted again: the retired draft's id is known to the store
    assert not [r for r in third["recommendations"] if r["type"] == "new_playbook"]
    async with Database(store) as db:
        version = await db.fetchone(
            "SELECT active, status FROM playbook_versions WHERE playbook_id = ?", (DRAFT,)
        )
        assert version is not None and (version["active"], version["status"]) == (0, "failed")
        rollback = await db.fetchone(
            "SELECT to_version, by, reason FROM version_rollbacks WHERE playbook_id = ?", (DRAFT,)
        )
        assert rollback is not None
        assert (rollback["to_version"], rollback["by"]) == ("none", "supervisor")
        assert "against 60 s escalating at once" in rollback["reason"]
        executions = await db.fetchone(
            "SELECT COUNT(*) FROM executions WHERE playbook_id = ?", (DRAFT,)
        )
        assert executions is not None and executions[0] == 10  # min_executions, then retired


def test_an_uncovered_scenario_names_no_playbook(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(UNHELPFUL.replace("uncovered: true", "uncovered: true\nplaybook: PLAY-X-001"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file)
    assert f"{file}:3: playbook: an uncovered scenario names no playbook" in str(caught.value)
