"""Workflow learning at scale: catch-up and analysis over a large store, and simulations.

**Analysis.** A store in a temporary directory, shaped like a site's after years of
MQTT outages. It is created with the real ``Database`` (so the migrations run), and
``PlaybookVersions.seed`` stores version 1.0.0 of ``mqtt-basic.yaml``, loaded with
``load_playbook`` against the actions of the ``mqtt-mixed-causes`` scenario. The
history is then bulk-inserted with the plain ``sqlite3`` module, ``executemany`` in
chunks of 10,000 executions, all in one transaction: one ``failures`` row, one
``executions`` row (``kind`` playbook, ``learned = 0``: nothing counted yet), its
``execution_steps`` rows and one ``failure_memory`` row (a ``FailureRecord`` built with
the pydantic models) per incident. Incidents are 10 minutes apart from 2026-01-05 08:00
UTC, and generated until the step rows reach 1,000,000 (``--quick``: 100,000), the last
execution whole (so a row or two over).

Each incident draws its cause from the scenario (broker crashed 50 %, firewall rule
30 %, disk full 20 %) and walks the playbook, every step drawing its duration and
outcome from the scenario's action for that cause (``--seed``). So a crashed broker
fails ``check_broker``, ``restart`` fixes it (95 %; 5 % it fails and escalates) and
``verify`` succeeds: resolved, ``resolved_by = restart``, and the memory says the
supervisor fixed it. A firewall rule or a full disk passes ``check_broker`` and fails
``verify``: escalated, and the memory says a technician fixed it with
``remove_firewall_rule`` or ``disk_cleanup`` (the scenario's fix), 15 to 60 minutes
after the playbook gave up (the scenario's 30 minutes times 0.5 to 2, uniform).
No step times out: the scenario's durations stay under the playbook's timeouts.

Then, with the real ``LearningService`` on a ``Database`` opened as the daemon opens
it (WAL, ``synchronous=FULL``), the system clock and default ``LearningConfig``
(a replay window of the 1,000 most recent executions):

- ``catch_up_s``: ``time.perf_counter()`` around ``catch_up()``, which counts every
  execution into the metrics, 2,000 per transaction; ``executions`` is how many it
  counted (it must be all of them), ``catch_up_executions_per_s`` the one over the other;
- ``analysis_s``: the same around ``analyze("bench")`` right after, which finds nothing
  left to count, loads the replay window, replays every candidate change and stores the
  recommendations; ``recommendations`` is how many it stored;
- ``peak_rss_mb``: this process's largest RSS in MiB during both, sampled with
  ``psutil`` every 50 ms by a task on the same loop, and at their start and end. The
  analysis's replays run on the loop and hold it, so a peak in the middle of one is
  missed; the store's reads run in aiosqlite's thread and are sampled;
- ``store_mb``: the store file in MiB once generated (WAL checkpointed into it).

The package's logging is turned down to ERROR, as the ``simulate`` command does: the
runner logs a line per execution (a WARNING when it escalates), and that is not what is
measured.

**Simulation.** ``simulate()`` as ``graylogic-supervisor simulate --auto-approve``
runs it:
the real runner, store and learning loop on a scratch file with ``synchronous=OFF``,
virtual time, for 5 rounds of 300 incidents (``--quick``: 60), each round followed by
an analysis whose recommendations are approved (``auto_approve``). For each scenario
(``mqtt-mixed-causes``, ``bridge-heartbeat``, ``already-good``), ``wall_s`` is
``time.perf_counter()`` around the whole ``simulate()`` call, ``incidents`` is rounds
times incidents per round, and ``incidents_per_s`` the one over the other. Virtual time
costs nothing, so this is the engine, the store and the learning loop at full speed.

The scenario files come from ``--scenarios`` (``tests/scenarios`` by default: copies of
the shared examples).

**Scenarios** (the issue-14 goals). Every scenario in ``tests/scenarios`` and
``../shared/scenarios`` (``--shared``; the same name once, ours first), seeds 0 to 4,
5 rounds of 300 incidents with ``--auto-approve`` (``--quick``: seed 0, 5 rounds of 60),
in a process pool of 2. For each: round-1 and final ``mttr_s``, the floor, final / floor,
the worst round-over-round ratio and whether a rollback followed it, recommendations made
from fewer than 10 executions in 30 days, and recommendations that remove or bypass the
health verification (``graylogic_supervisor/sim/goals.py``); then the goal violations
summed. ``--only scenarios`` runs this table alone.

    .venv/bin/python bench/learning.py [--quick] [--json] [--seed 1] [--scenarios DIR]
        [--shared DIR] [--only analysis|simulation|scenarios]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine import MIB, RssSampler

from graylogic_supervisor.clock import SystemClock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.domain.memory import (
    Attempt,
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.playbooks.loader import LoadedPlaybook, load_playbook
from graylogic_supervisor.playbooks.model import DONE, TERMINALS, Playbook, Step
from graylogic_supervisor.sim import goals
from graylogic_supervisor.sim.actions import scenario_registry
from graylogic_supervisor.sim.scenario import Scenario, load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, scenario_playbook, simulate
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.memory import outcome_of
from graylogic_supervisor.store.versions import PlaybookVersions

SCENARIOS = Path(__file__).resolve().parents[1] / "tests" / "scenarios"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "scenarios"
PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
SEEDS = (0, 1, 2, 3, 4)
POOL = 2
DATA_SCENARIO = "mqtt-mixed-causes"
PLAYBOOK_FILE = "mqtt-basic.yaml"
SIMULATED = ("mqtt-mixed-causes", "bridge-heartbeat", "already-good")
STEP_RECORDS = 1_000_000
QUICK_STEP_RECORDS = 100_000
INCIDENTS = 300
QUICK_INCIDENTS = 60
ROUNDS = 5
CHUNK = 10_000  # executions per executemany
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
BETWEEN_INCIDENTS = timedelta(minutes=10)
REACTION = timedelta(milliseconds=200)  # from the failure's record to its execution's start
OTHER_COMPONENTS = ("database", "disk", "bridge-knx")

logger = logging.getLogger("bench.learning")


@dataclass(frozen=True)
class Walk:
    """What the playbook did for one incident."""

    steps: int
    last: Step
    ended_at: datetime
    resolved: bool  # it reached done
    fixer: Step  # the step that fixed the cause, else (as the runner has it) the last one
    fix_result: str


@dataclass
class History:
    """Rows for the store, a chunk at a time, as ``executemany`` parameters."""

    playbook: Playbook
    scenario: Scenario
    rng: random.Random
    failures: list[tuple[Any, ...]] = field(default_factory=list)
    executions: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    memory: list[tuple[Any, ...]] = field(default_factory=list)

    def add_incident(self, detected_at: datetime) -> int:
        """One failure, the playbook's execution for it, and its memory; the steps it took."""
        rng, scenario, playbook = self.rng, self.scenario, self.playbook
        cause = scenario.draw_cause(rng)
        failure_id = new_id("fail", detected_at, rng)
        execution_id = new_id("exec", detected_at, rng)
        component, error_id = scenario.trigger.component, scenario.trigger.error_id
        message = f"{component} failed ({error_id})"
        self.failures.append(
            (failure_id, component, error_id, "error", message, isoformat(detected_at))
        )
        started_at = detected_at + REACTION
        walk = self._walk(execution_id, cause, started_at)
        status = "resolved" if walk.resolved else "escalated"
        ending: tuple[str | None, str | None, int, str]
        if walk.resolved:
            ending = (walk.fixer.id, walk.fix_result, 1, f"resolved after step {walk.last.id}")
        else:
            ending = (None, None, 0, f"step {walk.last.id} escalated (failure)")
        self.executions.append(
            (
                execution_id,
                playbook.id,
                playbook.version,
                failure_id,
                error_id,
                component,
                status,
                isoformat(started_at),
                isoformat(walk.ended_at),
                round((walk.ended_at - started_at).total_seconds(), 6),
                *ending,  # resolved_by, what_fixed_it, playbook_sufficient, detail
            )
        )
        if walk.resolved:
            resolution = Resolution(
                resolved_at=walk.ended_at,
                fixed_by="supervisor",
                what_fixed_it=f"{walk.fixer.action} (playbook {playbook.version})",
                fix_action=walk.fixer.action,
                fix_target=None,
            )
        else:
            fix = scenario.fix_action_for(cause)
            manual_s = scenario.manual.resolve_s * rng.uniform(0.5, 2)
            resolution = Resolution(
                resolved_at=walk.ended_at + timedelta(seconds=manual_s),
                fixed_by="technician",
                what_fixed_it=f"{fix or 'unknown'} by hand",
                fix_action=fix,
                fix_target=None,
                root_cause=cause,
            )
        record = FailureRecord(
            context=self._context(failure_id, detected_at, cause, message),
            attempts=[
                Attempt(
                    execution_id=execution_id,
                    kind="playbook",
                    playbook_id=playbook.id,
                    status=status,
                )
            ],
            resolution=resolution,
        )
        self.memory.append(
            (
                failure_id,
                error_id,
                component,
                isoformat(detected_at),
                record.model_dump_json(),
                outcome_of(record),
                resolution.fix_action,
                resolution.fix_target,
                isoformat(resolution.resolved_at),
            )
        )
        return walk.steps

    def _walk(self, execution_id: str, cause: str, started_at: datetime) -> Walk:
        """The playbook's steps from the first to done or escalate, as the scenario draws them."""
        rng, scenario, playbook = self.rng, self.scenario, self.playbook
        fixer: Step | None = None
        fix_result = ""
        step = playbook.steps[0]
        at = started_at
        seq = 0
        while True:
            behaviour = scenario.actions[step.action]
            took = behaviour.draw_duration(cause, rng)
            word = behaviour.draw_outcome(cause, rng)
            succeeded = word in ("success", "fix") or (word == "health" and fixer is not None)
            result = _result(step.action, word, succeeded)
            if word == "fix" and fixer is None:
                fixer = step
                fix_result = f"{step.action} {step.target or ''}".strip() + f": {result}"
            target = playbook.resolve_transition(
                step, step.on_success if succeeded else step.on_failure
            )
            seq += 1
            ended = at + timedelta(seconds=took)
            self.steps.append(
                (
                    execution_id,
                    seq,
                    step.id,
                    step.name,
                    step.action,
                    step.target,
                    1,
                    isoformat(at),
                    isoformat(ended),
                    round(took, 6),
                    "success" if succeeded else "failure",
                    result,
                    None if succeeded else result,
                    target,
                )
            )
            at = ended
            if target in TERMINALS:
                if fixer is None:
                    fixer, fix_result = step, f"{step.action} {step.target or ''}".strip()
                return Walk(seq, step, at, target == DONE, fixer, fix_result)
            step = playbook.step(target)

    def _context(
        self, failure_id: str, detected_at: datetime, cause: str, message: str
    ) -> FailureContext:
        rng = self.rng
        return FailureContext(
            failure_id=failure_id,
            incident_id=None,
            detected_at=detected_at,
            error_id=self.scenario.trigger.error_id,
            component=self.scenario.trigger.component,
            severity="error",
            message=message,
            other_health={
                name: "unhealthy" if name == "disk" and cause == "disk_full" else "healthy"
                for name in OTHER_COMPONENTS
            },
            recent_events=[
                RecentEvent(
                    at=detected_at,
                    kind="health",
                    subject=self.scenario.trigger.component,
                    detail="unhealthy",
                )
            ],
            resources=Resources(
                memory_percent=rng.uniform(20, 60),
                disk_percent=100.0 if cause == "disk_full" else rng.uniform(30, 80),
                cpu_percent=rng.uniform(0, 40),
                load_per_cpu=rng.uniform(0, 1),
            ),
            environment=Environment(
                hour=detected_at.hour,
                weekday=detected_at.weekday(),
                uptime_s=rng.uniform(60, 3e7),
            ),
        )

    def write(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            self.failures,
        )
        conn.executemany(
            "INSERT INTO executions (id, playbook_id, playbook_version, failure_id, error_id,"
            " component, status, started_at, completed_at, duration_seconds, resolved_by,"
            " what_fixed_it, playbook_sufficient, detail, kind, learned)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'playbook', 0)",
            self.executions,
        )
        conn.executemany(
            "INSERT INTO execution_steps (execution_id, seq, step_id, name, action, target,"
            " attempt, started_at, completed_at, duration_seconds, outcome, result, error,"
            " transitioned_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.steps,
        )
        conn.executemany(
            "INSERT INTO failure_memory (failure_id, error_id, component, detected_at, record,"
            " outcome, fix_action, fix_target, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.memory,
        )
        for rows in (self.failures, self.executions, self.steps, self.memory):
            rows.clear()


