"""Recommendations from recorded history, and every decision on them, as a user sees it."""

from __future__ import annotations

from datetime import datetime

import pytest

from graylogic_supervisor.learning.service import LearningError, LearningService
from graylogic_supervisor.sim.simulator import Simulation
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.users import UserError
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
NOW = datetime(2026, 1, 5, 8, 0).astimezone()


async def analysed(
    db: Database, name: str = "mqtt-mixed-causes", incidents: int = 150
) -> Simulation:
    sim = await simulation(db, name)
    await run(sim, incidents)
    await sim.learning.users.add("ada", "admin", "correct horse battery", NOW)
    await sim.learning.users.add("olu", "system_owner", "correct horse battery", NOW)
    await sim.learning.users.add("vic", "viewer", "correct horse battery", NOW)
    await sim.learning.analyze("test")
    return sim


async def pending_of(learning: LearningService, change_type: str) -> str:
    recs = [r for r in await learning.store.listing("pending") if r.type == change_type]
    assert recs, f"no pending {change_type}"
    return recs[0].id


async def test_an_analysis_recommends_the_missing_fix_with_its_evidence(db: Database) -> None:
    sim = await analysed(db)
    recs = await sim.learning.store.listing("pending")
    added = {r.change["step"]["action"]: r for r in recs if r.type == "add_step"}
    assert set(added) == {"remove_firewall_rule", "disk_cleanup"}
    rec = added["remove_firewall_rule"]
    assert rec.base_version == "1.0.0" and rec.sample_size == 150
    assert rec.confidence >= 0.8 and rec.priority == "high"
    executions = rec.evidence["execution_ids"]
    assert executions and all(
        [await db.fetchone("SELECT 1 FROM executions WHERE id = ?", (e,)) for e in executions]
    )
    assert rec.evidence["pattern"]["occurrences"] > 30
    impact = rec.expected_impact
    assert impact["resolution_time_s"]["change"] < 0
    assert impact["escalation_rate"]["proposed"] < impact["escalation_rate"]["current"]
    assert "replay of 150 recorded executions" in impact["method"]
    shape = rec.as_dict()
    assert {"recommendation_type", "priority", "confidence", "evidence", "expected_impact"} <= set(
        shape
    )


async def test_nothing_is_recommended_from_fewer_than_ten_executions(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 8)
    report = await sim.learning.analyze("test")
    assert report["recommendations"] == []
    assert "fewer than 10" in report["playbooks"][0]["note"]


