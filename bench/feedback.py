"""What people's feedback costs: storing it, reading an execution's annotations, and the
analysis that counts it.

**The store.** A temporary SQLite file filled by the simulator (the real runner, store
and learning loop) with ``--incidents`` incidents (150) of the ``already-good``
scenario (``tests/scenarios/``, seed 2): the history the browser test uses.

**Figures.**

- ``give_ms``: p50 and p99 (nearest rank) of ``FeedbackRepository.give`` over
  ``--feedback`` feedbacks (1,000), each on an execution drawn at random (seeded), with
  one of its steps marked wasted, an escalation timing and a note: one transaction with
  its audit entry each, checked against the execution's steps;
- ``annotations_ms``: p50 and p99 of ``load_annotations`` (what the execution page and
  its JSON read: metrics, version, memory record, pending recommendations, feedback)
  over every execution, after the feedback;
- ``analysis_s``: one ``LearningService.analyze`` before any feedback and one after it
  (the pending recommendations are refreshed with the feedback counted), and the
  number of candidate uses of feedback the second report lists.

Each figure is ``time.perf_counter()`` around the call alone.

    .venv/bin/python bench/feedback.py [--incidents 150] [--feedback 1000] [--seed 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from graylogic_supervisor.learning.annotations import load_annotations
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.feedback import ESCALATION_TIMINGS, Feedback
from graylogic_supervisor.store.views import RecordViews

SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "scenarios" / "already-good.yaml"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def figures_ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(1000 * percentile(seconds, 0.5), 3),
        "p99": round(1000 * percentile(seconds, 0.99), 3),
    }


async def measure(incidents: int, feedbacks: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        async with Database(Path(tmp) / "bench.db") as db:
            sim = await Simulation.start(db, load_scenario(SCENARIO), SimulationOptions(seed=seed))
            for _ in range(incidents):
                playbook = await sim.versions.active_playbook(sim.playbook_id)
                assert playbook is not None
                await sim.incident(playbook)
            started = time.perf_counter()
            await sim.learning.analyze("bench")
            before_s = time.perf_counter() - started

            views = RecordViews(db)
            rows = await db.fetchall("SELECT id FROM executions ORDER BY started_at")
            steps = {
                str(row["id"]): [s.step_id for s in await views.steps(str(row["id"]))]
                for row in rows
            }
            ids = [e for e, s in steps.items() if s]
            give: list[float] = []
            for number in range(feedbacks):
                execution_id = rng.choice(ids)
                given = Feedback(
                    sufficient=rng.random() < 0.5,
                    wasted_steps=(rng.choice(steps[execution_id]),),
                    escalation=rng.choice(ESCALATION_TIMINGS),
                    note=f"feedback {number}",
                )
                started = time.perf_counter()
                await sim.learning.feedback.give(
                    execution_id, given, by=f"tech-{number % 7}", now=sim.clock.now()
                )
                give.append(time.perf_counter() - started)

            annotations: list[float] = []
            for execution_id in ids:
                execution = await views.execution(execution_id)
                assert execution is not None
                its_steps = await views.steps(execution_id)
                started = time.perf_counter()
                await load_annotations(
                    execution, its_steps, learning=sim.learning, versions=sim.versions, views=views
                )
                annotations.append(time.perf_counter() - started)

            started = time.perf_counter()
            report = await sim.learning.analyze("bench")
            after_s = time.perf_counter() - started
            pending = await sim.learning.store.listing("pending")
    uses = sum(
        len(considered.get("feedback", {}).get("uses", []))
        for playbook in report["playbooks"]
        for considered in playbook["considered"]
    )
    return {
        "incidents": incidents,
        "executions": len(ids),
        "feedbacks": feedbacks,
        "give_ms": figures_ms(give),
        "annotations_ms": figures_ms(annotations),
        "analysis_s": {"before_feedback": round(before_s, 3), "with_feedback": round(after_s, 3)},
        "feedback_uses_listed": uses,
        "candidates_considered": sum(len(p["considered"]) for p in report["playbooks"]),
        "recommendations_pending": len(pending),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=150, help="simulated incidents (150)")
    parser.add_argument("--feedback", type=int, default=1000, help="feedbacks given (1000)")
    parser.add_argument("--seed", type=int, default=2, help="the simulation's and draws' seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    result = asyncio.run(measure(args.incidents, args.feedback, args.seed))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['executions']} executions, {result['feedbacks']} feedbacks")
    print(f"give: p50 {result['give_ms']['p50']} ms, p99 {result['give_ms']['p99']} ms")
    shown = result["annotations_ms"]
    print(f"annotations of an execution: p50 {shown['p50']} ms, p99 {shown['p99']} ms")
    analysis = result["analysis_s"]
    print(
        f"analysis: {analysis['before_feedback']} s before feedback,"
        f" {analysis['with_feedback']} s with it"
        f" ({result['candidates_considered']} candidates considered,"
        f" {result['recommendations_pending']} recommendations pending,"
        f" {result['feedback_uses_listed']} uses of feedback listed on candidates)"
    )


if __name__ == "__main__":
    main()
