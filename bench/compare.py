"""graylogic-supervisor against supervisord and monit in one run: recovery, and idle cost.

Each supervisor runs its own Mosquitto on its own free loopback port, from its own
temporary directory (``supervisors.py``), one after the other. For each one:

1. Start it and wait until it has started (our daemon: its "running" log line; the
   others: their broker answers CONNECT), then a warm-up (``--warmup``, 5 s).
2. Idle: one sample a second for ``--idle-seconds`` (60) of the supervisor's own
   process, not its broker, while it supervises the broker (``idle.sample``): median
   RSS, mean CPU (CPU time over wall time, 100 = one core).
3. Recovery: ``--rounds`` (20) SIGKILLs of the broker, each timed to the next CONNACK
   from a new broker (``recovery.measure``).

Our daemon runs the shipped config (``config/supervisor.yaml``: the ``mqtt`` component
probed every 5 s, the admin page on) with its own paths and ports and the recovery
policy relaxed, and every recovery is its full tracked playbook. supervisord runs with
``autorestart=true``, monit with a 1 s cycle.

    .venv/bin/python bench/compare.py [--rounds 20] [--idle-seconds 60] [--json]
    .venv/bin/python bench/compare.py --quick --only graylogic-supervisor --json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from idle import MIB, sample
from processes import BenchError, prepare_bench_process
from recovery import measure, milliseconds, summarize, workspace
from supervisors import TARGETS, Graylogic

QUICK = {"rounds": 3, "idle_seconds": 5, "warmup": 2.0}
FULL = {"rounds": 20, "idle_seconds": 60, "warmup": 5.0}
# ratio key: (section of a supervisor's entry, figure)
COMPARED = {
    "median_s": ("recovery", "median_s"),
    "p90_s": ("recovery", "p90_s"),
    "rss_mb": ("idle", "rss_mb_median"),
    "cpu_percent": ("idle", "cpu_percent_mean"),
}
METHOD = (
    "recovery: kill -9 to CONNACK, median = statistics.median, p90 = nearest rank;"
    " idle: the supervisor's process alone, RSS median, CPU mean = CPU time / wall time"
    " (100 = one core); ratio = ours / theirs"
)

logger = logging.getLogger("bench.compare")


@dataclass(frozen=True)
class Settings:
    rounds: int
    idle_seconds: int
    warmup_s: float
    seed: int
    keep: bool


def run_tool(name: str, settings: Settings) -> dict[str, object]:
    """Idle first, then the kills, on one instance of the supervisor and its broker."""
    logger.info("%s: %d s idle, then %d rounds", name, settings.idle_seconds, settings.rounds)
    with workspace(name, settings.keep) as workdir:
        target = TARGETS[name](workdir)
        try:
            with target:
                target.wait_started()
                time.sleep(settings.warmup_s)
                proc = psutil.Process(target.supervisor_pid)
                process = " ".join(proc.cmdline()[:4])  # the supervisor, not its broker
                logger.info("%s: sampling pid %d: %s", name, proc.pid, process)
                usage = sample(target, settings.idle_seconds)
                samples = measure(target, settings.rounds, random.Random(settings.seed))
                rss_after = proc.memory_info().rss / MIB
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("%s: %s", name, exc)
            return {"error": f"{type(exc).__name__}: {exc}", **target.findings()}
        return {
            "recovery": summarize(samples),
            "idle": usage.summary(),
            "rss_mb_after_rounds": round(rss_after, 2),
            "process": process,
            "port": target.port,
            **target.findings(),
        }


def figure(entry: dict[str, Any] | None, section: str, key: str) -> float | None:
    value = (entry or {}).get(section, {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Ours over each other supervisor's, per figure: below 1, ours is faster or lighter."""
    ours = results.get(Graylogic.name)
    out: dict[str, dict[str, float | None]] = {}
    for name, entry in results.items():
        if name == Graylogic.name:
            continue
        out[name] = {}
        for key, (section, field) in COMPARED.items():
            mine, theirs = figure(ours, section, field), figure(entry, section, field)
            out[name][key] = round(mine / theirs, 4) if mine is not None and theirs else None
    return out


def table(
    results: dict[str, dict[str, Any]],
    ratio: dict[str, dict[str, float | None]],
    settings: Settings,
) -> str:
    lines = [
        f"{'supervisor':<22}{'rounds':>7}{'median':>11}{'p90':>11}{'min':>11}{'max':>11}"
        f"{'RSS':>11}{'CPU':>8}"
    ]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"{name:<22}  error: {entry['error']}")
            continue
        recovery, idle = entry["recovery"], entry["idle"]
        times = "".join(
            f"{milliseconds(recovery[k]):>11}" for k in ("median_s", "p90_s", "min_s", "max_s")
        )
        lines.append(
            f"{name:<22}{recovery['rounds']:>7}{times}"
            f"{idle['rss_mb_median']:>7.1f} MiB{idle['cpu_percent_mean']:>6.2f} %"
        )
    for name, values in ratio.items():
        shown = ", ".join(
            f"{key} {'-' if value is None else f'{value:.3g}'}" for key, value in values.items()
        )
        lines.append(f"ours / {name}: {shown}")
    if Graylogic.name in results and "daemon_log" in results[Graylogic.name]:
        executions = results[Graylogic.name]["daemon_log"]["executions"]
        lines.append(f"{Graylogic.name} executions: {executions}")
    lines.append(
        f"{settings.rounds} kills each; idle sampled once a second for {settings.idle_seconds} s"
        f" after a {settings.warmup_s:g} s warm-up"
    )
    lines.append(METHOD)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, help="kills per supervisor (20; --quick 3)")
    parser.add_argument(
        "--idle-seconds", type=int, help="idle samples, one a second (60; --quick 5)"
    )
    parser.add_argument("--warmup", type=float, help="seconds before sampling (5; --quick 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the spacing of kills (1)")
    parser.add_argument(
        "--only", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short mode: 3 rounds, 5 s idle, 2 s warm-up"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in TARGETS]
    if unknown or not args.names:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    if args.rounds < 1 or args.idle_seconds < 1 or args.warmup < 0:
        parser.error("--rounds and --idle-seconds must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_bench_process()
    settings = Settings(args.rounds, args.idle_seconds, args.warmup, args.seed, args.keep)
    try:
        results = {name: run_tool(name, settings) for name in args.names}
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    ratio = ratios(results)
    if args.json:
        print(
            json.dumps(
                {
                    **results,
                    "ratios": ratio,
                    "rounds": settings.rounds,
                    "idle_seconds": settings.idle_seconds,
                    "warmup_s": settings.warmup_s,
                    "seed": settings.seed,
                    "method": METHOD,
                }
            )
        )
    else:
        print(table(results, ratio, settings))
    return 0 if all("error" not in entry for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
