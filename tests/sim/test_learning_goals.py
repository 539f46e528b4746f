"""The learning loop's goals, measured through the real simulator.

Every scenario runs as ``simulate SCENARIO --rounds 5 --incidents 300 --auto-approve``
with seed 0. Where the stock playbook leaves room, the final round must take at most
0.7 of round one's mean resolution time and at most 1.3 of the best a fix-only playbook
could do (``tests/sim_best.py``, from the scenario's own model). Where the stock
playbook is already right, learning must not make it worse.

A simulation takes seconds of CPU, so every one this module needs starts at once in a
process pool, and each test waits only for the reports it reads.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from graylogic_supervisor.sim.goals import thin_recommendations
from graylogic_supervisor.sim.scenario import Scenario, load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions
from tests.sim.pool import Job, Reports, describe, mttrs, reports_of, scenario
from tests.sim_best import best_fix_only_mttr, fix_actions, fix_only_mttr

LEARNABLE = [
    "mqtt-mixed-causes",
    "bridge-heartbeat",
    "disk-full",
    "database-locked",
    "bridge-modbus",
    "bridge-bacnet",
]
ALREADY_GOOD = "already-good"
EVERY_SCENARIO = [*LEARNABLE, ALREADY_GOOD]
REPLAYED = "bridge-bacnet"  # run twice with seed 0, and once with seed 1

FULL = SimulationOptions(incidents=300, rounds=5, seed=0, auto_approve=True)
FEW = replace(FULL, incidents=8)
OTHER_SEED = replace(FULL, seed=1)


JOBS = [  # the long ones first, so that the workers finish together
    *(Job(name, FULL) for name in EVERY_SCENARIO),
    Job(REPLAYED, FULL, run=2),
    Job(REPLAYED, OTHER_SEED),
    *(Job(name, FEW) for name in EVERY_SCENARIO),
]


@pytest.fixture(scope="module")
def reports() -> Iterator[Reports]:
    with reports_of(JOBS) as reports:
        yield reports


# --- the goals at 5 rounds of 300 incidents ------------------------------------------------


@pytest.mark.parametrize("name", LEARNABLE)
def test_learning_cuts_the_mean_resolution_time_to_at_most_70_percent_of_round_one(
    reports: Reports, name: str
) -> None:
    report = reports[Job(name, FULL)]
    first, final = mttrs(report)[0], mttrs(report)[-1]

    assert final <= 0.7 * first, describe(report)


@pytest.mark.parametrize("name", LEARNABLE)
def test_learning_ends_within_30_percent_of_the_best_fix_only_playbook(
    reports: Reports, name: str
) -> None:
    report = reports[Job(name, FULL)]
    best = best_fix_only_mttr(scenario(name))

    assert mttrs(report)[-1] <= 1.3 * best, f"best fix-only: {best:.1f} s\n{describe(report)}"


def test_learning_does_not_make_an_already_good_playbook_worse(reports: Reports) -> None:
    report = reports[Job(ALREADY_GOOD, FULL)]
    first, final = mttrs(report)[0], mttrs(report)[-1]

    assert final <= 1.02 * first, describe(report)
    assert [entry["rolled_back_to"] for entry in report["rounds"]] == [None] * FULL.rounds


# --- too little evidence --------------------------------------------------------------------


@pytest.mark.parametrize("name", EVERY_SCENARIO)
def test_with_eight_incidents_a_round_nothing_comes_from_fewer_than_ten_executions(
    reports: Reports, name: str
) -> None:
    """The spec's minimum: 10 executions of the version in the last 30 days (not since
    the previous analysis: a quiet site must still learn)."""
    report = reports[Job(name, FEW)]

    assert thin_recommendations(report) == [], describe(report)


@pytest.mark.parametrize("name", EVERY_SCENARIO)
def test_a_first_round_of_eight_incidents_recommends_nothing(reports: Reports, name: str) -> None:
    report = reports[Job(name, FEW)]

    assert report["rounds"][0]["recommendations"] == [], describe(report)


# --- seeds ----------------------------------------------------------------------------------


def test_the_same_seed_replays_the_identical_report(reports: Reports) -> None:
    assert reports[Job(REPLAYED, FULL, run=2)] == reports[Job(REPLAYED, FULL)]


def test_another_seed_gives_another_report(reports: Reports) -> None:
    first, other = reports[Job(REPLAYED, FULL)], reports[Job(REPLAYED, OTHER_SEED)]

    assert other["seed"] == 1
    assert other["rounds"] != first["rounds"]


# --- the yardstick: the best fix-only playbook ------------------------------------------------

TINY = """\
name: tiny
playbook_file: tiny-basic.yaml
trigger: {component: bridge-test, error_id: ERR-BRIDGE-HEARTBEAT-001}
causes: {hung: 0.6, unplugged: 0.4}
actions:
  check_port:
    duration_s: 1
    outcome: {default: success, unplugged: failure}
  quick_fix:
    duration_s: 2
    outcome: {default: failure, hung: {fix: 0.5, failure: 0.5}}
  slow_fix:
    duration_s: {min: 10, max: 30}
    outcome: {hung: success, unplugged: fix}
  wait_for_health:
    duration_s: 5
    outcome: health
manual:
  resolve_s: 100
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Scenario:
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY), encoding="utf-8")
    return load_scenario(path)


def test_fix_actions_are_those_that_can_fix_under_some_cause(tiny: Scenario) -> None:
    assert fix_actions(tiny) == ["quick_fix", "slow_fix"]


def test_a_fix_only_playbook_adds_the_technician_whenever_it_ends_unfixed(
    tiny: Scenario,
) -> None:
    # hung: 2 s + half the time a technician; unplugged: 2 s and always a technician.
    assert fix_only_mttr(tiny, ["quick_fix"]) == pytest.approx(0.6 * 52 + 0.4 * 102)
    # hung: 20 s (the mean of 10 and 30), "done" but not fixed; unplugged: fixed in 20 s.
    assert fix_only_mttr(tiny, ["slow_fix"]) == pytest.approx(0.6 * 120 + 0.4 * 20)


def test_a_success_that_does_not_fix_ends_the_playbook_before_the_later_fixes(
    tiny: Scenario,
) -> None:
    assert fix_only_mttr(tiny, ["slow_fix", "quick_fix"]) == pytest.approx(80.0)


def test_the_best_fix_only_time_is_the_lowest_over_every_order_of_every_subset(
    tiny: Scenario,
) -> None:
    # quick then slow: hung 2 + 0.5 * (20 + 100) = 62 (slow only "succeeds"); unplugged 22.
    assert fix_only_mttr(tiny, ["quick_fix", "slow_fix"]) == pytest.approx(46.0)
    assert best_fix_only_mttr(tiny) == pytest.approx(46.0)
