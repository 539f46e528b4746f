"""Detection latency: from a fault to the daemon's record of the failure.

Two faults, each against a fresh daemon in its own directory, with its own Mosquitto on
a free loopback port, its own topic root, and the shipped playbooks with test-sized
step timeouts:

- ``dead_broker``: ``kill -9`` of the daemon's Mosquitto child (20 rounds);
- ``missing_heartbeat``: ``SIGSTOP`` of a bridge process (``tests/bridge_sim.py``, a
  heartbeat every 0.2 s, window W = ``--window``, checked every ``--check-interval``),
  which leaves it alive and silent (10 rounds). Expect about W, plus up to one check
  interval, minus the age of the last heartbeat when the bridge stopped.

A round waits 0.5-1.5 s (uniform, seeded), checks the component is healthy and its
process is ours, reads ``t_fault = time.time()``, sends the signal, and polls the
daemon's SQLite file (read-only, every millisecond) for the component's new
``failures`` row. Then it waits for the recovery, left to the shipped playbooks: the
broker's restarts it; the bridge's waits out its grace step (``--step-timeout``), then
restarts the bridge (the stopped process ignores SIGTERM and is killed after its 1 s
stop timeout) and sees the new one's heartbeat. The next round starts once that
incident is closed and its execution resolved.

**Method.** The headline figure is ``detected_at - t_fault``: ``detected_at`` is the
daemon's wall clock (UTC) when it records the failure, ``t_fault`` the benchmark's,
read from the same system clock just before ``kill``. ``detected_at`` is truncated to
the millisecond, so each sample reads 0-1 ms short. Two cross-checks per round:

- ``logged``: the timestamp of the daemon's "<component> is unhealthy" log line, when
  the health monitor saw the change (just before the failure is recorded); also
  truncated to the millisecond, so no finer;
- ``visible``: ``perf_counter()`` when the benchmark's poll first sees the committed
  row: an upper bound, adding the commit and up to one poll interval.

Median is ``statistics.median``; p90 is nearest-rank.

    .venv/bin/python bench/detection.py [--window 1] [--seed 1] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from daemon_under_test import BenchDaemon, Bridge, logged_at, stored_at
from processes import BenchError, is_ours, prepare_bench_process
from recovery import nearest_rank, workspace
from supervisors import RELAXED_POLICY, wait_ready

POLL_S = 0.001
ROUND_TIMEOUT_S = 30.0
METHOD = (
    "failures.detected_at (daemon wall clock, UTC, truncated to 1 ms) minus the benchmark's"
    " wall clock just before the signal; median = statistics.median, p90 = nearest rank"
)
BROKER_WARNINGS = ("mosquitto exited unexpectedly", "mqtt is unhealthy", "MQTT link to")
BRIDGE_WARNINGS = ("bridge-knx is unhealthy", "graylogic-bridge-knx ignored SIGTERM")
SCENARIOS = ("dead_broker", "missing_heartbeat")

logger = logging.getLogger("bench.detection")


@dataclass(frozen=True)
class Sample:
    recorded_s: float  # detected_at - t_fault
    logged_s: float  # the "is unhealthy" log line - t_fault
    visible_s: float  # the row first seen by the poll - t_fault, on perf_counter
    message: str  # the failure's message: which event gave it away


@dataclass(frozen=True)
class Detected:
    sample: Sample
    failure_id: str


def newest_failure(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(rowid), 0) FROM failures").fetchone()[0])


def time_fault(daemon: BenchDaemon, component: str, fault: Callable[[], None]) -> Detected:
    """Cause the fault and time the daemon's record of it, three ways."""
    offset = daemon.log_size()
    with daemon.store() as db:
        after = newest_failure(db)
        wall = time.time()
        t0 = time.perf_counter()
        fault()
        deadline = t0 + ROUND_TIMEOUT_S
        while (row := new_failure(db, component, after)) is None:
            if time.perf_counter() > deadline:
                daemon.check_running()
                raise BenchError(f"no failure of {component} recorded in {ROUND_TIMEOUT_S} s")
            time.sleep(POLL_S)
        visible = time.perf_counter() - t0
    line = daemon.wait_for_log(
        rf"(?m)^(\S+ \S+) WARNING +\S+: {re.escape(component)} is unhealthy", offset, 2.0
    )
    sample = Sample(
        stored_at(row["detected_at"]) - wall, logged_at(line[1]) - wall, visible, row["message"]
    )
    return Detected(sample, row["id"])