async def test_approval_makes_a_new_active_version_with_its_story(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    version = await sim.learning.approve(rec_id, "ada", "firewall updates keep blocking 1883")
    assert version == "1.1.0"
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"
    info = await sim.versions.version_info(PLAYBOOK, "1.1.0")
    assert info is not None
    assert (info["parent_version"], info["approved_by"], info["recommendation_id"]) == (
        "1.0.0",
        "ada",
        rec_id,
    )
    assert info["changes"]["changes"][0]["type"] == "add_step"
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None and (rec.status, rec.new_version, rec.decided_by) == (
        "approved",
        "1.1.0",
        "ada",
    )
    with pytest.raises(LearningError, match="approved, not pending"):
        await sim.learning.approve(rec_id, "ada", "again")
    actions = [e["action"] for e in await AuditLog(db).entries()]
    assert "recommendation.approve" in actions


async def test_only_admins_and_system_owners_decide(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    with pytest.raises(UserError, match="viewer"):
        await sim.learning.approve(rec_id, "vic", "")
    with pytest.raises(UserError, match="no user 'mallory'"):
        await sim.learning.reject(rec_id, "mallory", "no")
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    await sim.learning.approve(rec_id, "olu", "")
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"


async def test_a_rejection_needs_a_reason_and_is_kept(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    with pytest.raises(LearningError, match="reason"):
        await sim.learning.reject(rec_id, "ada", "  ")
    await sim.learning.reject(rec_id, "ada", "we fix the firewall policy instead")
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None and rec.status == "rejected"
    assert rec.decision_reason == "we fix the firewall policy instead"


async def test_a_modified_change_is_validated_before_it_is_saved(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None
    broken = {**rec.change, "before": "no_such_step", "after_failure_of": None}
    with pytest.raises(LearningError, match="no step 'no_such_step'"):
        await sim.learning.approve(rec_id, "ada", "edited", broken)
    with pytest.raises(LearningError, match="timeout_seconds"):
        await sim.learning.approve(
            rec_id,
            "ada",
            "edited",
            {"type": "set_timeout", "step_id": "restart", "timeout_seconds": -1},
        )
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    edited = {**rec.change, "step": {**rec.change["step"], "timeout_seconds": 12.0}}
    version = await sim.learning.approve(rec_id, "ada", "shorter timeout", edited)
    playbook = await sim.versions.definition(PLAYBOOK, version)
    assert playbook is not None
    assert playbook.step(rec.change["step"]["id"]).timeout_seconds == 12.0
    stored = await sim.learning.store.get(rec_id)
    assert stored is not None and stored.change == edited


async def test_undecided_recommendations_are_archived_after_seven_days(db: Database) -> None:
    sim = await analysed(db)
    pending = await sim.learning.store.listing("pending")
    await sim.clock.sleep(6 * 86400)
    assert await sim.learning.expire() == []
    await sim.clock.sleep(86400 + 1)
    assert sorted(await sim.learning.expire()) == sorted(r.id for r in pending)
    assert await sim.learning.store.listing("pending") == []
    with pytest.raises(LearningError, match="archived"):
        await sim.learning.approve(pending[0].id, "ada", "")


async def test_a_version_that_does_worse_is_rolled_back_with_a_report(db: Database) -> None:
    alerts: list[tuple[str, str, dict[str, str]]] = []
    sim = await simulation(db, "already-good", alert=lambda *a: alerts.append(a))
    await run(sim, 30)
    await sim.learning.users.add("ada", "admin", "correct horse battery", NOW)
    await sim.learning.analyze("test")
    # A person edits a recommendation badly: the restart is dropped, nothing fixes the broker.
    rec_id = await pending_of(sim.learning, "remove_step")
    await sim.learning.approve(
        rec_id,
        "ada",
        "trust the check",
        {"type": "remove_step", "step_id": "restart", "route_to": "verify"},
    )
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"
    await run(sim, 12)
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    info = await sim.versions.version_info(PLAYBOOK, "1.1.0")
    assert info is not None and info["status"] == "failed"
    (rollback,) = await sim.learning.store.rollbacks(PLAYBOOK)
    assert (rollback["from_version"], rollback["to_version"], rollback["by"]) == (
        "1.1.0",
        "1.0.0",
        "supervisor",
    )
    report = rollback["report"]
    statistics = report["statistics"]
    assert statistics["rollback"] is True and statistics["baseline_version"] == "1.0.0"
    assert set(statistics["rolled_back_on"]) == {"success_rate", "resolution_time"}
    assert statistics["success_rate"]["new_executions"] >= 10
    baseline = report["baseline"]
    assert baseline["version"] == "1.0.0" and "closest ancestor" in baseline["why"]
    assert report["unresolved_executions"] and report["changes"][0]["type"] == "remove_step"
    assert [v["approved_by"] for v in report["versions"]] == ["ada"]
    assert report["rejected_recommendations"] == [rec_id]
    assert alerts and "rolled back" in alerts[0][1]


async def test_a_person_can_roll_back_to_any_earlier_version(db: Database) -> None:
    sim = await analysed(db)
    await sim.learning.approve(await pending_of(sim.learning, "add_step"), "ada", "")
    assert (
        await sim.learning.rollback(PLAYBOOK, "1.0.0", "olu", "night shift prefers it") == "1.1.0"
    )
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    with pytest.raises(LearningError, match="already the active"):
        await sim.learning.rollback(PLAYBOOK, "1.0.0", "olu", "again")
    with pytest.raises(LearningError, match=r"no version 9\.9\.9"):
        await sim.learning.rollback(PLAYBOOK, "9.9.9", "olu", "typo")
    with pytest.raises(UserError):
        await sim.learning.rollback(PLAYBOOK, "1.1.0", "vic", "viewer")
    (rollback,) = await sim.learning.store.rollbacks(PLAYBOOK)
    assert (rollback["by"], rollback["reason"]) == ("olu", "night shift prefers it")


async def test_two_versions_diff_as_yaml(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    await sim.learning.approve(rec_id, "ada", "")
    diff = await sim.learning.diff(PLAYBOOK, "1.0.0", "1.1.0")
    assert diff.startswith(f"--- {PLAYBOOK} 1.0.0\n+++ {PLAYBOOK} 1.1.0\n")
    assert "+version: 1.1.0" in diff and "+  action: " in diff


async def test_a_learned_pattern_for_the_missing_fix_is_part_of_the_evidence(
    db: Database,
) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 150)
    members = [
        row["failure_id"]
        for row in await db.fetchall(
            "SELECT failure_id FROM failure_memory WHERE fix_action = 'remove_firewall_rule'"
            " LIMIT 5"
        )
    ]
    await MemoryRepository(db).save_pattern(
        "pat-firewall",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        tokens=["mqtt", "failed"],
        fix_action="remove_firewall_rule",
        fix_target=None,
        members=members,
        now=NOW,
    )
    await sim.learning.analyze("test")
    recs = await sim.learning.store.listing("pending")
    [firewall] = [r for r in recs if r.type == "add_step" and "remove_firewall" in r.summary]
    [pattern] = firewall.evidence["learned_patterns"]
    assert (pattern["pattern_id"], pattern["failures"]) == ("pat-firewall", 5)
