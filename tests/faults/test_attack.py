"""Issue 13's attacks, short mode: bench/attack.py run for real, every criterion asserted.

Each attack runs against a live daemon (its own broker, store, admin page and bridge)
and must leave it alive and supervising: the broker killed during and after the attack
back within 1 s, no healthy broker restarted, RSS under the unit's MemoryMax, the store
and the audit chain intact, a clean stop; plus each attack's own criteria. The helpers
the verdicts rest on (which executions we caused, the unit's memory cap) are checked
first, without a daemon.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench_runs import BENCH, run_json

ATTACKS = [
    "idle_connections",
    "login_bursts",
    "crash_after_bursts",
    "second_instance",
    "store_locked",
    "heartbeats",
    "mqtt_flood",
    "hostile_bodies",
    "audit_tampering",
    "sighup_burst",
]
COMMON = {
    "daemon_alive",
    "kill_during_recovered",
    "kill_after_recovered",
    "no_healthy_broker_restart",
    "rss_under_memory_max",
    "store_intact",
    "audit_verifies",
    "stops_on_sigterm",
}
SHORT_RUN_TIMEOUT_S = 1800  # about 5 minutes here; a loaded 2-core box may take several times


@pytest.fixture
def bench_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bench/ importable as the scripts import each other (by name); its modules are
    dropped again afterwards, not left for other tests."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


# -- the verdicts' helpers, without a daemon ------------------------------------------


def test_memory_max_is_read_from_the_unit_in_mib(bench_path: None, tmp_path: Path) -> None:
    import attack_target

    assert attack_target.memory_max_mb() == 256.0  # systemd/graylogic-supervisor.service
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nMemoryHigh=1G\nMemoryMax=1G\n")
    assert attack_target.memory_max_mb(unit) == 1024.0
    unit.write_text("[Service]\nMemoryHigh=1G\n")
    with pytest.raises(attack_target.BenchError, match="no MemoryMax"):
        attack_target.memory_max_mb(unit)


def test_only_executions_inside_our_kills_windows_are_ours(bench_path: None) -> None:
    import attack_target

    Kill = attack_target.Kill
    slack = attack_target.CAUSE_SLACK_S
    kills = [Kill("during", 100.0, 1, 2, 0.2), Kill("after", 200.0, 2, None, None)]
    started = [100.05, 100.2 + slack - 0.01, 150.0, 100.2 + slack + 0.5, 209.0, 215.0]
    # the first kill recovered in 0.2 s; the second never did: its window is the wait
    uncaused = attack_target.uncaused_executions(kills, started, wait_s=10.0)
    assert uncaused == [150.0, 100.2 + slack + 0.5, 215.0]
    no_broker = [Kill("during", 100.0, None, None, None)]  # nothing was killed: nothing ours
    assert attack_target.uncaused_executions(no_broker, [100.5], wait_s=10.0) == [100.5]


def test_a_flood_packet_carries_its_length_past_127_bytes(bench_path: None) -> None:
    import attack_site

    packet = attack_site.publish_packet("a/health/b", b"x" * 200)
    assert packet[0] == 0x30
    length = (packet[1] & 0x7F) + (packet[2] << 7)
    assert packet[1] & 0x80 and length == len(packet) - 3 == 2 + len("a/health/b") + 200


def test_attacks_one_to_three_share_a_daemon_the_rest_have_their_own(bench_path: None) -> None:
    import attack

    assert attack.NAMES == ATTACKS
    assert attack.groups(ATTACKS)[0] == ATTACKS[:3]
    assert attack.groups(["sighup_burst", "login_bursts"]) == [["login_bursts"], ["sighup_burst"]]


# -- the attacks, for real ----------------------------------------------------------------


@pytest.fixture(scope="module")
def attacks() -> dict[str, Any]:
    # The requirement is 1 s (the bench's default, its figures in the closing note); a test
    # must not fail because CI's two cores are busy, so here a broker must be back within a
    # generous multiple of the 0.03 to 0.2 s it takes on a quiet machine.
    result = run_json(
        "attack.py", "--short", "--recovered-within", "10", timeout_s=SHORT_RUN_TIMEOUT_S
    )
    assert result["short"] is True
    return dict(result["attacks"])


@pytest.mark.slow
def test_every_attack_of_the_issue_ran_with_every_common_criterion(
    attacks: dict[str, Any],
) -> None:
    assert list(attacks) == ATTACKS
    for name, result in attacks.items():
        assert set(result["criteria"]) >= COMMON, name
        labels = [kill["label"] for kill in result["figures"]["kills"]]
        assert "during" in labels and labels[-1] == "after", (name, labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTACKS)
def test_the_daemon_holds_against(attacks: dict[str, Any], name: str) -> None:
    result = attacks[name]
    failed = [criterion for criterion, ok in result["criteria"].items() if not ok]
    assert result["error"] is None and not failed, json.dumps(
        {"failed": failed, "error": result["error"], "figures": result["figures"]}, indent=1
    )[:6000]
    assert result["ok"] is True
