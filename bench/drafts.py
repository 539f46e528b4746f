"""What a draft playbook saves a site whose failure no playbook covers: MTTR and technician time.

**Method.** ``simulate`` (the real runner, store and learning loop on a virtual clock)
runs the ``memory-uncovered`` scenario (``tests/scenarios/``): low memory
(ERR-SYS-MEM-001), which no shipped playbook handles. Causes: a leaking bridge 60 %
(``restart_service`` fixes it 90 %), page cache 30 % (``drop_caches``), a stray process
10 % (``kill_stray_process``, which technicians
run by hand); a technician takes 2,700 s and
records the fix in the failure memory. Each seed runs three rounds of ``--incidents``
incidents with ``--auto-approve`` and no analysis inside a round (only the one at its
end), common random numbers across rounds:

- round 1, **before**: no playbook; every incident escalated at once, the technician's
  time is its resolution time. The analysis at its end drafts a ``new_playbook`` from
  the technicians' fixes and it is approved (the simulator's user, at the confidence
  threshold 0.8);
- round 2, **draft**: version 1.0.0 of the draft as approved;
- round 3, **learned**: whatever the learning then recommended for the draft and the
  simulator approved (reorders, retries, skipped verifications).

Per round: ``mttr_s`` (mean resolution time, the technician's time included for what
escalated), ``escalated`` and ``technician_h`` (escalated times 2,700 s, in hours).
Means are over ``--seeds`` seeds (0, 1, …).

    .venv/bin/python bench/drafts.py [--incidents 200] [--seeds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, simulate

SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "scenarios" / "memory-uncovered.yaml"
ROUNDS = ("before", "draft", "learned")
NEVER = 1e12  # no scheduled analysis inside a round


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=200, help="per round")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser.parse_args(argv)


async def one(seed: int, incidents: int) -> dict[str, Any]:
    scenario = load_scenario(SCENARIO)
    options = SimulationOptions(
        incidents=incidents,
        rounds=len(ROUNDS),
        seed=seed,
        auto_approve=True,
        analysis_interval_s=NEVER,
    )
    report = await simulate(scenario, options)
    rounds = {}
    for name, data in zip(ROUNDS, report["rounds"], strict=True):
        rounds[name] = {
            "version": data["playbook_version"],
            "mttr_s": data["mttr_s"],
            "escalated": data["escalated"],
            "technician_h": round(data["escalated"] * scenario.manual.resolve_s / 3600, 2),
        }
    drafted = [r for r in report["rounds"][0]["recommendations"] if r["type"] == "new_playbook"]
    return {
        "seed": seed,
        "draft_confidence": drafted[0]["confidence"] if drafted else None,
        "draft_approved": bool(drafted and drafted[0]["approved"]),
        "rounds": rounds,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    means = {}
    for name in ROUNDS:
        means[name] = {
            key: round(statistics.fmean(run["rounds"][name][key] for run in runs), 2)
            for key in ("mttr_s", "escalated", "technician_h")
        }
    return means


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)
    runs = [asyncio.run(one(seed, args.incidents)) for seed in range(args.seeds)]
    result = {"scenario": SCENARIO.stem, "incidents_per_round": args.incidents, "runs": runs}
    result["mean"] = summary(runs)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"{SCENARIO.stem}: {args.incidents} incidents per round, {args.seeds} seeds")
    print(f"{'seed':>4}  {'round':8} {'version':8} {'mttr_s':>9} {'escalated':>9} {'tech_h':>7}")
    for run in runs:
        for name, data in run["rounds"].items():
            print(
                f"{run['seed']:>4}  {name:8} {data['version']:8} {data['mttr_s']:>9.1f}"
                f" {data['escalated']:>9} {data['technician_h']:>7.1f}"
            )
    for name, data in result["mean"].items():
        print(
            f"mean  {name:8} {'':8} {data['mttr_s']:>9.1f} {data['escalated']:>9.1f}"
            f" {data['technician_h']:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
