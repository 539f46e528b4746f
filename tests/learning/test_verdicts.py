"""What learning remembers after a version ran: rollbacks against the last version that
really ran (success and time), rejected changes, checked predictions, and the 30-day
window. Real simulator, store and LearningService."""

from __future__ import annotations

from datetime import datetime

from graylogic_supervisor.learning.rollback import (
    baseline_of,
    time_test,
)
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.sim.simulator import Simulation
from graylogic_supervisor.store.database import Database
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
NOW = datetime(2026, 1, 5, 8, 0).astimezone()
DAY_S = 86400.0


async def with_users(sim: Simulation) -> LearningService:
    await sim.learning.users.add("ada", "admin", "correct horse battery", NOW)
    return sim.learning


async def any_pending(learning: LearningService) -> list[str]:
    return [r.id for r in await learning.store.listing("pending")]


async def test_a_slower_version_is_judged_against_the_last_version_that_ran(
    db: Database,
) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 30)
    learning = await with_users(sim)
    await learning.analyze("test")
    first, second, *_ = await any_pending(learning)
    # Two approvals in a row: 1.0.1 never runs; 1.0.2 retries a check that always
    # fails, a minute apart: as successful as 1.0.0, four times as slow.
    harmless = {"type": "set_timeout", "step_id": "verify", "timeout_seconds": 25.0}
    slow = {
        "type": "set_retry",
        "step_id": "check_broker",
        "retry": {"attempts": 5, "backoff_seconds": 60.0},
    }
    assert await learning.approve(first, "ada", "tighter", harmless) == "1.0.1"
    assert await learning.approve(second, "ada", "be sure", slow) == "1.0.2"
    await run(sim, 40)
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    (rollback,) = await learning.store.rollbacks(PLAYBOOK)
    assert (rollback["from_version"], rollback["to_version"]) == ("1.0.2", "1.0.0")
    report = rollback["report"]
    assert report["baseline"]["skipped"] == [{"version": "1.0.1", "executions": 0}]
    assert "1.0.0 is the closest ancestor of 1.0.2" in report["baseline"]["why"]
    statistics = report["statistics"]
    assert statistics["rolled_back_on"] == ["resolution_time"]  # success did not drop
    assert statistics["resolution_time"]["ratio"] > 2
    assert [v["version"] for v in report["versions"]] == ["1.0.2", "1.0.1"]
    assert {c["version"] for c in report["changes"]} == {"1.0.1", "1.0.2"}
    assert set(report["rejected_recommendations"]) == {first, second}


async def test_a_version_as_fast_as_its_baseline_is_kept(db: Database) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 30)
    learning = await with_users(sim)
    await learning.analyze("test")
    rec_id, *_ = await any_pending(learning)
    same = {"type": "set_timeout", "step_id": "verify", "timeout_seconds": 25.0}
    await learning.approve(rec_id, "ada", "tighter", same)
    await run(sim, 80)
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.1"
    assert await learning.store.rollbacks(PLAYBOOK) == []


def test_the_time_test_needs_ten_of_each_and_a_clear_slowdown() -> None:
    base = [60.0, 70.0, 80.0, 65.0, 75.0, 62.0, 68.0, 71.0, 77.0, 66.0]
    assert time_test(base, [t * 3 for t in base[:9]]) is None
    slower = time_test(base, [t * 3 for t in base])
    assert slower is not None and slower.rollback and slower.ratio is not None
    assert abs(slower.ratio - 3.0) < 1e-9 and slower.critical_t > 1.645  # t, not normal
    a_bit = time_test(base, [t * 1.2 for t in base])
    assert a_bit is not None and not a_bit.rollback
    assert "1.25 times as slow" in slower.describe()


def test_the_baseline_skips_versions_that_never_ran() -> None:
    parents = {"1.0.0": None, "1.1.0": "1.0.0", "1.2.0": "1.1.0", "1.3.0": "1.2.0"}
    found = baseline_of("1.3.0", parents, {"1.0.0": 300, "1.1.0": 4}, 10)
    assert found is not None and found.version == "1.0.0"
    assert found.skipped == (("1.2.0", 0), ("1.1.0", 4))
    assert baseline_of("1.0.0", parents, {"1.0.0": 300}, 10) is None
    assert baseline_of("1.1.0", parents, {"1.0.0": 9}, 10) is None


