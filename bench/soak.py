"""Soak: the daemon for minutes with incidents injected, sampled for growth.

One daemon (``faults.FaultDaemon``: its own Mosquitto, a KNX bridge run by its
process backend, the shipped recovery policy with durations shortened, both
components essential) runs round after round. A round injects three incidents,
one after the other, each waited for until the daemon has recovered it (every
component healthy on ``/metrics``, no open incident in the store):

- ``broker_killed``: SIGKILL to its Mosquitto;
- ``service_killed``: SIGKILL to the bridge's process (a supervised child);
- ``heartbeat_stopped``: SIGSTOP to the bridge (alive, silent) until the daemon
  restarts it (the stopped process is killed after its stop timeout).

An incident counts as recovered once that has held for a heartbeat window and two
checks (a bridge restarted within its window is first called healthy on its dead
predecessor's last heartbeat, and unhealthy again a window later).

A warm-up round comes first. Then, at the end of every ``--period`` (the round
and a quiet rest), one sample of the daemon process alone: RSS, open file
descriptors, threads (``psutil``), and its asyncio task count (its
``graylogic_supervisor_asyncio_tasks`` gauge, scraped with the metrics token).

"None may grow", per figure, over the samples after the warm-up (the first is the
baseline): the last sample is at most the first plus a tolerance, and the
least-squares line's rise over the run (slope times the sampled span) is at most
the same tolerance. Tolerances: RSS 2 MiB, file descriptors 2, threads 1, tasks 2.

    .venv/bin/python bench/soak.py [--seconds 600] [--period 60] [--seed 1] [--json] [--keep]
    .venv/bin/python bench/soak.py --short --json      # 3 rounds of 10 s, for CI
"""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
from daemon_under_test import Bridge
from faults import FaultDaemon, Sample, running, sample, samples_json, shipped_policy, slope
from processes import BenchError, run_harness
from recovery import workspace

BRIDGE = Bridge("bridge-knx", heartbeat_window_s=1.0, check_interval_s=0.25)
# Shortened durations (SHORTENABLE in faults.py); everything else is as shipped.
DURATIONS = {
    "rearm_after_s": 1.0,
    "open_cooldown_s": 1.0,
    "max_open_cooldown_s": 8.0,
    "stabilisation_s": 2.0,
}
PLAYBOOK_COOLDOWN_S = 2.0
STEP_TIMEOUT_S = 2.0
RECOVERY_TIMEOUT_S = 60.0
STABLE_S = BRIDGE.heartbeat_window_s + 2 * BRIDGE.check_interval_s
TOLERANCE: dict[str, float] = {"rss_mb": 2.0, "fds": 2, "threads": 1, "tasks": 2}
CRITERION = (
    "per figure, after the warm-up: last <= first + tolerance and the least-squares"
    " rise (slope x sampled span) <= tolerance; tolerances "
    + ", ".join(f"{k} {v:g}" for k, v in TOLERANCE.items())
)

logger = logging.getLogger("bench.soak")


def scraped_health(daemon: FaultDaemon) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in daemon.scrape().splitlines():
        if line.startswith("graylogic_supervisor_component_healthy{"):
            name = line.split('component="', 1)[1].split('"', 1)[0]
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


def open_incidents(daemon: FaultDaemon) -> int:
    with daemon.store() as db:
        return int(
            db.execute("SELECT COUNT(*) FROM incidents WHERE closed_at IS NULL").fetchone()[0]
        )


def recovered_now(daemon: FaultDaemon, gone: int) -> bool:
    """Every component healthy, no incident open, and the broker and bridge not ``gone``."""
    bridge = daemon.bridge_process(BRIDGE)
    broker = daemon.live_broker()
    if bridge is None or broker is None or gone in (bridge.pid, broker):
        return False
    return set(scraped_health(daemon).values()) == {1.0} and not open_incidents(daemon)


def wait_recovered(daemon: FaultDaemon, offset: int, gone: int) -> float:
    """Seconds until the daemon noticed (logged an unhealthy component), then was recovered
    and stayed so for ``STABLE_S``: a bridge called healthy on its predecessor's last
    heartbeat turns unhealthy again within its window, and that is no recovery."""
    start = time.monotonic()
    daemon.wait_for_log(r" is unhealthy: ", offset, timeout_s=RECOVERY_TIMEOUT_S)
    since: float | None = None
    while time.monotonic() - start < RECOVERY_TIMEOUT_S:
        daemon.check_running()
        if not recovered_now(daemon, gone):
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= STABLE_S:
            return since - start
        time.sleep(0.05)
    raise BenchError(f"not recovered within {RECOVERY_TIMEOUT_S:g} s")


def kill_broker(daemon: FaultDaemon) -> int:
    pid = daemon.live_broker()
    if pid is None or not daemon.kill_broker(pid):
        raise BenchError("no live broker to kill")
    return pid


def kill_service(daemon: FaultDaemon) -> int:
    proc = daemon.bridge_process(BRIDGE)
    if proc is None:
        raise BenchError("no bridge process to kill")
    proc.kill()
    return proc.pid


def stop_heartbeat(daemon: FaultDaemon) -> int:
    proc = daemon.bridge_process(BRIDGE)
    if proc is None:
        raise BenchError("no bridge process to stop")
    proc.suspend()
    return proc.pid


