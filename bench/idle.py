"""The daemon's memory and CPU while nothing goes wrong: idle, and supervising bridges.

Two states, one after the other, each with a fresh daemon in its own directory, its own
Mosquitto on a free loopback port and its own topic root:

- ``idle``: the daemon supervising only its own broker (component ``mqtt``, as shipped);
- ``supervising``: its broker, 3 protocol bridges (``tests/bridge_sim.py`` processes,
  a heartbeat every 0.2 s; window 2 s, checked every second, ``depends_on: [mqtt]``),
  and ``database``, ``memory``, ``disk`` and ``cpu`` components whose thresholds
  nothing reaches.

Once the daemon runs and a warm-up has passed, one sample a second for ``--seconds``:
the resident set size of the daemon process alone (not its broker or bridges) and its
CPU use over the interval (``psutil`` ``cpu_percent``: user + system time over wall
time, 100 = one core). Reported: median and max RSS, median CPU, and the mean CPU over
the whole window (CPU time over wall time): a per-second figure moves in clock ticks,
1 % of a core, so the mean is the finer one for a daemon that mostly sleeps.

    .venv/bin/python bench/idle.py [--seconds 60] [--warmup 5] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from daemon_under_test import BenchDaemon, Bridge
from processes import BenchError, prepare_bench_process
from recovery import workspace
from supervisors import Target

MIB = 1_048_576
BRIDGES = tuple(
    Bridge(name, heartbeat_window_s=2, check_interval_s=1)
    for name in ("bridge-knx", "bridge-dali", "bridge-modbus")
)
STATES = ("idle", "supervising")

logger = logging.getLogger("bench.idle")


def resource_components(check_interval_s: float) -> dict[str, dict[str, Any]]:
    """The controller's own resources, with limits a healthy machine never reaches."""
    every = {"check_interval_s": check_interval_s}
    return {
        "database": {
            "kind": "database",
            "error_id": "ERR-INFRA-DB-001",
            "max_latency_ms": 2000,
            "min_free_mb": 0,
            **every,
        },
        "memory": {"kind": "memory", "error_id": "ERR-SYS-MEM-001", "max_percent": 100, **every},
        "disk": {"kind": "disk", "error_id": "ERR-SYS-DISK-001", "max_percent": 100, **every},
        "cpu": {
            "kind": "cpu",
            "error_id": "ERR-SYS-CPU-001",
            "max_percent": 100,
            "max_load_per_cpu": 1000,
            **every,
        },
    }


@dataclass(frozen=True)
class Usage:
    rss_bytes: list[int]
    cpu_percent: list[float]
    cpu_seconds: float
    wall_seconds: float

    def summary(self) -> dict[str, object]:
        return {
            "rss_mb_median": round(statistics.median(self.rss_bytes) / MIB, 2),
            "rss_mb_max": round(max(self.rss_bytes) / MIB, 2),
            "cpu_percent_median": statistics.median(self.cpu_percent),
            "cpu_percent_mean": round(100 * self.cpu_seconds / self.wall_seconds, 3),
            "cpu_percent_max": max(self.cpu_percent),
            "samples": len(self.rss_bytes),
        }


def sample(target: Target, seconds: int) -> Usage:
    """One reading a second of the supervisor's own process alone, on a fixed schedule."""
    proc = psutil.Process(target.supervisor_pid)
    proc.cpu_percent(None)  # the next call measures from here
    before = proc.cpu_times()
    start = time.monotonic()
    rss: list[int] = []
    cpu: list[float] = []
    for tick in range(1, seconds + 1):
        time.sleep(max(start + tick - time.monotonic(), 0.0))
        cpu.append(proc.cpu_percent(None))
        rss.append(proc.memory_info().rss)
        target.check_running()
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return Usage(rss, cpu, used, time.monotonic() - start)


def health_changes(daemon: BenchDaemon, offset: int) -> list[str]:
    """Health transitions logged since ``offset``; a healthy site has none."""
    return [
        line
        for line in daemon.log_since(offset).splitlines()
        if " is unhealthy: " in line or " is healthy: " in line
    ]


def measure(
    state: str, seconds: int, warmup_s: float, keep: bool, infra_s: float
) -> dict[str, object]:
    supervising = state == "supervising"
    logger.info("%s: starting the daemon", state)
    with workspace(state, keep) as workdir:
        daemon = BenchDaemon(
            workdir,
            bridges=BRIDGES if supervising else (),
            components=resource_components(infra_s) if supervising else None,
        )
        try:
            with daemon:
                for bridge in daemon.bridges:
                    daemon.wait_for_log(rf"{bridge.name} is healthy")
                # A bridge never heard from is called unhealthy one window and one check
                # after start-up: past that, "healthy" means its heartbeats arrive.
                proof_s = max(
                    (b.heartbeat_window_s + b.check_interval_s for b in BRIDGES), default=0
                )
                time.sleep(max(warmup_s, proof_s + 0.5 if supervising else 0.0))
                offset = daemon.log_size()
                settled = [line for line in health_changes(daemon, 0) if " is unhealthy: " in line]
                if settled:
                    raise BenchError(f"unhealthy before sampling: {settled[0]}")
                logger.info("%s: sampling daemon pid %d for %d s", state, daemon.pid, seconds)
                usage = sample(daemon, seconds)
                changes = health_changes(daemon, offset)
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("%s: %s", state, exc)
            return {"error": f"{type(exc).__name__}: {exc}", **daemon.findings()}
        for line in changes:
            logger.warning("%s: health changed while sampling: %s", state, line)
        return {**usage.summary(), "health_changes": changes, **daemon.findings()}


def table(results: dict[str, dict[str, Any]], seconds: int, warmup_s: float) -> str:
    lines = [
        f"{'state':<13}{'samples':>8}{'RSS median':>13}{'RSS max':>12}"
        f"{'CPU median':>12}{'CPU mean':>10}{'CPU max':>9}"
    ]
    for state, entry in results.items():
        if "error" in entry:
            lines.append(f"{state:<13}  error: {entry['error']}")
            continue
        lines.append(
            f"{state:<13}{entry['samples']:>8}"
            f"{entry['rss_mb_median']:>9.1f} MiB{entry['rss_mb_max']:>8.1f} MiB"
            f"{entry['cpu_percent_median']:>10.1f} %{entry['cpu_percent_mean']:>8.2f} %"
            f"{entry['cpu_percent_max']:>7.1f} %"
        )
    lines.append(
        f"daemon process alone (not its broker or bridges); one sample a second for {seconds} s"
        f" after a {warmup_s:g} s warm-up; CPU in % of one core; mean = CPU time / wall time"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=60, help="samples per state (60)")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds after start-up before sampling (5)"
    )
    parser.add_argument(
        "--infra-interval",
        type=float,
        default=5.0,
        help="check interval of the database, memory, disk and cpu components (5 s)",
    )
    parser.add_argument("--only", choices=STATES, help="measure one state")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if args.warmup < 0 or args.infra_interval <= 0:
        parser.error("--warmup must be >= 0 and --infra-interval > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_bench_process()
    states = [args.only] if args.only else list(STATES)
    try:
        results = {
            state: measure(state, args.seconds, args.warmup, args.keep, args.infra_interval)
            for state in states
        }
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    if args.json:
        print(
            json.dumps(
                {
                    **results,
                    "seconds": args.seconds,
                    "warmup_s": args.warmup,
                    "infra_check_interval_s": args.infra_interval,
                }
            )
        )
    else:
        print(table(results, args.seconds, args.warmup))
    return 0 if all("error" not in entry for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