async def test_a_rejected_change_is_not_proposed_again_until_its_evidence_triples(
    db: Database,
) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 30)
    learning = await with_users(sim)
    await learning.analyze("test")
    rejected = (await learning.store.listing("pending"))[0]
    await learning.reject(rejected.id, "ada", "check_broker tells the night shift what broke")
    again = await learning.analyze("test")  # the same 30 executions, the same window
    assert rejected.change not in [r.change for r in await learning.store.listing("pending")]
    (held,) = [h for h in again["playbooks"][0]["held_back"] if h["recommendation_id"]]
    assert (held["by"], held["reason"], held["executions"]) == (
        "ada",
        "check_broker tells the night shift what broke",
        30,
    )
    await run(sim, 40)  # 70 executions: not three times 30 yet
    await learning.analyze("test")
    pending = await learning.store.listing("pending")
    assert rejected.change not in [r.change for r in pending]
    await run(sim, 20)  # 90: the evidence tripled
    await learning.analyze("test")
    (back,) = [r for r in await learning.store.listing("pending") if r.change == rejected.change]
    earlier = back.evidence["earlier_rejection"]
    assert (earlier["recommendation_id"], earlier["by"], earlier["executions"]) == (
        rejected.id,
        "ada",
        30,
    )
    assert earlier["reason"] == "check_broker tells the night shift what broke"
    assert earlier["executions_now"] == 90 and back.as_dict()["evidence"] == back.evidence


async def test_a_change_rolled_back_is_not_proposed_again(db: Database) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 30)
    learning = await with_users(sim)
    await learning.analyze("test")
    rec_id, *_ = await any_pending(learning)
    await learning.approve(rec_id, "ada", "")
    rec = await learning.store.get(rec_id)
    assert rec is not None
    await learning.rollback(PLAYBOOK, "1.0.0", "ada", "the night shift wants it back")
    await learning.analyze("test")
    assert rec.change not in [r.change for r in await learning.store.listing("pending")]
    (rollback,) = await learning.store.rollbacks(PLAYBOOK)
    assert rollback["report"]["rejected_recommendations"] == [rec_id]


async def test_repeated_analyses_over_one_window_do_not_duplicate_pending(
    db: Database,
) -> None:
    sim = await simulation(db, "already-good")
    await run(sim, 30)
    learning = sim.learning
    first = await learning.analyze("test")
    second = await learning.analyze("test")
    assert first["recommendations"] and second["recommendations"] == []
    assert len(await learning.store.listing("pending")) == len(first["recommendations"])


async def test_a_low_volume_site_gets_recommendations_from_its_last_thirty_days(
    db: Database,
) -> None:
    """Four failures a week: each weekly analysis has four new executions, but the
    last 30 days hold ten by the third week."""
    sim = await simulation(db, "already-good")
    learning = sim.learning
    reports = []
    for _ in range(3):
        await run(sim, 4)
        await sim.clock.sleep(7 * DAY_S - 4 * 700)
        reports.append(await learning.analyze("schedule"))
    assert [r["recommendations"] == [] for r in reports] == [True, True, False]
    assert "4 executions of 1.0.0 in the analysis window" in reports[0]["playbooks"][0]["note"]
    await sim.clock.sleep(31 * DAY_S)  # a quiet month: nothing left in the window
    quiet = await learning.analyze("schedule")
    assert quiet["recommendations"] == [] and "0 executions" in quiet["playbooks"][0]["note"]


async def test_a_prediction_is_checked_against_what_the_version_did(db: Database) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 150)
    learning = await with_users(sim)
    await learning.analyze("test")
    [rec] = [
        r
        for r in await learning.store.listing("pending")
        if r.type == "add_step" and r.change["step"]["action"] == "remove_firewall_rule"
    ][:1]
    version = await learning.approve(rec.id, "ada", "")
    await run(sim, 9)
    report = await learning.analyze("test")
    assert rec.id not in report["predictions_checked"]  # 9 executions: not yet
    await run(sim, 31)
    report = await learning.analyze("test")
    assert rec.id in report["predictions_checked"]
    checked = await learning.store.get(rec.id)
    assert checked is not None and checked.prediction_check is not None
    pc = checked.prediction_check
    assert (pc["version"], pc["baseline_version"], pc["executions"]) == (version, "1.0.0", 40)
    times = pc["resolution_time_s"]
    assert times["predicted_change"] == rec.expected_impact["resolution_time_s"]["change"]
    assert times["realised_change"] < 0  # it did get faster
    bias = report["prediction_bias"]
    assert bias["checked_recommendations"] == 1
    assert bias["resolution_time_s"] == round(
        times["predicted_change"] - times["realised_change"], 2
    )
    assert checked.as_dict()["prediction_check"] == pc
