"""Feedback on an execution, and a technician's resolution written onto its executions:
stored with their audit entry in one transaction, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.memory import Resolution
from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.engine.action import NoParams
from graylogic_supervisor.memory.fixes import FixCatalog, record_resolution
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionEnd, ExecutionRepository, StepEnd
from graylogic_supervisor.store.feedback import Feedback, FeedbackRefused, FeedbackRepository
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.views import RecordViews
from graylogic_supervisor.why import explain
from tests.store.test_hold import PLAYBOOK, repository
from tests.store.test_memory import record
from tests.store.test_use_case_atomicity import accept_audit, audited, refuse_audit

NOW = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


async def an_execution(
    repo: ExecutionRepository,
    execution_id: str,
    *,
    failure_id: str = "fail-1",
    status: ExecutionStatus = ExecutionStatus.ESCALATED,
    resolved_by: str | None = None,
) -> None:
    """An execution of two steps (check, restart) that ended with ``status``."""
    await repo.start_execution(
        execution_id,
        PLAYBOOK,
        "1.0.0",
        failure_id,
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )
    for seq, step in enumerate(("check", "restart"), start=1):
        row = await repo.start_step(
            execution_id, seq, step, step, action="log", target=None, attempt=1, started_at=NOW
        )
        end = StepEnd(StepOutcome.FAILURE, None, {}, "no", None)
        await repo.finish_step(row, NOW + timedelta(seconds=seq), 1.0, end)
    ended = ExecutionEnd(status, resolved_by, resolved_by and "its step", False, "ended")
    await repo.finish_execution(execution_id, NOW + timedelta(seconds=3), 3.0, ended)


@pytest.fixture
async def executions(db: Database) -> ExecutionRepository:
    repo = await repository(db)
    await repo.record_failure(
        "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
    )
    await an_execution(repo, "exec-1")
    return repo


async def test_feedback_from_several_people_is_kept_and_audited(
    db: Database, executions: ExecutionRepository
) -> None:
    feedback = FeedbackRepository(db, AuditLog(db))
    first = await feedback.give(
        "exec-1",
        Feedback(sufficient=False, wasted_steps=("check", "check"), escalation="too_late"),
        by="alice",
        now=NOW,
    )
    await feedback.give("exec-1", Feedback(note="fine by me"), by="bob", now=NOW)

    assert first.wasted_steps == ("check",)
    assert first.playbook_id == PLAYBOOK and first.execution_status == "escalated"
    given = await feedback.of_execution("exec-1")
    assert [(f.given_by, f.sufficient, f.escalation, f.note) for f in given] == [
        ("alice", False, "too_late", None),
        ("bob", None, None, "fine by me"),
    ]
    assert [f.execution_id for f in await feedback.of_playbook(PLAYBOOK)] == ["exec-1"] * 2
    assert await audited(db) == ["execution.feedback", "execution.feedback"]
    [newest, *_] = await AuditLog(db).entries()
    assert newest["actor"] == "bob" and newest["subject"] == "exec-1"


@pytest.mark.parametrize(
    ("given", "kind", "field"),
    [
        (Feedback(wasted_steps=("restart", "nap")), "invalid", "wasted_steps"),
        (Feedback(escalation="whenever"), "invalid", "escalation"),
        (Feedback(), "invalid", "feedback"),
        (Feedback(note="x" * 2001), "invalid", "note"),
    ],
)
async def test_bad_feedback_is_refused_naming_the_field_and_nothing_is_written(
    db: Database, executions: ExecutionRepository, given: Feedback, kind: str, field: str
) -> None:
    feedback = FeedbackRepository(db, AuditLog(db))
    with pytest.raises(FeedbackRefused) as refused:
        await feedback.give("exec-1", given, by="alice", now=NOW)
    assert (refused.value.kind, refused.value.field) == (kind, field)
    if field == "wasted_steps":
        assert "'nap'" in refused.value.message and "check, restart" in refused.value.message
    assert await feedback.of_execution("exec-1") == []
    assert await audited(db) == []


async def test_feedback_on_an_unknown_execution_is_refused(
    db: Database, executions: ExecutionRepository
) -> None:
    with pytest.raises(FeedbackRefused) as refused:
        await FeedbackRepository(db, AuditLog(db)).give(
            "exec-nope", Feedback(sufficient=True), by="alice", now=NOW
        )
    assert refused.value.kind == "unknown_execution"


async def test_feedback_whose_audit_entry_fails_is_not_stored(
    db: Database, executions: ExecutionRepository
) -> None:
    feedback = FeedbackRepository(db, AuditLog(db))
    await refuse_audit(db)
    with pytest.raises(Exception, match="audit refused"):
        await feedback.give("exec-1", Feedback(sufficient=True), by="alice", now=NOW)
    await accept_audit(db)
    assert await feedback.of_execution("exec-1") == []


def catalog() -> FixCatalog:
    spec = ActionSpec(
        name="restart_service", kind=ActionKind.FIX, params_model=NoParams, needs_target=True
    )
    return FixCatalog({"restart_service": spec}, frozenset({"mosquitto"}))


async def test_a_technicians_resolution_is_written_onto_the_failures_executions(
    db: Database, executions: ExecutionRepository
) -> None:
    await an_execution(executions, "exec-2", status=ExecutionStatus.FAILED)
    await an_execution(executions, "exec-3", status=ExecutionStatus.RESOLVED, resolved_by="restart")
    memory = MemoryRepository(db)
    await memory.save(record("fail-1"), NOW)
    fix = Resolution(
        resolved_at=NOW,
        fixed_by="alice",
        what_fixed_it="replaced the SD card",
        fix_action="restart_service",
        fix_target="mosquitto",
    )
    await record_resolution(memory, catalog(), "fail-1", fix, now=NOW, force=False)

    by_id = {x.id: x for x in await RecordViews(db).executions_of_failure("fail-1")}
    assert (by_id["exec-1"].resolved_by, by_id["exec-1"].what_fixed_it) == (
        "manual_intervention",
        "replaced the SD card",
    )
    assert by_id["exec-2"].resolved_by == "manual_intervention"
    assert (by_id["exec-3"].resolved_by, by_id["exec-3"].what_fixed_it) == ("restart", "its step")
    record_json = await executions.record("exec-1")
    assert record_json is not None
    assert record_json["outcome"]["resolved_by"] == "manual_intervention"
    assert record_json["outcome"]["what_fixed_it"] == "replaced the SD card"
    lines = await explain(RecordViews(db), "exec-1")
    assert lines is not None
    assert any(
        "exec-1" in line and "by manual_intervention (replaced the SD card)" in line
        for line in lines
    )


async def test_a_refused_resolution_leaves_the_executions_as_they_were(
    db: Database, executions: ExecutionRepository
) -> None:
    memory = MemoryRepository(db)
    await memory.save(record("fail-1"), NOW)
    first = Resolution(
        resolved_at=NOW, fixed_by="alice", what_fixed_it="first", fix_action=None, fix_target=None
    )
    await record_resolution(memory, catalog(), "fail-1", first, now=NOW, force=False)
    second = Resolution(
        resolved_at=NOW, fixed_by="bob", what_fixed_it="second", fix_action=None, fix_target=None
    )
    with pytest.raises(Exception, match="already resolved"):
        await record_resolution(memory, catalog(), "fail-1", second, now=NOW, force=False)
    [x] = await RecordViews(db).executions_of_failure("fail-1")
    assert x.what_fixed_it == "first"
    await record_resolution(memory, catalog(), "fail-1", second, now=NOW, force=True)
    [x] = await RecordViews(db).executions_of_failure("fail-1")
    assert (x.resolved_by, x.what_fixed_it) == ("manual_intervention", "second")


async def test_a_running_execution_takes_no_feedback_and_feedback_leaves_with_its_execution(
    db: Database, executions: ExecutionRepository
) -> None:
    await executions.start_execution(
        "exec-run",
        PLAYBOOK,
        "1.0.0",
        "fail-1",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )
    feedback = FeedbackRepository(db, AuditLog(db))
    with pytest.raises(FeedbackRefused, match="still running") as refused:
        await feedback.give("exec-run", Feedback(sufficient=True), by="alice", now=NOW)
    assert refused.value.field == "execution"

    await feedback.give("exec-1", Feedback(sufficient=True), by="alice", now=NOW)
    await db.write_together(  # as retention removes an execution: its steps, then it
        [
            ("DELETE FROM execution_steps WHERE execution_id = 'exec-1'", ()),
            ("DELETE FROM executions WHERE id = 'exec-1'", ()),
        ]
    )
    assert await feedback.of_execution("exec-1") == []
    assert await db.fetchall("SELECT id FROM execution_feedback") == []
