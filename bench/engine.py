"""Durable steps per second through the real ``Runner`` and store, at 1, 100 and 1,000 at once.

Each level gets a fresh store file in a temporary directory, opened with the real
``Database`` (WAL, ``synchronous=FULL``, as shipped), with one playbook version seeded
and one ``failures`` row per execution recorded beforehand. The playbook has 10 steps
of a no-op action of the benchmark's own (``NoOp``: a check that returns
``StepResult.ok`` at once), chained with ``on_success: next``, the last ``done``. The
executions run through the real ``Runner`` with the system clock: ``concurrency``
workers, gathered, each calling ``runner.run`` until the level's executions are used
up, so that many executions are in flight until the tail.

**Figures.**

- ``steps_per_s``: executions times 10 over the wall time from the first ``run`` to the
  last one's end (``time.perf_counter()``). Every step boundary is one commit (the
  finished step's row updated and the next step's row inserted together); the
  execution's start shares the first step's commit and its end the last step's, so
  an execution of 10 steps is 11 commits.
- ``errors``: executions that raised, plus those that did not end ``resolved``.
- ``p50_ms``, ``p99_ms``: from a step's end to the next step's start within one
  execution, nearest-rank over all executions' 9 gaps each. Measured in-process: the
  no-op action reads ``time.perf_counter()`` when ``run()`` is entered and just before
  it returns, and the gap is an entry minus the same execution's previous return. That
  is the whole price of durability between two steps (the runner's bookkeeping, the
  one commit that updates the finished step's row and inserts the next step's, and any
  wait for the write lock behind other executions) at microsecond resolution.
- ``recorded_p50_ms``, ``recorded_p99_ms``: the same gap read back from the store
  (a step row's ``started_at`` minus the previous row's ``completed_at``). Both stamps
  are read before the boundary's one commit (the finished row's end and the next row's
  start are written together), so this gap covers the runner's bookkeeping, not the
  commit, and it is kept to the millisecond: at one execution at a time it reads 0 or
  1 ms. A cross-check, not the headline.
- ``ceiling_commits_per_s``: single-row INSERT + COMMIT per second with plain
  ``sqlite3`` (no aiosqlite, no runner) in the same directory, same WAL and
  ``synchronous``, 2,000 commits taken in 10 slices in turn with 10 slices of the
  concurrency-1 level (a shared disk's rate drifts: both see it as it is).
  A durable step at one execution at a time needs at least one commit, so this is the
  most steps per second concurrency 1 could reach on this disk.
- ``ceiling_ratio``: ``steps_per_s`` at concurrency 1 over ``ceiling_commits_per_s`` of
  the same run: how close a durable step comes to the disk's own commit rate (10 steps
  cost 11 commits, so 0.91 is the most it can read).
- ``peak_rss_mb``: the largest resident set size of this process (``psutil``, sampled
  every 50 ms by a task on the same loop, and at each level's start and end), in MiB.

The runner's log lines are INFO and no handler takes INFO here, so logging costs
next to nothing; the daemon's JSON logging would add to it.

**Comparison.** Unless ``--no-compare`` is given, the same levels are run again with
``PRAGMA synchronous=NORMAL`` set through ``Database.execute`` right after the store
opens (and read back to check), in a child process of this script so its peak RSS is
its own. Those figures go under the ``store`` key. NORMAL in WAL mode survives a
crash of the process but not necessarily a power cut: it is a comparison, not a
proposal to ship it unexamined.

    .venv/bin/python bench/engine.py [--quick] [--json] [--no-compare]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import psutil
from pydantic import BaseModel

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import ActionRegistry, NoParams, StepContext, StepResult
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions

STEPS = 10
LEVELS = (1, 100, 1000)
EXECUTIONS = {1: 200, 100: 2000, 1000: 5000}
QUICK_EXECUTIONS = {1: 50, 100: 500, 1000: 1000}
SAMPLE_EVERY_S = 0.05
MIB = 1_048_576
SYNCHRONOUS = {"FULL": 2, "NORMAL": 1}  # PRAGMA synchronous reads back as a number

logger = logging.getLogger("bench.engine")


class Timeline:
    """Per execution, when its last step's action returned; the gaps to the next entry."""

    def __init__(self) -> None:
        self._returned: dict[str, float] = {}
        self.gaps_ms: list[float] = []

    def entered(self, execution_id: str, at: float) -> None:
        previous = self._returned.get(execution_id)
        if previous is not None:
            self.gaps_ms.append((at - previous) * 1000)

    def returned(self, execution_id: str, at: float) -> None:
        self._returned[execution_id] = at


class NoOp:
    """A check that succeeds at once, noting when it was entered and when it returned."""

    name: ClassVar[str] = "noop"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = NoParams
    needs_target: ClassVar[bool] = False

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline

    async def run(self, ctx: StepContext) -> StepResult:
        self._timeline.entered(ctx.execution_id, time.perf_counter())
        result = StepResult.ok("nothing to do")
        self._timeline.returned(ctx.execution_id, time.perf_counter())
        return result


