"""Trial versions (BR-WF-034): a change run on a share of real incidents beside its base,
promoted or dropped by its own figures, through the real simulator, runner and store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.learning.comparison import LOOKS, decide_trial
from graylogic_supervisor.learning.rejections import change_key
from graylogic_supervisor.learning.rollback import VersionSample
from graylogic_supervisor.learning.service import LearningError
from graylogic_supervisor.learning.trials import TrialArms, in_trial
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.trials import TrialRepository
from graylogic_supervisor.store.users import UserError
from tests.learning.simulated import run

PLAYBOOK = "PLAY-CACHE-RECOVER-001"
NOW = datetime(2026, 1, 5, 8, 0).astimezone()

# A cache server whose cache goes stale (a re-initialisation of seconds fixes it) or
# corrupt (only a reboot of minutes does). The playbook reboots at once: it always
# works, so no recorded execution ever shows the cheap fix first (replay cannot judge it).
SCENARIO = """
name: cache-reboot
playbook_file: cache.yaml
trigger: {component: cache, error_id: ERR-CACHE-001}
causes: {stale: 0.8, corrupt: 0.2}
actions:
  reinit_cache: {duration_s: 4, outcome: {default: failure, stale: fix}}
  reboot_host: {duration_s: 240, outcome: {default: fix}}
  probe_cache: {duration_s: 2, outcome: health}
manual: {resolve_s: 1800, fix_actions: {stale: reinit_cache, corrupt: reboot_host}}
"""
PLAYBOOK_YAML = """
id: PLAY-CACHE-RECOVER-001
name: Cache server recovery
version: 1.0.0
trigger: {component: cache, error_ids: [ERR-CACHE-001]}
limits: {max_attempts: 2, cooldown_seconds: 60, timeout_seconds: 900}
steps:
  - {id: reboot, name: Reboot the host, action: reboot_host, timeout_seconds: 600,
     on_success: verify, on_failure: escalate}
  - {id: verify, name: Probe the cache, action: probe_cache, timeout_seconds: 30,
     on_success: done, on_failure: escalate}