def new_failure(db: sqlite3.Connection, component: str, after: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.execute(
        "SELECT id, detected_at, message FROM failures"
        " WHERE component = ? AND rowid > ? ORDER BY rowid LIMIT 1",
        (component, after),
    ).fetchone()
    return row


def wait_recovered(daemon: BenchDaemon, failure_id: str) -> str:
    """Wait for the incident of this failure to close; returns the step that resolved it."""
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        with daemon.store() as db:
            incident = db.execute(
                "SELECT phase, detail, closed_at FROM incidents WHERE failure_id = ?",
                (failure_id,),
            ).fetchone()
            execution = db.execute(
                "SELECT status, resolved_by, detail FROM executions WHERE failure_id = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (failure_id,),
            ).fetchone()
        if incident is not None and incident["closed_at"] is not None:
            if execution is None or execution["status"] != "resolved":
                raise BenchError(f"incident ended {incident['phase']}: {incident['detail']}")
            return str(execution["resolved_by"])
        daemon.check_running()
        time.sleep(0.02)
    raise BenchError(f"the incident of {failure_id} still open after {ROUND_TIMEOUT_S} s")


def last_health(daemon: BenchDaemon, component: str) -> str | None:
    """The component's health as its last logged change says."""
    found = re.findall(
        rf"(?m): {re.escape(component)} is (healthy|unhealthy): ", daemon.log_since(0)
    )
    return found[-1] if found else None


# -- the two faults -------------------------------------------------------------------


def kill_broker(daemon: BenchDaemon) -> Detected:
    victim = wait_ready(daemon)
    if not is_ours(psutil.Process(victim), daemon.workdir):
        raise BenchError(f"pid {victim} is not a broker we started")
    return time_fault(daemon, "mqtt", lambda: os.kill(victim, signal.SIGKILL))


def stop_bridge(daemon: BenchDaemon, bridge: Bridge) -> Detected:
    pid = daemon.bridge_pid(bridge)
    if pid is None:
        raise BenchError(f"{bridge.name}: no single bridge process to stop")
    if last_health(daemon, bridge.name) != "healthy":
        raise BenchError(f"{bridge.name} is not healthy before the round")
    try:
        return time_fault(daemon, bridge.name, lambda: os.kill(pid, signal.SIGSTOP))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # never leave it stopped behind us
        raise


# -- rounds and figures ---------------------------------------------------------------


def rounds(
    name: str, count: int, rng: random.Random, fault: Callable[[], Detected], daemon: BenchDaemon
) -> tuple[list[Sample], Counter[str]]:
    samples: list[Sample] = []
    resolved_by: Counter[str] = Counter()
    for index in range(1, count + 1):
        time.sleep(rng.uniform(0.5, 1.5))
        detected = fault()
        samples.append(detected.sample)
        resolved_by[wait_recovered(daemon, detected.failure_id)] += 1
        logger.info(
            "%s round %d/%d: recorded %.1f ms, logged %.1f ms, visible %.1f ms (%s)",
            name,
            index,
            count,
            detected.sample.recorded_s * 1000,
            detected.sample.logged_s * 1000,
            detected.sample.visible_s * 1000,
            detected.sample.message,
        )
    return samples, resolved_by


def ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p90_ms": round(nearest_rank(values, 0.9) * 1000, 2),
        "min_ms": round(min(values) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def kind_of(message: str) -> str:
    """A failure message without its figures: which event gave the fault away."""
    return re.sub(r"\d+(\.\d+)?", "#", message.split(":")[0])


def summarize(samples: Sequence[Sample], resolved_by: Counter[str]) -> dict[str, Any]:
    recorded = [s.recorded_s for s in samples]
    logged = [s.logged_s for s in samples]
    visible = [s.visible_s for s in samples]
    return {
        **ms(recorded),
        "rounds": len(samples),
        "samples_ms": [round(s * 1000, 1) for s in recorded],
        "logged": ms(logged),
        "visible": ms(visible),
        "first_noticed_by": dict(Counter(kind_of(s.message) for s in samples)),
        "resolved_by": dict(resolved_by),
        "method": METHOD,
    }


FAILURES = (BenchError, OSError, sqlite3.Error, psutil.Error, subprocess.SubprocessError)


def scenario(
    name: str,
    daemon: BenchDaemon,
    count: int,
    fault: Callable[[BenchDaemon], Detected],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start the daemon, run the rounds, stop it; an error ends this scenario only."""
    try:
        with daemon:
            for bridge in daemon.bridges:  # past its first window, so its heartbeats count
                daemon.wait_for_log(rf"{bridge.name} is healthy")
                time.sleep(bridge.heartbeat_window_s + bridge.check_interval_s + 0.5)
            samples, resolved_by = rounds(
                name, count, random.Random(args.seed), lambda: fault(daemon), daemon
            )
    except FAILURES as exc:
        logger.error("%s: %s", name, exc)
        return {"error": f"{type(exc).__name__}: {exc}", **daemon.findings()}
    return {**summarize(samples, resolved_by), **daemon.findings()}


def dead_broker(args: argparse.Namespace) -> dict[str, Any]:
    with workspace("dead-broker", args.keep) as workdir:
        daemon = BenchDaemon(
            workdir,
            policy=RELAXED_POLICY,
            step_timeout_s=args.step_timeout,
            expected_warnings=BROKER_WARNINGS,
        )
        return scenario("dead_broker", daemon, args.broker_rounds, kill_broker, args)


def missing_heartbeat(args: argparse.Namespace) -> dict[str, Any]:
    bridge = Bridge("bridge-knx", args.window, args.check_interval)  # the playbook's target
    with workspace("missing-heartbeat", args.keep) as workdir:
        daemon = BenchDaemon(
            workdir,
            bridges=(bridge,),
            policy=RELAXED_POLICY,
            step_timeout_s=args.step_timeout,
            expected_warnings=BRIDGE_WARNINGS,
        )
        result = scenario(
            "missing_heartbeat",
            daemon,
            args.heartbeat_rounds,
            lambda d: stop_bridge(d, bridge),
            args,
        )
    if "error" in result:
        return result
    window_ms = args.window * 1000  # a constant shift: the median and p90 shift with it
    return {
        **result,
        "beyond_window_median_ms": round(result["median_ms"] - window_ms, 2),
        "beyond_window_p90_ms": round(result["p90_ms"] - window_ms, 2),
        "window_s": args.window,
        "check_interval_s": args.check_interval,
        "heartbeat_every_s": 0.2,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'fault':<19}{'rounds':>7}{'median':>11}{'p90':>11}{'max':>11}   cross-checks"]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"{name:<19}  error: {entry['error']}")
            continue
        figures = "".join(f"{entry[k]:>8.1f} ms" for k in ("median_ms", "p90_ms", "max_ms"))
        logged, visible = entry["logged"], entry["visible"]
        checks = (
            f"log line median {logged['median_ms']:.1f} ms,"
            f" row visible median {visible['median_ms']:.1f} ms"
        )
        lines.append(f"{name:<19}{entry['rounds']:>7}{figures}   {checks}")
        if "beyond_window_median_ms" in entry:
            lines.append(
                f"{'':<19}beyond the {entry['window_s']:g} s window: median"
                f" {entry['beyond_window_median_ms']:.1f} ms, p90"
                f" {entry['beyond_window_p90_ms']:.1f} ms (checked every"
                f" {entry['check_interval_s']:g} s)"
            )
    lines.append(f"fault to failure row: {METHOD}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--broker-rounds", type=int, default=20, help="broker kills (20)")
    parser.add_argument("--heartbeat-rounds", type=int, default=10, help="bridge stops (10)")
    parser.add_argument("--window", type=float, default=1.0, help="heartbeat window W (1 s)")
    parser.add_argument(
        "--check-interval", type=float, default=0.25, help="bridge check interval (0.25 s)"
    )
    parser.add_argument(
        "--step-timeout", type=float, default=3.0, help="playbook steps' 60 s timeouts cut to (3 s)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the spacing of faults (1)")
    parser.add_argument("--only", choices=SCENARIOS, help="run one scenario")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    args = parser.parse_args(argv)
    if min(args.broker_rounds, args.heartbeat_rounds) < 1:
        parser.error("rounds must be at least 1")
    if min(args.window, args.check_interval, args.step_timeout) <= 0:
        parser.error("--window, --check-interval and --step-timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_bench_process()
    measures = {"dead_broker": dead_broker, "missing_heartbeat": missing_heartbeat}
    names = [args.only] if args.only else list(SCENARIOS)
    try:
        results = {name: measures[name](args) for name in names}
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    if args.json:
        print(json.dumps({**results, "seed": args.seed}))
    else:
        print(table(results))
    return 0 if all("error" not in entry for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
