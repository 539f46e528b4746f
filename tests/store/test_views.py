"""The read models: typed records of the rows, nothing of sqlite3 outside the store."""

from __future__ import annotations

from datetime import UTC, datetime

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import ExecutionFilter, RecordViews
from graylogic_supervisor.why import explain

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLAYBOOK = Playbook.model_validate(
    {
        "id": "PLAY-MQTT-RECOVER-001",
        "name": "MQTT",
        "version": "1.0.0",
        "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
        "steps": [{"id": "check", "name": "Check", "action": "log", "on_success": "done"}],
    }
)


async def recorded(db: Database) -> None:
    """A failure, its resolved execution (checked twice) and a running one, written as
    the runner writes them (plain SQL: the tests of the read side need no writer's API)."""
    await PlaybookVersions(db).seed(PLAYBOOK, "yaml", "mqtt.yaml", NOW)
    await db.execute(
        "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
        " VALUES ('fail-1', 'mqtt', 'ERR-INFRA-MQTT-001', 'high', 'link down',"
        " '2026-11-26T12:00:00Z')"
    )
    for execution_id, status, started, healthy in (
        ("exec-1", "resolved", "2026-11-26T12:00:01Z", 1),
        ("exec-2", "running", "2026-11-26T12:00:05Z", None),
    ):
        await db.execute(
            "INSERT INTO executions (id, playbook_id, playbook_version, failure_id, error_id,"
            " component, status, started_at, completed_at, duration_seconds, resolved_by,"
            " detail, kind, healthy_after) VALUES (?, 'PLAY-MQTT-RECOVER-001', '1.0.0',"
            " 'fail-1', 'ERR-INFRA-MQTT-001', 'mqtt', ?, ?, NULL, 1.5, 'check', 'ok',"
            " 'playbook', ?)",
            (execution_id, status, started, healthy),
        )
    for seq, attempt, outcome in ((1, 1, "failure"), (2, 2, "success")):
        await db.execute(
            "INSERT INTO execution_steps (execution_id, seq, step_id, name, action, attempt,"
            " started_at, duration_seconds, outcome) VALUES ('exec-1', ?, 'check', 'Check',"
            " 'log', ?, '2026-11-26T12:00:01Z', 0.25, ?)",
            (seq, attempt, outcome),
        )


async def test_an_execution_comes_back_typed_and_as_the_row_the_table_keeps(
    db: Database,
) -> None:
    await recorded(db)
    views = RecordViews(db)
    record = await views.execution("exec-1")
    assert isinstance(record, ExecutionRecord)
    assert record.status is ExecutionStatus.RESOLVED
    assert record.healthy_after is True and record.learned is False
    row = await db.fetchone("SELECT * FROM executions WHERE id = 'exec-1'")
    assert row is not None
    assert record.as_row() == dict(row)
    assert list(record.as_row()) == list(row.keys())  # the API's keys, in the table's order


async def test_the_filter_and_the_running_executions_read_typed_records(db: Database) -> None:
    await recorded(db)
    views = RecordViews(db)
    running = await views.executions(ExecutionFilter(status=ExecutionStatus.RUNNING), 10)
    assert [r.id for r in running] == ["exec-2"]
    assert [r.id for r in await views.running_executions()] == ["exec-2"]
    assert [r.id for r in await views.executions(ExecutionFilter(text="ok"), 10)] == [
        "exec-2",
        "exec-1",
    ]


async def test_steps_come_back_typed_in_the_order_they_ran(db: Database) -> None:
    await recorded(db)
    steps = await RecordViews(db).steps("exec-1")
    assert all(isinstance(step, StepRecord) for step in steps)
    assert [(s.seq, s.attempt, s.outcome) for s in steps] == [
        (1, 1, StepOutcome.FAILURE),
        (2, 2, StepOutcome.SUCCESS),
    ]


async def test_why_formats_the_records_of_an_execution(db: Database) -> None:
    await recorded(db)
    lines = await explain(RecordViews(db), "exec-1")
    assert lines is not None
    assert lines[0] == (
        "failure fail-1 at 2026-11-26T12:00:00Z: mqtt ERR-INFRA-MQTT-001 (high): link down"
    )
    assert lines[1:] == [
        "execution exec-1 (playbook) PLAY-MQTT-RECOVER-001 1.0.0: resolved by check — ok",
        "execution exec-2 (playbook) PLAY-MQTT-RECOVER-001 1.0.0: running by check — ok",
    ]
    assert await explain(RecordViews(db), "nothing") is None
