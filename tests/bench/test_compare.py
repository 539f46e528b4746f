"""bench/compare.py in its short mode, our daemon only: the harness runs end to end.

Three kills of the daemon's broker and 5 s of idle sampling, read back from the one
JSON object the script prints. Nothing here is a timing: figures are checked for
being there and being plausible (recovered, counted, the daemon's own process), never
for being fast. supervisord and monit are left out, so CI needs no apt-get.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.bench_runs import run_script

pytestmark = pytest.mark.slow

OURS = "graylogic-supervisor"


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    done = run_script("compare.py", "--quick", "--only", OURS, "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in result[OURS], f"{result[OURS]['error']}\n{done.stderr[-4000:]}"
    return result


def test_every_kill_is_a_recovery_counted_once(quick: dict[str, Any]) -> None:
    recovery = quick[OURS]["recovery"]
    assert quick["rounds"] == recovery["rounds"] == len(recovery["samples_s"]) == 3
    assert all(sample > 0 for sample in recovery["samples_s"])
    assert 0 < recovery["min_s"] <= recovery["median_s"] <= recovery["p90_s"] <= recovery["max_s"]


def test_each_recovery_was_a_resolved_playbook_run(quick: dict[str, Any]) -> None:
    log = quick[OURS]["daemon_log"]
    assert log["executions"] == {"resolved": 3}, log
    assert log["playbook_median_s"] > 0
    assert log["unexpected_lines"] == []


def test_idle_figures_are_the_daemons_own_process(quick: dict[str, Any]) -> None:
    entry = quick[OURS]
    idle = entry["idle"]
    assert "-m graylogic_supervisor run" in entry["process"]  # the daemon, not its broker
    assert quick["idle_seconds"] == idle["samples"] == 5
    assert 0 < idle["rss_mb_median"] <= idle["rss_mb_max"]
    assert entry["rss_mb_after_rounds"] > 0
    assert isinstance(idle["cpu_percent_mean"], float) and idle["cpu_percent_mean"] >= 0


def test_with_ours_alone_there_is_nothing_to_compare(quick: dict[str, Any]) -> None:
    assert quick["ratios"] == {}
    assert set(quick) == {OURS, "ratios", "rounds", "idle_seconds", "warmup_s", "seed", "method"}


def test_the_broker_is_gone_after_the_run(quick: dict[str, Any]) -> None:
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", quick[OURS]["port"]))


def test_an_unknown_supervisor_is_refused_before_anything_starts() -> None:
    done = run_script("compare.py", "--only", "systemd", "--json", timeout_s=30)
    assert done.returncode == 2
    assert "--only takes names from graylogic-supervisor, supervisord, monit" in done.stderr
    assert done.stdout == ""