class RssSampler:
    """The process's peak resident set size, sampled by a task of its own while in use."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._task: asyncio.Task[None] | None = None
        self.peak_bytes = 0

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def __aenter__(self) -> Self:
        self.sample()
        self._task = asyncio.create_task(self._loop(), name="bench-rss-sampler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()


def noop_playbook() -> Playbook:
    return Playbook.model_validate(
        {
            "id": "PLAY-BENCH-NOOP-001",
            "name": "Ten no-op steps",
            "version": "1.0.0",
            "trigger": {"component": "bench", "error_ids": ["ERR-BENCH-NOOP-001"]},
            "steps": [
                {
                    "id": f"step_{number}",
                    "name": f"Step {number}",
                    "action": NoOp.name,
                    "on_success": "done" if number == STEPS else "next",
                }
                for number in range(1, STEPS + 1)
            ],
        }
    )


def nearest_rank(sorted_values: list[float], percent: float) -> float:
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]


async def run_executions(
    runner: Runner, book: Playbook, failures: list[FailureInfo], concurrency: int
) -> tuple[Counter[str], list[Exception]]:
    """``concurrency`` workers share the failures; what the executions ended as, and raised."""
    pending = iter(failures)
    statuses: Counter[str] = Counter()
    raised: list[Exception] = []

    async def worker() -> None:
        for failure in pending:
            try:
                outcome = await runner.run(book, failure)
            except Exception as exc:  # counted and reported, not fatal to the level
                raised.append(exc)
            else:
                statuses[outcome.status] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, raised


async def recorded_gaps_ms(db: Database) -> tuple[list[float], int]:
    """Gaps between consecutive step rows, from the stored stamps; and the successful rows."""
    rows = await db.fetchall(
        "SELECT execution_id, started_at, completed_at, outcome FROM execution_steps"
        " ORDER BY execution_id, seq"
    )
    gaps: list[float] = []
    previous: tuple[str, datetime] | None = None
    for row in rows:
        started = datetime.fromisoformat(row["started_at"])
        if previous is not None and previous[0] == row["execution_id"]:
            gaps.append((started - previous[1]).total_seconds() * 1000)
        completed = row["completed_at"]
        previous = (row["execution_id"], datetime.fromisoformat(completed)) if completed else None
    succeeded = sum(1 for row in rows if row["outcome"] == "success")
    return sorted(gaps), succeeded


async def prepare(
    db: Database, book: Playbook, concurrency: int, executions: int
) -> tuple[ExecutionRepository, list[FailureInfo]]:
    """The playbook version and one recorded failure per execution."""
    now = SystemClock().now()
    await PlaybookVersions(db).seed(book, "", "bench/engine.py", now)
    repository = ExecutionRepository(db)
    failures = [
        FailureInfo(f"bench-{concurrency}-{n}", "bench", "ERR-BENCH-NOOP-001", "bench failure")
        for n in range(executions)
    ]
    for failure in failures:
        await repository.record_failure(
            failure.failure_id,
            failure.component,
            failure.error_id,
            "warning",
            message=failure.message,
            detected_at=now,
        )
    return repository, failures


async def measure_level(
    directory: Path,
    synchronous: str,
    concurrency: int,
    executions: int,
    *,
    ceiling: CommitCeiling | None = None,
) -> dict[str, Any]:
    """One level; with ``ceiling``, its executions run in slices, each after a slice of
    the ceiling's commits, so that both see the disk as it is at that moment."""
    book = noop_playbook()
    path = directory / f"store-{synchronous.lower()}-{concurrency}.db"
    async with Database(path) as db:
        if synchronous != "FULL":
            await db.execute(f"PRAGMA synchronous={synchronous}")
        row = await db.fetchone("PRAGMA synchronous")
        if row is None or row[0] != SYNCHRONOUS[synchronous]:
            raise RuntimeError(f"PRAGMA synchronous reads {row and row[0]}, not {synchronous}")
        repository, failures = await prepare(db, book, concurrency, executions)
        timeline = Timeline()
        runner = Runner(ActionRegistry([NoOp(timeline)]), repository, SystemClock())
        slices = CEILING_SLICES if ceiling is not None else 1
        statuses: Counter[str] = Counter()
        raised: list[Exception] = []
        wall_s = 0.0
        async with RssSampler() as rss:
            for number in range(slices):
                if ceiling is not None:
                    ceiling.commit(CEILING_COMMITS // slices)
                part = failures[
                    number * len(failures) // slices : (number + 1) * len(failures) // slices
                ]
                started = time.perf_counter()
                done, failed = await run_executions(runner, book, part, concurrency)
                wall_s += time.perf_counter() - started
                statuses.update(done)
                raised.extend(failed)
        recorded, steps_recorded = await recorded_gaps_ms(db)
    for exc in raised[:3]:
        logger.warning("an execution raised: %r", exc)
    gaps = sorted(timeline.gaps_ms)
    steps = executions * STEPS
    return {
        "steps_per_s": round(steps / wall_s, 1),
        "p50_ms": round(nearest_rank(gaps, 50), 3) if gaps else None,
        "p99_ms": round(nearest_rank(gaps, 99), 3) if gaps else None,
        "errors": len(raised) + sum(n for status, n in statuses.items() if status != "resolved"),
        "executions": executions,
        "wall_s": round(wall_s, 3),
        "steps_recorded": steps_recorded,
        "recorded_p50_ms": round(nearest_rank(recorded, 50), 3) if recorded else None,
        "recorded_p99_ms": round(nearest_rank(recorded, 99), 3) if recorded else None,
        "peak_rss_mb": round(rss.peak_bytes / MIB, 1),
    }


async def measure(synchronous: str, sizes: dict[int, int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as directory:
        ceiling = CommitCeiling(Path(directory), synchronous)
        for concurrency in LEVELS:
            logger.info(
                "synchronous=%s: %d executions, %d at once",
                synchronous,
                sizes[concurrency],
                concurrency,
            )
            results[str(concurrency)] = await measure_level(
                Path(directory),
                synchronous,
                concurrency,
                sizes[concurrency],
                ceiling=ceiling if concurrency == 1 else None,
            )
            level = results[str(concurrency)]
            logger.info(
                "  %.1f steps/s, gap p50 %s ms, p99 %s ms, %d errors",
                level["steps_per_s"],
                ms(level["p50_ms"]),
                ms(level["p99_ms"]),
                level["errors"],
            )
        rate = ceiling.close()
        results["ceiling_commits_per_s"] = round(rate, 1)
        results["ceiling_ratio"] = round(results["1"]["steps_per_s"] / rate, 3)
    results["peak_rss_mb"] = max(results[str(level)]["peak_rss_mb"] for level in LEVELS)
    results["synchronous"] = synchronous
    return results


CEILING_COMMITS = 2_000
CEILING_SLICES = 10  # the concurrency-1 level and the ceiling, taken in turns


class CommitCeiling:
    """Single-row INSERT + COMMIT per second with plain ``sqlite3`` on this thread: WAL, the
    given ``synchronous``, nothing else. A durable step at one execution at a time needs at
    least one such commit, so this bounds steps per second at concurrency 1 on this disk.
    Its commits are made in slices (``commit``), between the slices of what it bounds."""

    def __init__(self, directory: Path, synchronous: str) -> None:
        self._connection = sqlite3.connect(
            directory / f"ceiling-{synchronous}.db", isolation_level=None
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={synchronous}")
        self._connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT)")
        self._commits = 0
        self._seconds = 0.0

    def commit(self, count: int) -> None:
        connection = self._connection
        began = time.perf_counter()
        for number in range(self._commits, self._commits + count):
            connection.execute("BEGIN")
            connection.execute("INSERT INTO rows (body) VALUES (?)", (f"step {number}",))
            connection.execute("COMMIT")
        self._seconds += time.perf_counter() - began
        self._commits += count

    def close(self) -> float:
        """Commits per second over all the slices."""
        self._connection.close()
        return self._commits / self._seconds


def compare_in_child(quick: bool) -> dict[str, Any]:
    """The same levels with ``synchronous=NORMAL``, in a fresh process of this script."""
    command = [sys.executable, str(Path(__file__).resolve()), "--synchronous", "NORMAL"]
    command += ["--json", "--no-compare", *(["--quick"] if quick else [])]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"the synchronous=NORMAL run exited with {done.returncode}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: dict[str, Any]) -> str:
    if "error" in results:
        return str(results["error"])
    lines = [
        f"synchronous={results['synchronous']}",
        f"{'at once':>8} {'execs':>6} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'rec p50':>8} {'rec p99':>8} {'errors':>6} {'wall s':>7} {'RSS MiB':>8}",
    ]
    for level in LEVELS:
        r = results[str(level)]
        lines.append(
            f"{level:>8} {r['executions']:>6} {r['steps_per_s']:>9.1f} {ms(r['p50_ms']):>8}"
            f" {ms(r['p99_ms']):>8} {ms(r['recorded_p50_ms']):>8} {ms(r['recorded_p99_ms']):>8}"
            f" {r['errors']:>6} {r['wall_s']:>7.2f} {r['peak_rss_mb']:>8.1f}"
        )
    lines.append(f"peak RSS {results['peak_rss_mb']:.1f} MiB")
    lines.append(
        f"ceiling: {results['ceiling_commits_per_s']:.0f} single-row commits/s with plain sqlite3"
        f" (synchronous={results['synchronous']}): no durable step at concurrency 1 is faster"
    )
    lines.append(f"ceiling ratio (steps/s at 1 over the ceiling): {results['ceiling_ratio']:.3f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="50, 500 and 1,000 executions (200, 2,000, 5,000)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--no-compare", action="store_true", help="skip the synchronous=NORMAL comparison"
    )
    parser.add_argument(
        "--synchronous",
        choices=sorted(SYNCHRONOUS),
        default="FULL",
        help="the store's PRAGMA synchronous for the main run (FULL, as shipped)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logger.setLevel(logging.INFO)
    results = asyncio.run(measure(args.synchronous, QUICK_EXECUTIONS if args.quick else EXECUTIONS))
    if not args.no_compare and args.synchronous == "FULL":
        results["store"] = compare_in_child(args.quick)
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
        if "store" in results:
            print()
            print(table(results["store"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
