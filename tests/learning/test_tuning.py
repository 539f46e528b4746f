"""Timeout tuning from recorded durations: a probe that hangs until its timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionEnd, ExecutionRepository, StepEnd
from graylogic_supervisor.store.versions import PlaybookVersions

PLAYBOOK = Playbook.model_validate(
    {
        "id": "PLAY-DB-PROBE-001",
        "name": "Database recovery",
        "version": "1.0.0",
        "trigger": {"component": "database", "error_ids": ["ERR-SVC-DATABASE-001"]},
        "steps": [
            {
                "id": "probe",
                "name": "Probe",
                "action": "check_database",
                "timeout_seconds": 60,
                "on_success": "verify",
                "on_failure": "restart",
            },
            {
                "id": "restart",
                "name": "Restart",
                "action": "restart_service",
                "target": "postgresql",
                "on_success": "verify",
            },
            {
                "id": "verify",
                "name": "Verify",
                "action": "wait_for_health",
                "target": "database",
                "on_success": "done",
            },
        ],
    }
)
START = datetime(2026, 11, 1, tzinfo=UTC)


async def record(
    executions: ExecutionRepository, number: int, steps: list[tuple[str, str, float]]
) -> None:
    """One recorded execution: (step id, outcome, seconds) in order; it resolved."""
    at = START + timedelta(hours=number)
    execution_id, failure_id = f"exec-{number:04d}", f"fail-{number:04d}"
    await executions.record_failure(
        failure_id, "database", "ERR-SVC-DATABASE-001", "error", message="no answer", detected_at=at
    )
    await executions.start_execution(
        execution_id,
        PLAYBOOK.id,
        "1.0.0",
        failure_id,
        error_id="ERR-SVC-DATABASE-001",
        component="database",
        started_at=at,
    )
    total = 0.0
    for seq, (step_id, outcome, seconds) in enumerate(steps, start=1):
        step = PLAYBOOK.step(step_id)
        row = await executions.start_step(
            execution_id,
            seq,
            step.id,
            step.name,
            action=step.action,
            target=step.target,
            attempt=1,
            started_at=at,
        )
        total += seconds
        end = StepEnd(outcome, None, {}, None if outcome == "success" else outcome, None)
        await executions.finish_step(row, at + timedelta(seconds=total), seconds, end)
    fixer = "restart" if any(s[0] == "restart" for s in steps) else "verify"
    await executions.finish_execution(
        execution_id,
        at + timedelta(seconds=total),
        total,
        ExecutionEnd("resolved", fixer, "ok", True, "resolved"),
    )


async def test_a_probe_that_hangs_until_its_timeout_gets_a_shorter_one(db: Database) -> None:
    versions = PlaybookVersions(db)
    await versions.seed(PLAYBOOK, yaml.safe_dump(PLAYBOOK.model_dump(mode="json")), "t", START)
    executions = ExecutionRepository(db)
    for number in range(40):
        if number % 5 < 2:  # overloaded: the probe hangs until its 60 s timeout
            steps = [
                ("probe", "timeout", 60.0),
                ("restart", "success", 10.0),
                ("verify", "success", 2.0),
            ]
        else:
            steps = [("probe", "success", 0.8 + number % 3 * 0.2), ("verify", "success", 2.0)]
        await record(executions, number, steps)
    learning = LearningService(
        db,
        versions,
        AuditLog(db),
        builtin_specs(),
        settings=LearningConfig(),
        clock=VirtualClock(START + timedelta(days=1)),  # a day after the records
    )
    report = await learning.analyze("test")
    [playbook] = report["playbooks"]
    assert playbook["findings"]["timeouts"] == [{"step": "probe", "timeouts": 16, "attempts": 40}]
    recs = await learning.store.listing("pending")
    [tuning] = [r for r in recs if r.type == "set_timeout"]
    assert tuning.change["step_id"] == "probe"
    assert 1.0 <= tuning.change["timeout_seconds"] <= 2.0  # 1.5 x the p99 of 1.2 s successes
    impact = tuning.expected_impact["resolution_time_s"]
    # 16 of 40 runs wait 60 s for the probe; with the new timeout they wait under 2 s.
    assert impact["current"] - impact["proposed"] > 0.4 * 58
    assert tuning.expected_impact["success_rate"]["proposed"] == 1.0
