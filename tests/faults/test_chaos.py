"""Broker chaos, short mode: bench/chaos.py run for real, its properties asserted.

15 kills of the daemon's own broker in 40 s under the shipped recovery policy
(durations shortened): the daemon lives, the give-up rules hold in the store,
the broker comes back through a half-open trial, RSS grows by less than 5 MB.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.bench_runs import BENCH, run_json
from tests.daemon_process import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def bench_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bench/ importable as the scripts import each other (by name); its modules
    (faults, processes, …) are dropped again afterwards, not left for other tests."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_harness_may_shorten_durations_but_relax_no_rule(bench_path: None) -> None:
    import faults

    policy = faults.shipped_policy(["mqtt"], open_cooldown_s=1.0, rearm_after_s=5.0)
    assert policy["open_cooldown_s"] == 1.0 and policy["attempt_window_s"] == 3600
    with pytest.raises(faults.BenchError, match="only durations"):
        faults.shipped_policy(["mqtt"], termination_min_sample=1_000_000)
    with pytest.raises(faults.BenchError, match="longer than the shipped one"):
        faults.shipped_policy(["mqtt"], rearm_after_s=0.5, open_cooldown_s=600.0)


@pytest.fixture(scope="module")
def chaos() -> dict[str, Any]:
    return run_json("chaos.py", "--short")


def test_every_chaos_check_holds(chaos: dict[str, Any]) -> None:
    failed = [name for name, ok in chaos["checks"].items() if not ok]
    assert not failed, json.dumps({k: chaos[k] for k in ("store", "tracebacks")}, indent=1)
    assert chaos["ok"] is True


def test_the_daemon_survives_without_a_traceback(chaos: dict[str, Any]) -> None:
    assert chaos["checks"]["daemon_alive"] is True
    assert chaos["tracebacks"] == []
    assert chaos["exit_code_after_sigterm"] == 0


def test_the_chaos_spends_the_budget_and_then_only_trials_run(chaos: dict[str, Any]) -> None:
    store = chaos["store"]
    budget = store["max_attempts"]
    assert budget == 3  # the shipped playbook's limits.max_attempts
    assert chaos["kills"] > budget + 1, "too few kills to reach the breaker"
    assert store["evaluations"]["allowed:within_budget"] == budget
    assert store["evaluations"]["denied:attempt_budget"] >= 1
    assert store["trials"] == store["allowed_total"] - budget
    assert store["executions_total"] <= store["allowed_total"]
    assert store["breaker_opened"] >= 1
    assert store["escalations"] >= 1


def test_only_durations_differ_from_the_shipped_policy(chaos: dict[str, Any]) -> None:
    """Counts, windows and rates as shipped; the essentials keep safe mode from stopping it."""
    shipped = yaml.safe_load((REPO / "config" / "supervisor.yaml").read_text())["policy"]
    policy = chaos["policy"]
    changed = {rule for rule in policy if policy[rule] != shipped.get(rule, policy[rule])}
    added = set(policy) - set(shipped)
    durations = {"rearm_after_s", "open_cooldown_s", "max_open_cooldown_s", "stabilisation_s"}
    assert changed <= durations
    assert added <= durations | {"essentials"}
    assert policy["essentials"] == ["mqtt"]


def test_the_broker_comes_back_through_a_half_open_trial(chaos: dict[str, Any]) -> None:
    after = chaos["store"]["after_last_kill"]
    assert after["allowed"][-1] == "trial_attempt"
    assert after["executions"][-1] == "resolved"
    assert chaos["recovered_after_last_kill_s"] is not None
    assert chaos["recovered_after_last_kill_s"] <= chaos["recovery_bound_s"]


def test_rss_grows_less_than_5_mb_over_the_chaos(chaos: dict[str, Any]) -> None:
    assert chaos["rss_mb_growth"] * 1_048_576 < 5_000_000
