"""Time from ``kill -9`` of Mosquitto to the next CONNACK, under three supervisors.

Each supervisor under test runs its own Mosquitto on its own free loopback port, from
its own temporary directory, one after the other in the same run:

- ``graylogic-supervisor``: this project's daemon, broker in process mode;
- ``supervisord`` with ``autorestart=true``;
- ``monit`` with a 1 s cycle.

A round waits 0.5-1.5 s (uniform, seeded; every supervisor gets the same sequence),
reads the broker's pid, takes ``t0 = perf_counter()``, sends SIGKILL, then opens a
fresh TCP connection every millisecond with a hand-written MQTT 3.1.1 CONNECT until a
CONNACK with return code 0 arrives (``t1``). The CONNACK counts only if the process
that owns the server end of that connection is not the one killed.

Median is ``statistics.median`` (mean of the two middle values for an even count);
p90 is nearest-rank (the ceil(0.9 n)-th smallest sample).

The benchmark makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``) and reaps the
killed broker at once, as systemd does as PID 1: monit's Mosquitto daemonizes, and an
init that reaps late leaves a zombie that monit counts as a running process.

    .venv/bin/python bench/recovery.py [--rounds 20] [--seed 1] [--only monit] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
from mqtt_ping import DISCONNECT, mqtt_connect
from processes import BenchError, is_ours, prepare_bench_process, reap, served_by
from supervisors import TARGETS, Graylogic, Monit, Supervisord, Target, wait_ready

ROUND_TIMEOUT_S = 30.0
RETRY_S = 0.001
METHOD = "median = statistics.median, p90 = nearest rank"

logger = logging.getLogger("bench.recovery")


def one_round(target: Target) -> float:
    victim = wait_ready(target)
    if not is_ours(psutil.Process(victim), target.workdir):
        raise BenchError(f"pid {victim} is not a broker we started")
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + ROUND_TIMEOUT_S
    while time.perf_counter() < deadline:
        reap(victim)
        sock = mqtt_connect(target.port)
        if sock is not None:
            t1 = time.perf_counter()
            with sock:
                owner = served_by(sock, target.workdir)
                with contextlib.suppress(OSError):
                    sock.sendall(DISCONNECT)
            if owner is not None and owner != victim:
                return t1 - t0
            logger.warning("CONNACK %.4f s after the kill not from a new broker", t1 - t0)
        time.sleep(RETRY_S)
    target.check_running()
    raise BenchError(f"{target.name}: no CONNACK within {ROUND_TIMEOUT_S} s of killing {victim}")


def measure(target: Target, rounds: int, rng: random.Random) -> list[float]:
    samples: list[float] = []
    for index in range(1, rounds + 1):
        time.sleep(rng.uniform(0.5, 1.5))
        samples.append(one_round(target))
        logger.info("%s round %d/%d: %.4f s", target.name, index, rounds, samples[-1])
    return samples


def nearest_rank(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def summarize(samples: Sequence[float]) -> dict[str, object]:
    return {
        "median_s": statistics.median(samples),
        "p90_s": nearest_rank(samples, 0.9),
        "rounds": len(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "samples_s": [round(s, 5) for s in samples],
    }


@contextlib.contextmanager
def workspace(name: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"glbench-{name}-"))
    path.chmod(0o755)  # Mosquitto, once it is no longer root, must reach its pid file
    try:
        yield path
    finally:
        if keep:
            logger.info("%s: files kept in %s", name, path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_one(name: str, rounds: int, seed: int, keep: bool) -> dict[str, object]:
    logger.info("%s: %d rounds", name, rounds)
    with workspace(name, keep) as workdir:
        target = TARGETS[name](workdir)
        try:
            with target:
                samples = measure(target, rounds, random.Random(seed))
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("%s: %s", name, exc)
            return {"error": f"{type(exc).__name__}: {exc}", **target.findings()}
        return {**summarize(samples), "port": target.port, **target.findings()}


def ratios(results: dict[str, dict[str, object]]) -> dict[str, float | None]:
    def median(name: str) -> float | None:
        value = results.get(name, {}).get("median_s")
        return value if isinstance(value, float) else None

    base = median(Graylogic.name)
    out: dict[str, float | None] = {}
    for name in (Supervisord.name, Monit.name):
        other = median(name)
        out[name] = other / base if other is not None and base else None
    return out


def milliseconds(value: object) -> str:
    return f"{value * 1000:.1f} ms" if isinstance(value, float) else "-"


def table(results: dict[str, dict[str, object]], ratio: dict[str, float | None]) -> str:
    lines = [f"{'supervisor':<22}{'rounds':>7}{'median':>12}{'p90':>12}{'max':>12}  ratio"]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"{name:<22}  error: {entry['error']}")
            continue
        times = [f"{milliseconds(entry[k]):>12}" for k in ("median_s", "p90_s", "max_s")]
        r = ratio.get(name)
        lines.append(
            f"{name:<22}{entry['rounds']:>7}{''.join(times)}" + (f"  {r:.0f}x" if r else "")
        )
    lines.append(f"kill -9 to CONNACK; {METHOD}; ratio = median / {Graylogic.name} median")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="kills per supervisor (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the spacing of kills (1)")
    parser.add_argument(
        "--only", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in TARGETS]
    if unknown or not args.names:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_bench_process()
    try:
        results = {name: run_one(name, args.rounds, args.seed, args.keep) for name in args.names}
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    ratio = ratios(results)
    if args.json:
        print(json.dumps({**results, "ratios": ratio, "method": METHOD, "seed": args.seed}))
    else:
        print(table(results, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
