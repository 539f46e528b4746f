"""A run's step boundaries: what ends and what starts, in one transaction, or none of it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.errors import StoreError, StoreLockedError
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import (
    ExecutionEnd,
    ExecutionFinish,
    ExecutionRepository,
    ExecutionStart,
    StepEnd,
    StepFinish,
    StepStart,
)
from graylogic_supervisor.store.hold import HeldRowId, HoldLimits, WriteHold, recording_for
from tests.store.test_hold import PLAYBOOK, essential_store, repository, until

NOW = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
DONE = StepEnd(StepOutcome.SUCCESS, "ok", {}, None, "next")


def begun(execution_id: str = "exec-1") -> ExecutionStart:
    return ExecutionStart(
        execution_id=execution_id,
        playbook_id=PLAYBOOK,
        playbook_version="1.0.0",
        failure_id="fail-1",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )


def starting(seq: int, execution_id: str = "exec-1") -> StepStart:
    return StepStart(
        execution_id=execution_id,
        seq=seq,
        step_id=f"s{seq}",
        name=f"Step {seq}",
        action="log",
        target=None,
        attempt=1,
        started_at=NOW,
    )


async def with_failure(db: Database) -> ExecutionRepository:
    repo = await repository(db)
    await repo.record_failure(
        "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
    )
    return repo


async def outcomes(repo: ExecutionRepository) -> list[tuple[str, str]]:
    return [(row["step_id"], row["outcome"]) for row in await repo.steps("exec-1")]


async def test_an_execution_and_its_first_step_start_together(db: Database) -> None:
    repo = await with_failure(db)
    row_id = await repo.record_progress(begun=begun(), starting=starting(1))
    assert row_id is not None and row_id > 0
    [execution] = await repo.running()
    assert execution["id"] == "exec-1"
    assert await outcomes(repo) == [("s1", "running")]


async def test_a_step_ends_and_the_next_starts_in_one_transaction(db: Database) -> None:
    repo = await with_failure(db)
    first = await repo.record_progress(begun=begun(), starting=starting(1))
    assert first is not None
    second = await repo.record_progress(
        finished=[StepFinish(first, NOW, 0.1, DONE)], starting=starting(2)
    )
    assert second is not None and second != first
    assert await outcomes(repo) == [("s1", "success"), ("s2", "running")]
    # a start that cannot be written takes the end with it: neither lands
    with pytest.raises(StoreError):
        await repo.record_progress(
            finished=[StepFinish(second, NOW, 0.1, DONE)], starting=starting(2)
        )  # seq 2 again: the UNIQUE (execution_id, seq) refuses it
    assert await outcomes(repo) == [("s1", "success"), ("s2", "running")]


async def test_the_last_step_ends_with_the_execution(db: Database) -> None:
    repo = await with_failure(db)
    only = await repo.record_progress(begun=begun(), starting=starting(1))
    assert only is not None
    end = ExecutionEnd(ExecutionStatus.RESOLVED, "s1", "log", True, "resolved after step s1")
    assert (
        await repo.record_progress(
            finished=[StepFinish(only, NOW, 0.1, DONE)],
            ended=ExecutionFinish("exec-1", NOW, 0.2, end),
        )
        is None
    )
    record = await repo.record("exec-1")
    assert record is not None
    assert record["outcome"]["status"] == "resolved"
    assert [s["outcome"] for s in record["steps"]] == ["success"]


async def test_an_execution_start_is_refused_at_once_by_a_locked_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path, busy_timeout_ms=200) as db:
        repo = await with_failure(db)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreLockedError):
                await repo.record_progress(begun=begun(), starting=starting(1))
            other.execute("COMMIT")
        finally:
            other.close()
        assert await repo.running() == []
        assert await repo.steps("exec-1") == []


async def test_an_essential_boundary_is_held_whole_and_written_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with essential_store(path, busy_timeout_ms=300) as db:
        repo = await with_failure(db)
        with recording_for("mqtt"):
            first = await repo.record_progress(begun=begun(), starting=starting(1))
            assert first is not None
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                second = await repo.record_progress(
                    finished=[StepFinish(first, NOW, 0.1, DONE)], starting=starting(2)
                )
                assert isinstance(second, HeldRowId)
                assert db.held_rows == 2
                other.execute("COMMIT")
            finally:
                other.close()
        await until(lambda: db.held_rows == 0)
        assert await outcomes(repo) == [("s1", "success"), ("s2", "running")]


def test_writes_that_go_together_are_held_together_or_not_at_all() -> None:
    hold = WriteHold(HoldLimits(max_rows=3))
    assert hold.add("INSERT INTO t VALUES (1)", (), "locked") is not None
    pair = [("UPDATE t SET a = 1", ()), ("INSERT INTO t VALUES (2)", ())]
    assert hold.add_all(pair, "locked") is not None
    assert len(hold) == 3
    assert hold.add_all(pair, "locked") is None  # two more do not fit: neither is held
    assert len(hold) == 3
