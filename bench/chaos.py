"""Broker chaos: ``kill -9`` of the daemon's Mosquitto, over and over, under the shipped policy.

One daemon (``faults.FaultDaemon``: its own Mosquitto through the process backend,
its own store; the shipped recovery policy with durations shortened, ``mqtt``
essential) has its broker killed whenever it is up, ``--kills`` times within
``--seconds``: after the broker answers CONNECT, a seeded uniform wait, then
SIGKILL. The loop ends at its deadline whatever happens. Then nothing is killed
any more, and the daemon must bring the broker back by itself.

Checked, and reported under ``checks`` (each true or false):

- ``daemon_alive``: the daemon never exited; ``no_tracebacks``: none in its log;
- ``budget_held``: executions allowed ``within_budget`` never exceed the
  playbook's ``max_attempts`` within any ``attempt_window_s`` (no spell of health
  reached ``rearm_after_s``, so no re-arm could reset the count: also checked);
- ``trials_after_cooldown``: every other execution was a half-open trial, after a
  denial that opened the breaker, at least ``open_cooldown_s`` after it;
- ``every_execution_allowed``: no more executions than allowed evaluations;
- ``breaker_opened``, ``escalated``: at least one of each;
- ``recovered``: after the last kill, the broker answers CONNECT again and the
  daemon's MQTT link logs ``up``, within a bound computed from the config;
  ``recovered_by_trial``: the execution that did it was a half-open trial;
- ``rss_growth_ok``: the daemon's RSS after recovery minus its RSS at the end of
  the warm-up (``--warmup`` seconds of chaos) is under 5 MB (4.77 MiB).

    .venv/bin/python bench/chaos.py [--seconds 600] [--kills 100] [--seed 1] [--json] [--keep]
    .venv/bin/python bench/chaos.py --short --json      # 15 kills in 40 s, for CI
"""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil
from daemon_under_test import stored_at
from faults import MIB, FaultDaemon, running, shipped_policy
from processes import BenchError, run_harness
from recovery import workspace

RSS_LIMIT_MB = 5e6 / MIB  # the requirement's 5 MB (decimal): 4.77 MiB
SETTLE_S = 1.0  # after recovery, before the last RSS reading
RUN_ALLOWANCE_S = 5.0  # one successful run: restart (the broker listens in ms) and verify
# Shortened durations (SHORTENABLE in faults.py); everything else is as shipped.
DURATIONS = {"open_cooldown_s": 1.0, "max_open_cooldown_s": 8.0, "stabilisation_s": 2.0}
PLAYBOOK_COOLDOWN_S = 2.0
OPENING = {"attempt_budget", "repeated_signature", "breaker_open"}

logger = logging.getLogger("bench.chaos")


@dataclass(frozen=True)
class Kill:
    at_s: float  # since the chaos began
    wall: float  # time.time(), to compare with the store's stamps
    pid: int
    up_for_s: float  # since the broker was first seen answering
    rss_mb: float  # the daemon's, just before the kill
    log_offset: int  # the daemon's log size just before the kill


def chaos(
    daemon: FaultDaemon, seconds: float, kills: int, rng: random.Random
) -> tuple[list[Kill], float]:
    """Kill the broker whenever it is up, until ``kills`` or the deadline; returns the kills
    and the largest spell the broker was seen up (an upper bound of every healthy spell)."""
    start = time.monotonic()
    deadline = start + seconds
    mean_up = 0.5 * seconds / kills  # half the time up, half for the daemon to recover
    done: list[Kill] = []
    longest_up = 0.0
    proc = psutil.Process(daemon.pid)
    while time.monotonic() < deadline and len(done) < kills:
        daemon.check_running()
        pid = daemon.live_broker()
        if pid is None:
            time.sleep(0.01)
            continue
        seen = time.monotonic()
        wait = rng.uniform(0.25, max(2 * mean_up - 0.25, 0.3))
        time.sleep(max(min(seen + wait, deadline) - time.monotonic(), 0.0))
        now = time.monotonic()
        longest_up = max(longest_up, now - seen)
        if now >= deadline:
            break
        rss, offset, wall = proc.memory_info().rss / MIB, daemon.log_size(), time.time()
        if daemon.kill_broker(pid):
            done.append(Kill(round(now - start, 3), wall, pid, round(now - seen, 3), rss, offset))
            logger.info("kill %d/%d: pid %d after %.2f s up", len(done), kills, pid, now - seen)
    return done, longest_up


