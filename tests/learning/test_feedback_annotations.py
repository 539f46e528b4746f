"""Each execution's learning annotations: helped, revealed the issue, wasted time, missing
steps, from its own rows, its version's metrics, the technician's fix and proposals."""

from __future__ import annotations

from dataclasses import replace

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.learning.annotations import annotate, load_annotations
from graylogic_supervisor.learning.metrics import StepMetrics
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.feedback import Feedback
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord
from graylogic_supervisor.store.views import RecordViews
from tests.learning.simulated import run, simulation
from tests.learning.test_feedback import SPECS

EXECUTION = ExecutionRecord(
    id="exec-1",
    playbook_id="PLAY-MQTT-RECOVER-001",
    playbook_version="1.0.0",
    failure_id="fail-1",
    error_id="ERR-INFRA-MQTT-001",
    component="mqtt",
    status=ExecutionStatus.RESOLVED,
    started_at="2026-12-06T18:00:00Z",
    completed_at="2026-12-06T18:00:20Z",
    duration_seconds=20.0,
    resolved_by="restart",
    what_fixed_it="restart_service mosquitto",
    playbook_sufficient=True,
    detail="fixed",
    incident_id=None,
    kind="playbook",
    learned=True,
    healthy_after=True,
)


def row(seq: int, step_id: str, action: str, outcome: StepOutcome) -> StepRecord:
    return StepRecord(
        id=seq,
        execution_id="exec-1",
        seq=seq,
        step_id=step_id,
        name=step_id,
        action=action,
        target=None,
        attempt=1,
        started_at="2026-12-06T18:00:00Z",
        completed_at="2026-12-06T18:00:01Z",
        duration_seconds=2.0,
        outcome=outcome,
        result=None,
        output=None,
        error="port closed" if outcome is StepOutcome.FAILURE else None,
        transitioned_to=None,
    )


def metrics(step_id: str, action: str, *, successes: int, fixes: int = 0) -> StepMetrics:
    return StepMetrics(
        step_id=step_id,
        name=step_id,
        action=action,
        executions=40,
        successes=successes,
        skips=0,
        attempts=40,
        timeouts=0,
        fixes=fixes,
        mean_duration_s=2.0,
        p95_duration_s=2.0,
        p99_success_duration_s=2.0,
        often_skipped_after=None,
    )


ROWS = [
    row(1, "check_broker", "check_service", StepOutcome.SUCCESS),
    row(2, "probe_broker", "check_mqtt", StepOutcome.FAILURE),
    row(3, "restart", "restart_service", StepOutcome.SUCCESS),
    row(4, "verify", "wait_for_health", StepOutcome.SUCCESS),
]
HISTORY = [
    metrics("check_broker", "check_service", successes=40),  # always the same: tells nothing
    metrics("probe_broker", "check_mqtt", successes=10),
    metrics("restart", "restart_service", successes=30, fixes=30),
    metrics("verify", "wait_for_health", successes=40),  # never wasted: do no harm
]


def test_each_step_is_annotated_with_why() -> None:
    annotations = annotate(EXECUTION, ROWS, metrics=HISTORY, specs=SPECS)
    shown = annotations.as_json()
    assert shown["steps_that_helped"] == ["restart"]
    assert shown["revealed_the_issue"] == ["probe_broker"]
    assert shown["steps_that_wasted_time"] == ["check_broker"]
    assert shown["missing_steps"] == []
    check = shown["per_step"][0]
    assert check["why"] == [
        "took 2.00 s here and always succeeded and never fixed a failure in 40 executions"
    ]
    assert "port closed" in shown["per_step"][1]["why"][0]
    assert shown["basis"] == "metrics of PLAY-MQTT-RECOVER-001 1.0.0 over 40 executions"


def test_too_little_history_judges_no_step_wasted() -> None:
    young = [replace(m, executions=9) for m in HISTORY]
    annotations = annotate(EXECUTION, ROWS, metrics=young, specs=SPECS)
    assert annotations.as_json()["steps_that_wasted_time"] == []


def test_an_escalation_a_technician_fixed_misses_the_technicians_fix() -> None:
    escalated = replace(
        EXECUTION, status=ExecutionStatus.ESCALATED, resolved_by="manual_intervention"
    )
    annotations = annotate(
        escalated,
        ROWS[:2],
        metrics=HISTORY,
        specs=SPECS,
        actions_in_version=["check_service", "check_mqtt", "restart_service", "wait_for_health"],
        technician_fix=("remove_firewall_rule", "mosquitto"),
    )
    [missing] = annotations.missing
    assert (missing.action, missing.target, missing.source) == (
        "remove_firewall_rule",
        "mosquitto",
        "technician",
    )
    # the check that revealed the issue helped the technician
    assert annotations.as_json()["steps_that_helped"] == ["probe_broker"]
    assert annotations.steps[1].why[0] == "it showed the technician what to fix"


async def test_annotations_read_from_a_simulated_site_with_feedback_and_proposals(
    db: Database,
) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 150)
    await sim.learning.analyze("test")
    views = RecordViews(db)
    [escalated] = await db.fetchall(
        "SELECT id FROM executions WHERE status = 'escalated' ORDER BY started_at LIMIT 1"
    )
    execution = await views.execution(escalated["id"])
    assert execution is not None
    steps = await views.steps(execution.id)
    await sim.learning.feedback.give(
        execution.id,
        Feedback(wasted_steps=(steps[0].step_id,)),
        by="alice",
        now=sim.clock.now(),
    )
    annotations = await load_annotations(
        execution, steps, learning=sim.learning, versions=sim.versions, views=views
    )
    shown = annotations.as_json()
    assert shown["steps_that_wasted_time"] == [steps[0].step_id]
    assert "marked as wasting time by alice" in shown["per_step"][0]["why"]
    sources = {m["action"]: m["source"] for m in shown["missing_steps"]}
    pending = {
        r.change["step"]["action"]: r.id
        for r in await sim.learning.store.listing("pending")
        if r.type == "add_step"
    }
    assert {s["recommendation_id"] for s in shown["suggested_improvements"]} == {
        r.id for r in await sim.learning.store.listing("pending")
    }
    assert pending and all(
        sources[action] in ("technician", rec_id) for action, rec_id in pending.items()
    )