"""
CHEAP_FIRST = {
    "type": "add_step",
    "before": "reboot",
    "step": {
        "id": "reinit",
        "name": "Re-initialise the cache",
        "action": "reinit_cache",
        "timeout_seconds": 30,
        "on_success": "verify",
    },
}
# Worse: a reboot cut off at a minute never completes, and every incident escalates.
CUT_OFF = {"type": "set_timeout", "step_id": "reboot", "timeout_seconds": 60}


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, severity: str, message: str, context: dict[str, str]) -> None:
        self.sent.append((severity, message))


async def cache_site(
    db: Database, tmp_path: Path, alerts: Alerts | None = None, incidents: int = 30
) -> Simulation:
    """The cache scenario with ``incidents`` already recorded, and people to decide."""
    (tmp_path / "cache.yaml").write_text(PLAYBOOK_YAML)
    (tmp_path / "cache-reboot.yaml").write_text(SCENARIO)
    scenario = load_scenario(tmp_path / "cache-reboot.yaml")
    sim = await Simulation.start(
        db, scenario, SimulationOptions(incidents=100, seed=3), alert=alerts
    )
    await run(sim, incidents)
    await sim.learning.users.add("ada", "admin", "correct horse battery", NOW)
    await sim.learning.users.add("vic", "viewer", "correct horse battery", NOW)
    return sim


async def propose(
    sim: Simulation, change: dict[str, Any], trial: bool = True, rec_id: str = "rec-trial-1"
) -> str:
    """A recommendation as the analysis stores one that replay cannot judge."""
    await sim.learning.store.add_recommendation(
        {
            "id": rec_id,
            "playbook_id": PLAYBOOK,
            "base_version": "1.0.0",
            "type": change["type"],
            "priority": "medium",
            "confidence": 0.9,
            "sample_size": 30,
            "summary": f"try {change['type']}",
            "change": change,
            "evidence": {},
            "expected_impact": {
                key: {"current": 0.0, "proposed": 0.0, "change": change}
                for key, change in (
                    ("success_rate", 0.0),
                    ("resolution_time_s", -100.0),
                    ("escalation_rate", 0.0),
                )
            },
            "fingerprint": rec_id,
            "trial": int(trial),
            "status": "pending",
            "generated_at": "2026-01-05T08:00:00.000Z",
            "expires_at": "2027-01-05T08:00:00.000Z",
        }
    )
    return rec_id


async def versions_run(db: Database, since: str) -> dict[str, int]:
    rows = await db.fetchall(
        "SELECT playbook_version AS v, COUNT(*) AS n FROM executions"
        " WHERE started_at >= ? GROUP BY playbook_version",
        (since,),
    )
    return {row["v"]: row["n"] for row in rows}


async def until_decided(sim: Simulation, trial_id: str, most: int = 400) -> int:
    """Incidents until the trial is decided; fails past ``most``."""
    trials = sim.learning.trials.store
    for count in range(1, most + 1):
        await run(sim, 1)
        found = await trials.get(trial_id)
        assert found is not None
        if found.status != "running":
            return count
    raise AssertionError(f"trial {trial_id} undecided after {most} incidents")


# --- which arm an incident gets ------------------------------------------------------------


def test_a_trial_takes_its_share_of_failures_and_the_same_failure_stays_in_its_arm() -> None:
    failures = [f"fail-{n}" for n in range(4000)]
    chosen = [f for f in failures if in_trial("trial-a", f, 0.2)]
    assert 0.18 < len(chosen) / len(failures) < 0.22
    assert chosen == [f for f in failures if in_trial("trial-a", f, 0.2)]  # a retry: same arm
    other = {f for f in failures if in_trial("trial-b", f, 0.2)}
    assert other != set(chosen)  # another trial draws its own share
    assert {f for f in failures if in_trial("trial-a", f, 0.5)} >= set(chosen)


async def test_safe_mode_and_a_replaced_base_run_the_active_version(
    db: Database, tmp_path: Path
) -> None:
    sim = await cache_site(db, tmp_path, incidents=0)
    version = await sim.learning.approve(await propose(sim, CHEAP_FIRST), "ada", "try it")
    arms = TrialArms(TrialRepository(db), sim.versions)
    active = await sim.versions.active_playbook(PLAYBOOK)
    assert active is not None
    failures = [f"fail-{n}" for n in range(200)]
    picked = [(await arms.choose(active, f)).version for f in failures]
    assert picked.count(version) > 20 and picked.count("1.0.0") > 100
    safe = [(await arms.choose(active, f, safe_mode=True)).version for f in failures]
    assert set(safe) == {"1.0.0"}
    other = Playbook.model_validate({**active.model_dump(), "version": "0.9.0"})
    assert {(await arms.choose(other, f)).version for f in failures} == {"0.9.0"}


# --- the decision --------------------------------------------------------------------------


def arm(
    version: str, resolved: int, failed: int, seconds: float, spread: float = 10
) -> VersionSample:
    """An arm's sample: each unresolved execution costs a technician's 1,800 s more."""
    times = [seconds + spread * (i % 3 - 1) for i in range(resolved)]
    times += [seconds + 1800 for _ in range(failed)]
    return VersionSample(version, resolved, resolved + failed, tuple(times))


def test_a_trial_faster_in_most_incidents_is_promoted_though_technicians_swamp_the_means() -> None:
    # both arms send 3 in 40 to a technician (1,800 s): the means' spread hides a saving
    # of a minute in every other incident, the ranks do not
    base = arm("1", 148, 12, 90, spread=20)
    trial = arm("2", 37, 3, 30, spread=20)
    result = decide_trial(base, trial, 10, 2)
    assert result.decision == "promote" and "faster in most incidents" in result.reason
    # the same ranks with a longer tail: the mean is not lower, so nothing is promoted
    slow_tail = arm("2", 35, 5, 30, spread=20)
    assert decide_trial(base, slow_tail, 10, 2).decision != "promote"


def test_nothing_is_decided_before_each_arm_has_its_minimum() -> None:
    result = decide_trial(arm("1", 40, 0, 300), arm("2", 9, 0, 10), 10, 0)
    assert result.decision is None and "waiting for 10" in result.reason


def test_a_faster_trial_that_resolves_as_often_is_promoted_at_a_look() -> None:
    result = decide_trial(arm("1", 40, 0, 300), arm("2", 10, 0, 60), 10, 0)
    assert result.decision == "promote" and result.look == 1
    assert "faster" in result.reason and result.as_dict()["trial"]["executions"] == 10
    # Between looks, only harm is acted on.
    between = decide_trial(arm("1", 40, 0, 300), arm("2", 11, 0, 60), 10, 1)
    assert between.decision is None and "no look due" in between.reason


def test_a_trial_that_resolves_less_is_dropped_even_when_faster() -> None:
    result = decide_trial(arm("1", 40, 0, 300), arm("2", 3, 8, 20), 10, 0)
    assert result.decision == "drop" and "success rate" in result.reason


def test_a_slower_trial_is_dropped_at_once() -> None:
    result = decide_trial(arm("1", 40, 0, 100), arm("2", 12, 0, 400), 10, 1)
    assert result.decision == "drop" and result.reason.startswith("worse: mean resolution")
    assert result.as_dict()["rollback_rule"]["rolled_back_on"] == ["resolution_time"]
    # Slower, short of what rolls a version back: a trial must do better, so it goes too.
    result = decide_trial(arm("1", 40, 0, 100), arm("2", 12, 0, 115), 10, 1)
    assert result.decision == "drop" and result.reason.startswith("slower")


def test_a_trial_no_better_is_dropped_at_the_last_look() -> None:
    same = arm("2", 80, 0, 300)
    result = decide_trial(arm("1", 320, 0, 300), same, 10, LOOKS - 1)
    assert result.decision == "drop" and result.look == LOOKS == 4
    assert "not shown better after 80 trial executions" in result.reason
    # Looks come at 10, 20, 40, 80 trial executions: none is due at 30, the third at 40.
    assert decide_trial(arm("1", 200, 0, 300), arm("2", 30, 0, 300), 10, 2).look == 2
    third = decide_trial(arm("1", 200, 0, 300), arm("2", 40, 0, 300), 10, 2)
    assert third.decision is None and "look 3 of 4" in third.reason


# --- through the real simulator and the service --------------------------------------------


async def test_a_better_trial_is_promoted_with_both_arms_recorded(
    db: Database, tmp_path: Path
) -> None:
    alerts = Alerts()
    sim = await cache_site(db, tmp_path, alerts)
    rec_id = await propose(sim, CHEAP_FIRST)
    version = await sim.learning.approve(rec_id, "ada", "the cache is mostly just stale")
    assert version == "1.1.0"
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"  # the base stays
    [trial] = await sim.learning.trials.store.listing("running")
    assert (trial.base_version, trial.trial_version, trial.share) == ("1.0.0", "1.1.0", 0.2)
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None and (rec.status, rec.new_version, rec.trial) == (
        "approved",
        "1.1.0",
        True,
    )
    took = await until_decided(sim, trial.id)
    decided = await sim.learning.trials.store.get(trial.id)
    assert decided is not None and decided.status == "promoted", decided.reason
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"
    info = await sim.versions.version_info(PLAYBOOK, "1.1.0")
    assert info is not None and info["parent_version"] == "1.0.0"
    ran = await versions_run(db, trial.started_at)
    assert ran["1.1.0"] >= 10 and ran["1.0.0"] >= 10  # both arms, each its own version
    assert 0.1 < ran["1.1.0"] / took < 0.35
    stats = decided.statistics
    assert stats is not None
    assert stats["trial"]["mean_resolution_s"] < stats["base"]["mean_resolution_s"] / 2
    entries = [e for e in reversed(await AuditLog(db).entries()) if e["action"].startswith("trial")]
    assert [e["action"] for e in entries] == ["trial.start", "trial.promote"]
    assert '"statistics"' in entries[1]["detail"] and entries[1]["actor"] == "supervisor"
    assert any(sev == "info" and "1.1.0 promoted" in m for sev, m in alerts.sent)


async def test_a_worse_trial_is_dropped_and_the_base_stays(db: Database, tmp_path: Path) -> None:
    alerts = Alerts()
    sim = await cache_site(db, tmp_path, alerts)
    rec_id = await propose(sim, CUT_OFF)
    version = await sim.learning.approve(rec_id, "ada", "shorter timeout", share=0.5)
    [trial] = await sim.learning.trials.store.listing("running")
    assert (trial.trial_version, trial.share) == (version, 0.5)
    await until_decided(sim, trial.id)
    decided = await sim.learning.trials.store.get(trial.id)
    assert decided is not None and decided.status == "dropped"
    assert decided.reason is not None and "worse" in decided.reason
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    # The next incidents run the base only.
    since = sim.clock.now().isoformat()
    await run(sim, 10)
    assert set(await versions_run(db, since)) == {"1.0.0"}
    assert any(sev == "warning" and "dropped" in m for sev, m in alerts.sent)
    actions = [e["action"] for e in await AuditLog(db).entries()]
    assert "trial.drop" in actions
    # Remembered as a rejected change: the analysis holds it back until evidence grows.
    rejected = (await sim.learning.rejections.latest(PLAYBOOK))[change_key(PLAYBOOK, CUT_OFF)]
    assert (rejected.kind, rejected.by, rejected.version) == ("rejected", "supervisor", version)
    assert rejected.reason.startswith("trial dropped: worse")


async def test_one_trial_at_a_time_and_a_person_can_stop_it(db: Database, tmp_path: Path) -> None:
    sim = await cache_site(db, tmp_path, incidents=0)
    first = await propose(sim, CHEAP_FIRST)
    second = await propose(sim, CUT_OFF, rec_id="rec-trial-2")
    await sim.learning.approve(first, "ada", "")
    with pytest.raises(LearningError, match="already has a trial running"):
        await sim.learning.approve(second, "ada", "")
    with pytest.raises(LearningError, match="between 0 and 1"):
        await sim.learning.approve(second, "ada", "", trial=True, share=1.5)
    [trial] = await sim.learning.trials.store.listing("running")
    with pytest.raises(LearningError, match="needs a reason"):
        await sim.learning.stop_trial(trial.id, "ada", " ")
    with pytest.raises(UserError, match="viewer"):
        await sim.learning.stop_trial(trial.id, "vic", "no")
    stopped = await sim.learning.stop_trial(trial.id, "ada", "the vendor fixed the cache")
    assert (stopped["status"], stopped["active_version"]) == ("dropped", "1.0.0")
    with pytest.raises(LearningError, match="dropped, not running"):
        await sim.learning.stop_trial(trial.id, "ada", "again")
    stopped_change = (await sim.learning.rejections.latest(PLAYBOOK))[
        change_key(PLAYBOOK, CHEAP_FIRST)
    ]
    assert stopped_change.by == "ada" and "the vendor fixed the cache" in stopped_change.reason
    [entry] = [e for e in await AuditLog(db).entries() if e["action"] == "trial.stop"]
    assert entry["actor"] == "ada" and "the vendor fixed the cache" in entry["detail"]
    await sim.learning.approve(second, "ada", "")  # room for the next trial
    assert len(await sim.learning.trials.store.listing("running")) == 1


async def test_a_trial_carries_on_over_a_change_approved_outright_but_not_a_rollback(
    db: Database, tmp_path: Path
) -> None:
    sim = await cache_site(db, tmp_path, incidents=0)
    await sim.learning.approve(await propose(sim, CUT_OFF), "ada", "")
    outright = await propose(sim, CHEAP_FIRST, trial=False, rec_id="rec-now")
    version = await sim.learning.approve(outright, "ada", "known good")
    assert (version, await sim.versions.active_version(PLAYBOOK)) == ("1.1.0", "1.1.0")
    ended, running = sorted(await sim.learning.trials.store.listing(), key=lambda t: t.status)
    assert ended.status == "dropped" and ended.reason is not None
    assert "no longer active" in ended.reason
    assert (running.status, running.base_version, running.started_by) == (
        "running",
        "1.1.0",
        "supervisor",
    )
    carried = await sim.versions.definition(PLAYBOOK, running.trial_version)
    assert carried is not None and carried.step("reboot").timeout_seconds == 60  # the change
    assert carried.step("reinit").action == "reinit_cache"  # on the new base
    assert await sim.learning.rejections.latest(PLAYBOOK) == {}  # never judged
    await sim.learning.rollback(PLAYBOOK, "1.0.0", "ada", "back to the reboot")
    assert await sim.learning.trials.store.listing("running") == []  # not over a rollback


async def test_a_round_of_the_simulation_reports_the_trial_it_ran(
    db: Database, tmp_path: Path
) -> None:
    sim = await cache_site(db, tmp_path)
    await sim.learning.approve(await propose(sim, CHEAP_FIRST), "ada", "")
    report = await sim.round(1)
    [entry] = report["trials"]
    assert (entry["trial_version"], entry["status"]) == ("1.1.0", "promoted")
    again = await sim.round(2)
    assert again["playbook_version"] == "1.1.0" and again["trials"] == []
    assert again["mttr_s"] < report["mttr_s"]


async def test_counting_after_a_stop_decides_the_trial_too(db: Database, tmp_path: Path) -> None:
    sim = await cache_site(db, tmp_path)
    await sim.learning.approve(await propose(sim, CHEAP_FIRST), "ada", "")
    for _ in range(80):  # a supervisor stopped before counting them
        playbook = await sim.versions.active_playbook(PLAYBOOK)
        assert playbook is not None
        await sim.incident(playbook, count=False)
    assert await sim.learning.catch_up() == 80
    [trial] = await sim.learning.trials.store.listing()
    assert trial.status == "promoted"