def _result(action: str, word: str, succeeded: bool) -> str:
    """What the scenario's action reports (``sim/actions.py``)."""
    if word == "health":
        return "healthy" if succeeded else "still unhealthy"
    return f"{action}: {'fixed' if word == 'fix' else 'ok' if succeeded else 'failed'}"


async def create_store(path: Path, loaded: LoadedPlaybook) -> None:
    async with Database(path) as db:
        await PlaybookVersions(db).seed(loaded.playbook, loaded.source, "bench", START)


def fill_store(
    path: Path, playbook: Playbook, scenario: Scenario, step_records: int, seed: int
) -> tuple[int, int]:
    """Incidents until the step rows reach ``step_records``; (step rows, executions)."""
    history = History(playbook, scenario, random.Random(seed))
    steps = executions = 0
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")
        while steps < step_records:
            for _ in range(CHUNK):
                steps += history.add_incident(START + executions * BETWEEN_INCIDENTS)
                executions += 1
                if steps >= step_records:
                    break
            history.write(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()  # the last connection out checkpoints the WAL into the file
    return steps, executions


async def measure_learning(path: Path, specs: Mapping[str, ActionSpec]) -> dict[str, Any]:
    async with Database(path) as db:
        service = LearningService(
            db,
            PlaybookVersions(db),
            AuditLog(db),
            specs,
            settings=LearningConfig(),
            clock=SystemClock(),
        )
        async with RssSampler() as rss:
            started = time.perf_counter()
            counted = await service.catch_up()
            catch_up_s = time.perf_counter() - started
            started = time.perf_counter()
            report = await service.analyze("bench")
            analysis_s = time.perf_counter() - started
    return {
        "executions": counted,
        "catch_up_s": round(catch_up_s, 3),
        "catch_up_executions_per_s": round(counted / catch_up_s, 1),
        "analysis_s": round(analysis_s, 3),
        "recommendations": len(report["recommendations"]),
        "peak_rss_mb": round(rss.peak_bytes / MIB, 1),
    }


def analysis(scenarios: Path, step_records: int, seed: int) -> dict[str, Any]:
    scenario = load_scenario(scenarios / f"{DATA_SCENARIO}.yaml")
    specs = scenario_registry(scenario, {}).specs()
    loaded = load_playbook(scenarios / PLAYBOOK_FILE, specs)
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as directory:
        path = Path(directory) / "store.db"
        asyncio.run(create_store(path, loaded))
        logger.info("generating %d step records", step_records)
        steps, executions = fill_store(path, loaded.playbook, scenario, step_records, seed)
        store_mb = path.stat().st_size / MIB
        logger.info("  %d executions, store %.1f MiB; catch-up and analysis", executions, store_mb)
        measured = asyncio.run(measure_learning(path, specs))
    if measured["executions"] != executions:
        raise RuntimeError(f"catch-up counted {measured['executions']} of {executions}")
    return {"step_records": steps, **measured, "store_mb": round(store_mb, 1)}


async def timed_simulation(scenario: Scenario, options: SimulationOptions) -> float:
    started = time.perf_counter()
    await simulate(scenario, options)
    return time.perf_counter() - started


def simulation(scenarios: Path, incidents: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    options = SimulationOptions(incidents=incidents, rounds=ROUNDS, auto_approve=True)
    for name in SIMULATED:
        scenario = load_scenario(scenarios / f"{name}.yaml")
        logger.info("simulating %s: %d rounds of %d incidents", name, ROUNDS, incidents)
        wall_s = asyncio.run(timed_simulation(scenario, options))
        total = incidents * ROUNDS
        results[name] = {
            "incidents": total,
            "wall_s": round(wall_s, 3),
            "incidents_per_s": round(total / wall_s, 1),
        }
    return results


def scenario_files(directories: Sequence[Path]) -> list[Path]:
    """Every scenario file (a YAML file with ``causes:``), each name once, in order; an
    ``uncovered`` one has no playbook to improve (``bench/drafts.py`` measures those)."""
    found: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            if "\ncauses:" in path.read_text(encoding="utf-8"):
                scenario = load_scenario(path, PLAYBOOKS)
                if not scenario.uncovered:
                    found.setdefault(scenario.name, path)
    return list(found.values())


def scenario_row(job: tuple[str, int, int]) -> dict[str, Any]:
    """One scenario and seed, in a worker of the pool: the goals' figures."""
    path, seed, incidents = job
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)
    scenario = load_scenario(Path(path), PLAYBOOKS)
    options = SimulationOptions(incidents=incidents, rounds=ROUNDS, seed=seed, auto_approve=True)
    report = asyncio.run(simulate(scenario, options))
    stock = scenario_playbook(scenario, scenario_registry(scenario, {}).specs())
    rounds = report["rounds"]
    mttrs = [entry["mttr_s"] for entry in rounds]
    worst = goals.worst_slowdown(report)
    already_good = scenario.name == "already-good"
    return {
        "scenario": scenario.name,
        "seed": seed,
        "round_1_s": mttrs[0],
        "final_s": mttrs[-1],
        "floor_s": report["floor_s"],
        "final_to_floor": report["final_to_floor"],
        "worst_round_ratio": round(worst, 3),
        "rolled_back": any(entry["rolled_back_to"] is not None for entry in rounds),
        "thin_recommendations": len(goals.thin_recommendations(report)),
        "verification_breaches": len(goals.verification_breaches(report, scenario, stock)),
        "violations": goals.violations(report, scenario, stock, already_good),
    }


def scenarios_table(
    directories: Sequence[Path], seeds: Sequence[int], incidents: int
) -> dict[str, Any]:
    files = scenario_files(directories)
    jobs = [(str(path), seed, incidents) for path in files for seed in seeds]
    logger.info(
        "goals: %d scenarios x %d seeds, %d rounds of %d", len(files), len(seeds), ROUNDS, incidents
    )
    with ProcessPoolExecutor(POOL) as pool:
        rows = list(pool.map(scenario_row, jobs))
    violated = [row for row in rows if row["violations"]]
    return {
        "seeds": list(seeds),
        "rounds": ROUNDS,
        "incidents": incidents,
        "rows": rows,
        "summary": {
            "runs": len(rows),
            "runs_with_violations": len(violated),
            "over_1_6_floor": sum(
                1 for row in rows if (row["final_to_floor"] or 0) > goals.MAX_FINAL_TO_FLOOR
            ),
            "regressions": sum(
                1 for row in rows if any("slower" in line for line in row["violations"])
            ),
            "thin_recommendations": sum(row["thin_recommendations"] for row in rows),
            "verification_breaches": sum(row["verification_breaches"] for row in rows),
        },
    }


def scenarios_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{'scenario':<22} {'seed':>4} {'round 1':>8} {'final':>8} {'floor':>8} {'ratio':>6}"
        f" {'worst':>6} {'rb':>3} {'thin':>4} {'verif':>5}"
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['scenario']:<22} {row['seed']:>4} {row['round_1_s']:>8.1f}"
            f" {row['final_s']:>8.1f} {row['floor_s']:>8.1f} {row['final_to_floor']:>6.2f}"
            f" {row['worst_round_ratio']:>6.2f} {'yes' if row['rolled_back'] else 'no':>3}"
            f" {row['thin_recommendations']:>4} {row['verification_breaches']:>5}"
        )
    lines.append("violations: " + ", ".join(f"{k} {v}" for k, v in result["summary"].items()))
    return lines


