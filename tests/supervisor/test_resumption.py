"""Which runs a stopped supervisor left are carried on at start-up, read from a real store."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository, StepEnd
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import RecordViews
from graylogic_supervisor.supervisor.resumption import RUN_AGAIN, resumable_executions

SOURCE = """\
id: PLAY-TEST-RECOVER-001
name: test
version: 1.0.0
trigger: {component: worker, error_ids: [ERR-SVC-PROC-001]}
steps:
  - {id: check, name: Check, action: check_service, target: worker, on_failure: settle}
  - {id: settle, name: Settle, action: sleep, params: {seconds: 1}, idempotent: true}
  - {id: restart, name: Restart, action: restart_service, target: worker, on_success: done}
"""
PLAYBOOK = Playbook.model_validate(yaml.safe_load(SOURCE))
FAILURE = FailureInfo("fail-1", "worker", "ERR-SVC-PROC-001", "exited")
T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


async def stopped_in(db: Database, step_id: str) -> ExecutionRepository:
    """A run that got through ``check`` and was stopped by a kill in ``step_id``."""
    executions = ExecutionRepository(db)
    await PlaybookVersions(db).seed(PLAYBOOK, SOURCE, "test.yaml", T0)
    await executions.record_failure(
        "fail-1", "worker", "ERR-SVC-PROC-001", "high", message="exited", detected_at=T0
    )
    await executions.start_execution(
        "exec-1",
        PLAYBOOK.id,
        "1.0.0",
        "fail-1",
        error_id="ERR-SVC-PROC-001",
        component="worker",
        started_at=T0,
    )
    check = await executions.start_step(
        "exec-1", 1, "check", "Check", action="check_service", target=None, attempt=1, started_at=T0
    )
    await executions.finish_step(check, T0, 0.001, StepEnd("failure", "down", {}, None, "settle"))
    step = PLAYBOOK.step(step_id)
    await executions.start_step(
        "exec-1", 2, step.id, step.name, action=step.action, target=None, attempt=1, started_at=T0
    )
    return executions


async def test_a_run_stopped_in_an_idempotent_step_is_resumed_there(db: Database) -> None:
    executions = await stopped_in(db, "settle")
    [found] = await resumable_executions(
        executions, RecordViews(db), PlaybookVersions(db), VirtualClock(T0)
    )
    assert (found.execution_id, found.step_id, found.failure) == ("exec-1", "settle", FAILURE)
    rows = await executions.steps("exec-1")
    assert [(r["step_id"], r["outcome"], r["error"]) for r in rows] == [
        ("check", "failure", None),
        ("settle", "interrupted", RUN_AGAIN),
    ]


async def test_a_run_stopped_in_a_step_that_is_not_idempotent_is_left_alone(
    db: Database,
) -> None:
    executions = await stopped_in(db, "restart")
    assert (
        await resumable_executions(
            executions, RecordViews(db), PlaybookVersions(db), VirtualClock(T0)
        )
        == []
    )
    [_, restart] = await executions.steps("exec-1")
    assert restart["outcome"] == "running"  # start-up marks it interrupted next


async def test_a_start_up_stopped_after_choosing_to_resume_is_resumed_by_the_next(
    db: Database,
) -> None:
    """A kill between marking the step to run again and the run carrying on (found by
    bench/crash.py) left the run with no step running: it was marked interrupted."""
    executions = await stopped_in(db, "settle")
    versions = PlaybookVersions(db)
    await resumable_executions(
        executions, RecordViews(db), versions, VirtualClock(T0)
    )  # then killed

    [found] = await resumable_executions(executions, RecordViews(db), versions, VirtualClock(T0))
    assert (found.execution_id, found.step_id) == ("exec-1", "settle")
    rows = await executions.steps("exec-1")
    assert [(r["step_id"], r["outcome"]) for r in rows] == [
        ("check", "failure"),
        ("settle", "interrupted"),
    ]


async def test_a_run_marked_to_run_again_that_went_on_is_not_resumed_from_that_mark(
    db: Database,
) -> None:
    executions = await stopped_in(db, "settle")
    versions = PlaybookVersions(db)
    await resumable_executions(executions, RecordViews(db), versions, VirtualClock(T0))
    restart = await executions.start_step(
        "exec-1",
        3,
        "restart",
        "Restart",
        action="restart_service",
        target=None,
        attempt=1,
        started_at=T0,
    )
    await executions.finish_step(restart, T0, 0.1, StepEnd("success", "up", {}, None, "done"))

    assert await resumable_executions(executions, RecordViews(db), versions, VirtualClock(T0)) == []
