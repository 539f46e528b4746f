"""How many executions each rollback test needs to see a 2x slowdown (its power).

For each situation and each n (executions of each version), 4,000 simulated
comparisons (``--trials``) of a baseline and a new version drawn from the stated
distributions go through ``learning/rollback.py``'s own tests; the table gives the
share that roll back, per test. Seeded (``--seed``), so the figures replay.

    .venv/bin/python bench/rollback_power.py [--trials 4000] [--seed 0] [--json]

Situations (the new version is 2x slower in mean time to repair in all but the last):

- ``slower-steps``: every execution resolves; times log-normal (sigma 0.8) with a
  median of 60 s, then 120 s. Success does not move: only the time test can see it.
- ``more-escalations``: the playbook takes 60 s (log-normal, sigma 0.5) and fixes
  90 % then 76 %; the others cost the technician's 1,800 s more. Mean 248 s -> 500 s
  (2.0x from a 14-point drop).
- ``many-more-escalations``: 70 % then 40 % fixed, mean 608 s -> 1,148 s (1.9x).
- ``no-change``: the baseline of ``more-escalations`` on both sides: how often
  either test rolls back a version that is no worse (its false alarms).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graylogic_supervisor.learning.rollback import rollback_test, time_test

TECHNICIAN_S = 1800.0
SIZES = (10, 15, 20, 30, 40, 60, 80, 120, 160, 200)

Draw = Callable[[random.Random], tuple[bool, float]]  # (success, resolution time)


def lognormal(median: float, sigma: float, success: float) -> Draw:
    def draw(rng: random.Random) -> tuple[bool, float]:
        took = rng.lognormvariate(0.0, sigma) * median
        if rng.random() < success:
            return True, took
        return False, took + TECHNICIAN_S

    return draw


SITUATIONS: dict[str, tuple[Draw, Draw]] = {
    "slower-steps": (lognormal(60.0, 0.8, 1.0), lognormal(120.0, 0.8, 1.0)),
    "more-escalations": (lognormal(60.0, 0.5, 0.9), lognormal(60.0, 0.5, 0.76)),
    "many-more-escalations": (lognormal(60.0, 0.5, 0.7), lognormal(60.0, 0.5, 0.4)),
    "no-change": (lognormal(60.0, 0.5, 0.9), lognormal(60.0, 0.5, 0.9)),
}


def power(base: Draw, new: Draw, n: int, trials: int, rng: random.Random) -> dict[str, float]:
    hits = {"success": 0, "time": 0, "either": 0}
    for _ in range(trials):
        before = [base(rng) for _ in range(n)]
        after = [new(rng) for _ in range(n)]
        success = rollback_test(
            sum(ok for ok, _ in before), n, sum(ok for ok, _ in after), n, min_executions=10
        )
        time = time_test([t for _, t in before], [t for _, t in after], min_executions=10)
        s = success is not None and success.rollback
        t = time is not None and time.rollback
        hits["success"] += s
        hits["time"] += t
        hits["either"] += s or t
    return {key: value / trials for key, value in hits.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table = {
        name: {n: power(base, new, n, args.trials, rng) for n in SIZES}
        for name, (base, new) in SITUATIONS.items()
    }
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for name, rows in table.items():
        print(name)
        print("   n  success  time  either")
        for n, row in rows.items():
            print(f"{n:4d}  {row['success']:7.2f} {row['time']:5.2f} {row['either']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