def recovery_bound_s(daemon: FaultDaemon) -> float:
    """The longest the daemon may take, with no new fault, to have its broker back: an open
    breaker's longest cooldown, a flapping hold, a failed run's cooldown, a run in flight
    when the chaos ended (every step's timeout, retries and backoffs), one successful run,
    and the link's longest reconnect backoff."""
    config = daemon.config()
    policy = config["policy"]
    playbook = daemon.playbook("mqtt-recover.yaml")
    in_flight = 0.0
    for step in playbook["steps"]:
        retry = step.get("retry", {})
        attempts = 1 + int(retry.get("attempts", 0))
        in_flight += step["timeout_seconds"] * attempts
        in_flight += retry.get("max_backoff_seconds", 0) * (attempts - 1)
    return (
        policy["max_open_cooldown_s"]
        + policy["stabilisation_s"]
        + playbook["limits"]["cooldown_seconds"]
        + in_flight
        + RUN_ALLOWANCE_S
        + config["mqtt"]["reconnect"]["max_s"]
    )


def wait_recovered(daemon: FaultDaemon, log_offset: int, bound_s: float) -> float | None:
    """Seconds until the broker answers and the link is up again, or None past the bound."""
    start = time.monotonic()
    while time.monotonic() - start < bound_s:
        daemon.check_running()
        linked = any(
            "MQTT link to" in line and line.endswith(" up")
            for line in daemon.log_since(log_offset).splitlines()
        )
        if linked and daemon.live_broker() is not None:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def store_checks(daemon: FaultDaemon, last_kill_wall: float) -> dict[str, Any]:
    """The give-up rules, read back from the store."""
    policy = daemon.config()["policy"]
    window_s = policy["attempt_window_s"]
    with daemon.store() as db:
        evaluations = db.execute(
            "SELECT evaluated_at, allowed, reason, detail, attempts_in_window, max_attempts,"
            " breaker FROM viability_evaluations WHERE component = 'mqtt' ORDER BY id"
        ).fetchall()
        executions = db.execute(
            "SELECT started_at, status, kind FROM executions WHERE component = 'mqtt'"
            " ORDER BY started_at"
        ).fetchall()
        escalations = db.execute(
            "SELECT COUNT(*) FROM escalations WHERE component = 'mqtt'"
        ).fetchone()[0]
        safe_mode = db.execute("SELECT active, since, reason FROM safe_mode").fetchone()
    budget = [
        stored_at(e["evaluated_at"])
        for e in evaluations
        if e["allowed"] and e["reason"] == "within_budget"
    ]
    max_attempts = max((e["max_attempts"] for e in evaluations if e["allowed"]), default=0)
    most_in_window = max(
        (sum(1 for u in budget if t - window_s < u <= t) for t in budget), default=0
    )
    trials_ok, trials, opened_at = True, 0, None
    for e in evaluations:
        if not e["allowed"] and e["reason"] in OPENING and opened_at is None:
            opened_at = stored_at(e["evaluated_at"])
        elif e["allowed"]:
            if e["reason"] == "trial_attempt":
                trials += 1
                waited = None if opened_at is None else stored_at(e["evaluated_at"]) - opened_at
                if waited is None or waited < policy["open_cooldown_s"] - 0.05:
                    trials_ok = False
                    logger.error("trial without a cooldown before it: %s", dict(e))
            elif e["reason"] != "within_budget":
                trials_ok = False
            opened_at = None
    after = [x for x in executions if stored_at(x["started_at"]) > last_kill_wall]
    allowed_after = [
        e for e in evaluations if e["allowed"] and stored_at(e["evaluated_at"]) > last_kill_wall
    ]
    reasons: dict[str, int] = {}
    for e in evaluations:
        key = f"{'allowed' if e['allowed'] else 'denied'}:{e['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    statuses: dict[str, int] = {}
    for x in executions:
        statuses[x["status"]] = statuses.get(x["status"], 0) + 1
    return {
        "max_attempts": max_attempts,
        "within_budget_most_in_window": most_in_window,
        "trials": trials,
        "trials_ok": trials_ok,
        "evaluations": reasons,
        "executions": statuses,
        "executions_total": len(executions),
        "allowed_total": sum(1 for e in evaluations if e["allowed"]),
        "breaker_opened": sum(1 for e in evaluations if e["breaker"] == "open"),
        "escalations": escalations,
        "safe_mode": dict(safe_mode) if safe_mode else None,
        "after_last_kill": {
            "allowed": [e["reason"] for e in allowed_after],
            "executions": [x["status"] for x in after],
        },
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    policy = shipped_policy(["mqtt"], **DURATIONS)
    with workspace("chaos", args.keep) as workdir:
        daemon = FaultDaemon(workdir, policy=policy, playbook_cooldown_s=PLAYBOOK_COOLDOWN_S)
        try:
            with running(daemon):
                bound_s = recovery_bound_s(daemon)
                kills, longest_up = chaos(
                    daemon, args.seconds, args.kills, random.Random(args.seed)
                )
                if not kills:
                    raise BenchError("the broker was never up to be killed")
                chaos_end = time.monotonic()
                recovered_s = wait_recovered(daemon, kills[-1].log_offset, bound_s)
                after_chaos_s = time.monotonic() - chaos_end
                time.sleep(SETTLE_S)
                rss_after = psutil.Process(daemon.pid).memory_info().rss / MIB
                store = store_checks(daemon, kills[-1].wall)
                tracebacks, errors = daemon.tracebacks(), daemon.errors()
                alive = daemon.daemon.popen.poll() is None
                config = daemon.config()
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("chaos: %s", exc)
            return {"error": f"{type(exc).__name__}: {exc}", **daemon.findings()}
        exit_code = daemon.daemon.popen.returncode
    baseline = next((k for k in kills if k.at_s >= args.warmup), kills[-1])
    growth = rss_after - baseline.rss_mb
    rearm_s = config["policy"]["rearm_after_s"]
    checks = {
        "daemon_alive": alive,
        "no_tracebacks": not tracebacks,
        "no_rearm_possible": longest_up < rearm_s,
        "budget_held": store["within_budget_most_in_window"] <= store["max_attempts"],
        "trials_after_cooldown": store["trials_ok"],
        "every_execution_allowed": store["executions_total"] <= store["allowed_total"],
        "breaker_opened": store["breaker_opened"] > 0,
        "escalated": store["escalations"] > 0,
        "recovered": recovered_s is not None,
        "recovered_by_trial": "trial_attempt" in store["after_last_kill"]["allowed"]
        and "resolved" in store["after_last_kill"]["executions"],
        "rss_growth_ok": growth < RSS_LIMIT_MB,
    }
    return {
        "checks": checks,
        "ok": all(checks.values()),
        "kills": len(kills),
        "kills_wanted": args.kills,
        "seconds": args.seconds,
        "last_kill_at_s": kills[-1].at_s,
        "longest_up_s": round(longest_up, 3),
        "rearm_after_s": rearm_s,
        "recovery_bound_s": bound_s,
        "recovered_after_last_kill_s": None if recovered_s is None else round(recovered_s, 3),
        "recovered_after_chaos_end_s": round(after_chaos_s, 3),
        "rss_mb_warm": round(baseline.rss_mb, 2),
        "rss_mb_warm_at_s": baseline.at_s,
        "rss_mb_after": round(rss_after, 2),
        "rss_mb_growth": round(growth, 2),
        "rss_mb_max": round(max([k.rss_mb for k in kills] + [rss_after]), 2),
        "store": store,
        "tracebacks": tracebacks[:5],
        "error_lines": errors[:10],
        "exit_code_after_sigterm": exit_code,
        "policy": config["policy"],
        "playbook_cooldown_s": PLAYBOOK_COOLDOWN_S,
        "seed": args.seed,
        "warmup_s": args.warmup,
        "samples": [asdict(k) for k in kills],
    }


def table(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"chaos: error: {result['error']}"
    store = result["store"]
    lines = [
        f"kills                 {result['kills']} of {result['kills_wanted']}"
        f" in {result['seconds']:g} s (last at {result['last_kill_at_s']:.1f} s)",
        f"executions            {store['executions']}",
        f"evaluations           {store['evaluations']}",
        f"within budget         at most {store['within_budget_most_in_window']} in a window"
        f" (budget {store['max_attempts']}); {store['trials']} half-open trials",
        f"escalations           {store['escalations']}; safe mode {store['safe_mode']}",
        f"recovered             {result['recovered_after_last_kill_s']} s after the last kill"
        f" (bound {result['recovery_bound_s']:g} s)",
        f"RSS                   {result['rss_mb_warm']:.2f} MiB warm"
        f" (at {result['rss_mb_warm_at_s']:.0f} s), {result['rss_mb_after']:.2f} MiB after:"
        f" {result['rss_mb_growth']:+.2f} MiB (limit {RSS_LIMIT_MB:.2f}); max"
        f" {result['rss_mb_max']:.2f} MiB",
        f"tracebacks            {len(result['tracebacks'])}",
    ]
    lines += [
        f"check {name:<24}{'ok' if ok else 'FAILED'}" for name, ok in result["checks"].items()
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the chaos (600)")
    parser.add_argument("--kills", type=int, default=100, help="kills wanted (100)")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds of chaos before the RSS baseline (60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the waits (1)")
    parser.add_argument("--short", action="store_true", help="CI: 15 kills in 40 s, 10 s warm-up")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir and logs")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.kills, args.warmup = 40.0, 15, 10.0
    if args.seconds <= 0 or args.kills < 1 or not 0 <= args.warmup < args.seconds:
        parser.error("--seconds > 0, --kills >= 1, 0 <= --warmup < --seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_harness(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
