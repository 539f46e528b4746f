"""The six shapes of fault learning must handle (issue 14), one scenario each.

Each scenario is first checked to be of its shape (a test of the scenario, not of the
learning), then simulated with seed 0 for 5 rounds of 300 incidents (the low-volume
site: 5 rounds of 60, 20 weeks each) with ``--auto-approve``, and held to the issue's
rules (``graylogic_supervisor/sim/goals.py``): final mean resolution time at most 1.6x
the floor; no round more than 10 % slower than the one before unless it is rolled
back; no recommendation that removes or bypasses the health verification; nothing
recommended from fewer than 10 executions in 30 days.

Rules the learning code does not meet yet are marked ``xfail`` with what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.sim import goals
from graylogic_supervisor.sim.actions import scenario_registry
from graylogic_supervisor.sim.floor import fix_chance
from graylogic_supervisor.sim.simulator import (
    WEEK_S,
    Simulation,
    SimulationOptions,
    scenario_playbook,
)
from graylogic_supervisor.store.database import Database
from tests.sim.pool import Job, Reports, describe, reports_of, scenario

SUCCESS_IS_NOT_A_FIX = "knx-router"
CHEAP_FIX_NEVER_TRIED = "dali-gateway"
SEVERAL_AT_ONCE = "nvr-recording"
FLAKY_FIX = "zigbee-coordinator"
SLOWER_THAN_TIMEOUT = "sd-log-partition"
LOW_VOLUME = "opentherm-gateway"
SHAPES = [
    SUCCESS_IS_NOT_A_FIX,
    CHEAP_FIX_NEVER_TRIED,
    SEVERAL_AT_ONCE,
    FLAKY_FIX,
    SLOWER_THAN_TIMEOUT,
    LOW_VOLUME,
]

FULL = SimulationOptions(incidents=300, rounds=5, seed=0, auto_approve=True)
LOW = replace(FULL, incidents=60)  # 20 weeks a round at 3 a week: 17 analyses each
OPTIONS = {name: LOW if name == LOW_VOLUME else FULL for name in SHAPES}
JOBS = [Job(name, OPTIONS[name]) for name in SHAPES]


def playbook(name: str) -> Playbook:
    chosen = scenario(name)
    return scenario_playbook(chosen, scenario_registry(chosen, {}).specs())


@pytest.fixture(scope="module")
def reports() -> Iterator[Reports]:
    with reports_of(JOBS) as reports:
        yield reports


def report_of(reports: Reports, name: str) -> dict[str, Any]:
    return reports[Job(name, OPTIONS[name])]


def missing(reasons: dict[str, str]) -> list[Any]:
    """Every shape, marked ``xfail`` where ``reasons`` says what the learning lacks."""
    return [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(reason=f"issue 14: {reasons[name]}", strict=False)]
            if name in reasons
            else [],
        )
        for name in SHAPES
    ]


# --- each scenario is of its shape -----------------------------------------------------------


def test_in_the_success_is_not_a_fix_scenario_no_action_ever_fails() -> None:
    chosen = scenario(SUCCESS_IS_NOT_A_FIX)
    health = goals.health_actions(chosen)

    for name, action in chosen.actions.items():
        for cause in chosen.causes:
            spec = action.spec_for(cause)
            words = {spec} if isinstance(spec, str) else set(spec or {})
            assert words <= {"success", "fix", "health"}, (name, cause, words)
            assert name in health or "success" in words, (name, cause)  # success everywhere
    assert health == {"wait_for_health"}


async def test_in_the_cheap_fix_scenario_no_execution_of_the_stock_playbook_runs_it_first(
    tmp_path: Path,
) -> None:
    chosen = scenario(CHEAP_FIX_NEVER_TRIED)
    stock = playbook(CHEAP_FIX_NEVER_TRIED)
    expensive, cheap = chosen.actions["power_cycle_gateway"], chosen.actions["reinit_dali_line"]
    fixable = [cause for cause in chosen.causes if fix_chance(expensive, cause) > 0]
    # the expensive step is first, takes minutes and always fixes what can be fixed...
    assert stock.steps[0].action == "power_cycle_gateway" and stock.steps[0].when is None
    assert all(fix_chance(expensive, cause) == 1.0 for cause in fixable)
    # ...and the cheap one, seconds, fixes most incidents
    fixed_cheaply = sum(chosen.causes[c] * fix_chance(cheap, c) for c in chosen.causes)
    assert fixed_cheaply > 0.5
    assert cheap.mean_duration(fixable[0]) * 10 < expensive.mean_duration(fixable[0])

    async with Database(tmp_path / "store.db") as db:
        simulation = await Simulation.start(db, chosen, SimulationOptions(incidents=100))
        for number in range(100):
            await simulation.incident(stock, number=number)
        steps = await simulation.learning.metrics.steps(stock.id, stock.version)

    by_id = {step.step_id: step for step in steps}
    assert by_id["power_cycle"].executions == 100
    assert by_id["reinit_line"].executions < 15  # only after the power cycle did not help
    assert by_id["reinit_line"].fixes == 0  # so the data never shows it fixing anything


def test_the_several_at_once_scenario_has_a_useless_slow_check_a_wrong_order_and_a_gap() -> None:
    chosen = scenario(SEVERAL_AT_ONCE)
    stock = playbook(SEVERAL_AT_ONCE)
    first = chosen.actions[stock.steps[0].action]
    actions = [step.action for step in stock.steps]

    assert all(first.spec_for(cause) == "success" for cause in chosen.causes)  # never tells
    assert first.mean_duration("storage_unmounted") > 30

    def per_second(action: str) -> float:
        behaviour = chosen.actions[action]
        return sum(
            chosen.causes[c] * fix_chance(behaviour, c) / behaviour.mean_duration(c)
            for c in chosen.causes
        )

    assert actions.index("restart_recorder") < actions.index("remount_storage")
    assert per_second("remount_storage") > per_second("restart_recorder")
    assert chosen.fix_action_for("footage_quota_full") == "purge_old_footage"
    assert "purge_old_footage" not in actions


def test_in_the_flaky_fix_scenario_the_cheap_fix_works_half_the_time_behind_a_sure_one() -> None:
    chosen = scenario(FLAKY_FIX)
    stock = playbook(FLAKY_FIX)
    flaky, sure = chosen.actions["reset_coordinator"], chosen.actions["usb_power_cycle"]
    cause = "coordinator_unresponsive"

    assert 0.4 <= fix_chance(flaky, cause) <= 0.6
    assert fix_chance(sure, cause) >= 0.9
    assert flaky.mean_duration(cause) / fix_chance(flaky, cause) < sure.mean_duration(cause) / 2
    steps = {step.action: step for step in stock.steps}
    assert steps["usb_power_cycle"].on_failure == steps["reset_coordinator"].id
    retry = steps["reset_coordinator"].retry
    assert retry is not None and retry.attempts >= 2


def test_in_the_slow_fix_scenario_the_fix_outlasts_its_timeout_under_one_cause_only() -> None:
    chosen = scenario(SLOWER_THAN_TIMEOUT)
    stock = playbook(SLOWER_THAN_TIMEOUT)
    fsck = chosen.actions["fsck_partition"]
    step = next(step for step in stock.steps if step.action == "fsck_partition")
    duration = fsck.duration_for("fs_errors_read_only")

    assert not isinstance(duration, float | int) and duration.min > step.timeout_seconds
    for cause in chosen.causes:
        if cause != "fs_errors_read_only":
            assert fsck.mean_duration(cause) < step.timeout_seconds
    assert chosen.fix_action_for("fs_errors_read_only") == "fsck_partition"


def test_the_low_volume_site_never_sees_ten_failures_between_two_weekly_analyses(
    reports: Reports,
) -> None:
    chosen = scenario(LOW_VOLUME)
    report = report_of(reports, LOW_VOLUME)

    assert chosen.site is not None and chosen.site.incidents_per_week <= 5
    for entry in report["rounds"]:
        marks = [0, *(analysis["after_incidents"] for analysis in entry["analyses"])]
        assert len(marks) > 10  # weekly analyses among the round's incidents
        assert max(b - a for a, b in pairwise(marks)) < 10
    first = datetime.fromisoformat(report["rounds"][0]["analyses"][0]["at"])
    last = datetime.fromisoformat(report["rounds"][-1]["analyses"][-1]["at"])
    incidents = sum(entry["incidents"] for entry in report["rounds"])
    weeks = (last - first).total_seconds() / WEEK_S
    assert 2 <= incidents / weeks <= 4  # the site's three a week


# --- the rules, on seed 0 --------------------------------------------------------------------

WINDOW = "10 executions in the last 30 days, not since the previous analysis"


@pytest.mark.parametrize(
    "name",
    missing(
        {
            SEVERAL_AT_ONCE: "1.71x on seed 0: a 10 s verification after every fix (the floor"
            " counts none) and the failures both runs of a fix missed",
        }
    ),
)
def test_learning_ends_within_1_6_times_the_floor(reports: Reports, name: str) -> None:
    report = report_of(reports, name)

    assert report["final_to_floor"] <= goals.MAX_FINAL_TO_FLOOR, describe(report)


@pytest.mark.parametrize("name", missing({}))
def test_no_round_is_over_10_percent_slower_than_the_one_before_unless_rolled_back(
    reports: Reports, name: str
) -> None:
    report = report_of(reports, name)

    assert goals.regressions(report) == [], describe(report)


@pytest.mark.parametrize("name", missing({}))
def test_no_recommendation_removes_or_bypasses_the_health_verification(
    reports: Reports, name: str
) -> None:
    report = report_of(reports, name)

    breaches = goals.verification_breaches(report, scenario(name), playbook(name))

    assert breaches == [], describe(report)


@pytest.mark.parametrize("name", missing({}))
def test_nothing_is_recommended_from_fewer_than_10_executions_in_30_days(
    reports: Reports, name: str
) -> None:
    report = report_of(reports, name)

    assert goals.thin_recommendations(report) == [], describe(report)


def test_the_low_volume_site_gets_recommendations_once_30_days_hold_10_executions(
    reports: Reports,
) -> None:
    report = report_of(reports, LOW_VOLUME)

    made = [rec for entry in report["rounds"] for rec in entry["recommendations"]]

    if not made:
        pytest.xfail(f"issue 14: {WINDOW}")
    assert made
