"""One run's records: one commit per step boundary, never an end left unwritten while it waits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import ActionRegistry, StepContext, StepResult
from graylogic_supervisor.engine.control import ExecutionControls
from graylogic_supervisor.engine.execution import RunState
from graylogic_supervisor.engine.run import Run, StepRow
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.database import Database, Statement, Written
from graylogic_supervisor.store.executions import ExecutionRepository, ExecutionStart, StepEnd
from tests.engine.test_runner import FAILURE, Scripted, playbook, prepare, steps_of


class CountingWrites(Database):
    """The real store, counting its transactions (each write or write_together is one)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions = 0

    async def _write(self, statements: tuple[Statement, ...]) -> list[Written]:
        self.transactions += 1
        return await super()._write(statements)


def chain(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"s{n}",
            "name": f"Step {n}",
            "action": "check",
            "on_success": "done" if n == count else "next",
        }
        for n in range(1, count + 1)
    ]


def rows_now(path: Path, execution_id: str | None = None) -> list[tuple[str, str]]:
    """The committed step rows, read by another connection (what a crash would leave)."""
    with sqlite3.connect(path) as plain:
        query = "SELECT step_id, outcome FROM execution_steps"
        if execution_id is None:
            return list(plain.execute(query + " ORDER BY id"))
        return list(plain.execute(query + " WHERE execution_id = ? ORDER BY seq", (execution_id,)))


async def test_a_run_of_n_steps_costs_n_plus_one_commits(tmp_path: Path) -> None:
    async with CountingWrites(tmp_path / "s.db") as db:
        book = playbook(chain(5))
        executions = await prepare(db, book)
        runner = Runner(
            ActionRegistry([Scripted("check", ActionKind.CHECK, [True])]),
            executions,
            SystemClock(),
        )
        before = db.transactions
        outcome = await runner.run(book, FAILURE)
        assert db.transactions - before == 6  # the execution's start and end share two of them
        record = await executions.record(outcome.execution_id)
    assert record is not None
    assert outcome.status == "resolved"
    assert [s["outcome"] for s in record["steps"]] == ["success"] * 5
    assert record["outcome"]["status"] == "resolved"


async def test_before_an_action_runs_its_row_and_the_previous_end_are_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    seen: list[list[tuple[str, str]]] = []

    async def look(ctx: StepContext) -> StepResult:
        seen.append(rows_now(path, ctx.execution_id))
        return StepResult.ok("looked")

    async with Database(path) as db:
        book = playbook(chain(3))
        executions = await prepare(db, book)
        runner = Runner(
            ActionRegistry([Scripted("check", ActionKind.CHECK, [look])]), executions, SystemClock()
        )
        await runner.run(book, FAILURE)
    assert seen == [
        [("s1", "running")],
        [("s1", "success"), ("s2", "running")],
        [("s1", "success"), ("s2", "success"), ("s3", "running")],
    ]


async def test_a_failed_attempt_is_written_before_the_retry_pause(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        book = playbook(
            [
                {
                    "id": "fix",
                    "name": "Fix",
                    "action": "fix",
                    "retry": {"attempts": 2, "backoff_seconds": 0.4, "jitter": 0},
                    "on_success": "done",
                }
            ]
        )
        executions = await prepare(db, book)
        runner = Runner(
            ActionRegistry([Scripted("fix", ActionKind.FIX, [False, True])]),
            executions,
            SystemClock(),
        )
        task = asyncio.create_task(runner.run(book, FAILURE))
        await asyncio.sleep(0.2)  # inside the pause
        assert rows_now(path) == [("fix", "failure")]
        outcome = await task
        assert outcome.status == "resolved"
    assert rows_now(path) == [("fix", "failure"), ("fix", "success")]


async def test_a_paused_run_has_written_the_step_it_finished(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        book = playbook(chain(2))
        executions = await prepare(db, book)
        controls = ExecutionControls(SystemClock())
        runner = Runner(
            ActionRegistry([Scripted("check", ActionKind.CHECK, [0.2])]),
            executions,
            SystemClock(),
            controls=controls,
        )
        task = asyncio.create_task(runner.run(book, FAILURE))
        while not controls.running():
            await asyncio.sleep(0.01)
        [execution_id] = controls.running()
        controls.pause(execution_id)
        await asyncio.sleep(0.4)  # the first step ended; the run waits
        assert rows_now(path) == [("s1", "success")]
        controls.resume(execution_id)
        assert (await task).status == "resolved"


class CommittedWhenTold:
    """An observer that reads, with its own connection, the rows it is told about."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.seen: list[tuple[str, str]] = []
        self.started: list[list[tuple[str, str]]] = []

    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        with sqlite3.connect(self._path) as plain:
            self.started.append(list(plain.execute("SELECT id, status FROM executions")))

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        pass

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        self.seen.extend(r for r in rows_now(self._path, execution_id) if r[0] == step.id)

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        pass


async def test_the_observer_hears_of_a_start_or_an_end_only_once_it_is_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    observer = CommittedWhenTold(path)
    async with Database(path) as db:
        book = playbook(chain(3))
        executions = await prepare(db, book)
        runner = Runner(
            ActionRegistry([Scripted("check", ActionKind.CHECK, [True])]),
            executions,
            SystemClock(),
            observer,
        )
        outcome = await runner.run(book, FAILURE)
    assert observer.started == [[(outcome.execution_id, "running")]]
    assert observer.seen == [("s1", "success"), ("s2", "success"), ("s3", "success")]


async def test_a_step_whose_body_raises_is_recorded_as_an_error_and_the_error_goes_on(
    db: Database,
) -> None:
    book = playbook(chain(1))
    executions: ExecutionRepository = await prepare(db, book)
    clock = SystemClock()
    run = Run(
        execution_id="exec-1",
        playbook=book,
        failure=FAILURE,
        state=RunState(),
        started=clock.monotonic(),
        clock=clock,
        executions=executions,
    )
    run.begin(
        ExecutionStart(
            execution_id="exec-1",
            playbook_id=book.id,
            playbook_version=book.version,
            failure_id=FAILURE.failure_id,
            error_id=FAILURE.error_id,
            component=FAILURE.component,
            started_at=clock.now(),
        )
    )
    with pytest.raises(ValueError, match="a bug"):
        async with run.step(StepRow.of(book.steps[0])):
            raise ValueError("a bug")
    [row] = await executions.steps("exec-1")
    assert (row["outcome"], row["error"]) == (StepOutcome.ERROR, "ValueError: a bug")


async def test_a_cancelled_step_body_is_recorded_as_interrupted(db: Database) -> None:
    book = playbook([{"id": "wait", "name": "Wait", "action": "wait", "on_success": "done"}])
    executions = await prepare(db, book)
    runner = Runner(
        ActionRegistry([Scripted("wait", ActionKind.CHECK, [10.0])]), executions, SystemClock()
    )
    task = asyncio.create_task(runner.run(book, FAILURE))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await executions.recent(1)
    record = await executions.record(row["id"])
    assert record is not None
    assert steps_of(record) == [("wait", "interrupted", None)]
    assert record["outcome"]["status"] == "interrupted"