INCIDENTS: dict[str, Callable[[FaultDaemon], int]] = {
    "broker_killed": kill_broker,
    "service_killed": kill_service,
    "heartbeat_stopped": stop_heartbeat,
}


def one_round(daemon: FaultDaemon, rng: random.Random, recoveries: dict[str, list[float]]) -> None:
    for name, inject in INCIDENTS.items():
        time.sleep(rng.uniform(0.1, 0.5))
        offset = daemon.log_size()
        gone = inject(daemon)
        recoveries[name].append(round(wait_recovered(daemon, offset, gone), 3))
        logger.info("%s: recovered in %.2f s", name, recoveries[name][-1])


def grows(samples: Sequence[Sample], figure: str) -> dict[str, Any]:
    """The criterion for one figure, with the numbers behind it."""
    xs = [s.at_s for s in samples]
    ys = [float(getattr(s, figure)) for s in samples]
    rise = slope(xs, ys) * (xs[-1] - xs[0])
    tolerance = TOLERANCE[figure]
    return {
        "first": ys[0],
        "last": ys[-1],
        "min": min(ys),
        "max": max(ys),
        "fitted_rise": round(rise, 3),
        "slope_per_min": round(slope(xs, ys) * 60, 4),
        "tolerance": tolerance,
        "ok": ys[-1] <= ys[0] + tolerance and rise <= tolerance,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    policy = shipped_policy(["mqtt", BRIDGE.name], **DURATIONS)
    rng = random.Random(args.seed)
    recoveries: dict[str, list[float]] = {name: [] for name in INCIDENTS}
    samples: list[Sample] = []
    with workspace("soak", args.keep) as workdir:
        daemon = FaultDaemon(
            workdir,
            policy=policy,
            playbook_cooldown_s=PLAYBOOK_COOLDOWN_S,
            bridges=(BRIDGE,),
            step_timeout_s=STEP_TIMEOUT_S,
        )
        try:
            with running(daemon):
                daemon.wait_for_log(rf"{BRIDGE.name} is healthy")
                one_round(daemon, rng, recoveries)  # warm-up: every path taken once
                start = time.monotonic()
                samples.append(sample(daemon, 0.0))
                rounds = int(args.seconds // args.period)
                for index in range(1, rounds + 1):
                    one_round(daemon, rng, recoveries)
                    time.sleep(max(start + index * args.period - time.monotonic(), 0.0))
                    samples.append(sample(daemon, time.monotonic() - start))
                    logger.info("round %d/%d: %s", index, rounds, samples[-1])
                tracebacks = daemon.tracebacks()
                with daemon.store() as db:
                    evaluations = {
                        f"{'allowed' if r[0] else 'denied'}:{r[1]}": r[2]
                        for r in db.execute(
                            "SELECT allowed, reason, COUNT(*) FROM viability_evaluations"
                            " GROUP BY allowed, reason"
                        )
                    }
                    executions = dict(
                        db.execute("SELECT status, COUNT(*) FROM executions GROUP BY status")
                    )
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("soak: %s", exc)
            return {"error": f"{type(exc).__name__}: {exc}", **daemon.findings()}
    figures = {name: grows(samples, name) for name in TOLERANCE}
    checks = {f"{name}_not_growing": entry["ok"] for name, entry in figures.items()}
    checks["no_tracebacks"] = not tracebacks
    return {
        "checks": checks,
        "ok": all(checks.values()),
        "figures": figures,
        "criterion": CRITERION,
        "samples": samples_json(samples),
        "incidents": {name: len(times) for name, times in recoveries.items()},
        "recovery_s_max": {name: max(times) for name, times in recoveries.items()},
        "evaluations": evaluations,
        "executions": executions,
        "tracebacks": tracebacks[:5],
        "seconds": args.seconds,
        "period_s": args.period,
        "seed": args.seed,
        "policy": policy,
        "playbook_cooldown_s": PLAYBOOK_COOLDOWN_S,
        "step_timeout_s": STEP_TIMEOUT_S,
    }


def table(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"soak: error: {result['error']}"
    lines = [f"{'figure':<9}{'first':>9}{'last':>9}{'max':>9}{'rise':>9}{'per min':>10}  verdict"]
    for name, f in result["figures"].items():
        lines.append(
            f"{name:<9}{f['first']:>9g}{f['last']:>9g}{f['max']:>9g}{f['fitted_rise']:>9.3f}"
            f"{f['slope_per_min']:>10.4f}  {'ok' if f['ok'] else 'GROWS'}"
        )
    lines.append(f"incidents {result['incidents']}; slowest recovery {result['recovery_s_max']}")
    lines.append(f"executions {result['executions']}; tracebacks {len(result['tracebacks'])}")
    lines.append(
        f"{len(result['samples'])} samples, one every {result['period_s']:g} s; {CRITERION}"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=600.0, help="sampled time (600)")
    parser.add_argument(
        "--period", type=float, default=60.0, help="one round of incidents and a sample (60 s)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the gaps between faults (1)")
    parser.add_argument("--short", action="store_true", help="CI: 3 rounds of 10 s")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir and logs")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.period = 30.0, 10.0
    if args.period <= 0 or args.seconds < 2 * args.period:
        parser.error("--period > 0 and --seconds at least two periods")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_harness(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