def table(results: dict[str, Any]) -> str:
    lines = []
    if "analysis" in results:
        lines += analysis_lines(results["analysis"])
    if "simulation" in results:
        lines += simulation_lines(results["simulation"])
    if "scenarios" in results:
        lines += scenarios_lines(results["scenarios"])
    return "\n".join(lines)


def analysis_lines(a: dict[str, Any]) -> list[str]:
    return [
        f"analysis: {a['step_records']:,} step records, {a['executions']:,} executions,"
        f" store {a['store_mb']:.1f} MiB",
        f"  catch-up  {a['catch_up_s']:>9.3f} s  {a['catch_up_executions_per_s']:>11,.1f}"
        " executions/s",
        f"  analysis  {a['analysis_s']:>9.3f} s  {a['recommendations']:>11} recommendations",
        f"  peak RSS  {a['peak_rss_mb']:>9.1f} MiB",
        "",
    ]


def simulation_lines(simulated: dict[str, Any]) -> list[str]:
    lines = [f"{'simulation':<20} {'incidents':>9} {'wall s':>8} {'incidents/s':>12}"]
    lines.extend(
        f"{name:<20} {r['incidents']:>9} {r['wall_s']:>8.2f} {r['incidents_per_s']:>12.1f}"
        for name, r in simulated.items()
    )
    return [*lines, ""]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 step records and 60 incidents a round (1,000,000 and 300)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--seed", type=int, default=1, help="seed for the generated store (1)")
    parser.add_argument(
        "--scenarios",
        type=Path,
        default=SCENARIOS,
        help=f"directory of the scenario files ({SCENARIOS})",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED,
        help=f"the shared scenarios, also in the goals table ({SHARED})",
    )
    parser.add_argument(
        "--only",
        choices=("analysis", "simulation", "scenarios"),
        help="run one part only (default: all three)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logger.setLevel(logging.INFO)
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)
    incidents = QUICK_INCIDENTS if args.quick else INCIDENTS
    results: dict[str, Any] = {}
    if args.only in (None, "analysis"):
        records = QUICK_STEP_RECORDS if args.quick else STEP_RECORDS
        results["analysis"] = analysis(args.scenarios, records, args.seed)
    if args.only in (None, "simulation"):
        results["simulation"] = simulation(args.scenarios, incidents)
    if args.only in (None, "scenarios"):
        seeds = SEEDS[:1] if args.quick else SEEDS
        results["scenarios"] = scenarios_table([args.scenarios, args.shared], seeds, incidents)
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
