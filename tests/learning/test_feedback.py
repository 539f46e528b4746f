"""People's feedback as the analysis's evidence: what bears on which change, the removals
it proposes (never of a verification), and a recommendation listing who said what."""

from __future__ import annotations

from pathlib import Path

import yaml

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.engine.action import NoParams
from graylogic_supervisor.learning.changes import (
    AddStep,
    RemoveStep,
    ReorderSteps,
    SetRetry,
    SetTimeout,
)
from graylogic_supervisor.learning.feedback import bearing, wasted_removals
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.feedback import Feedback, FeedbackEntry
from tests.learning.simulated import run, simulation

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Playbook.model_validate(
    yaml.safe_load((REPO / "playbooks" / "mqtt-recover.yaml").read_text())
)
KINDS = {
    "check_service": ActionKind.CHECK,
    "check_mqtt": ActionKind.CHECK,
    "restart_service": ActionKind.FIX,
    "wait_for_health": ActionKind.VERIFY,
}
SPECS = {
    name: ActionSpec(name=name, kind=kind, params_model=NoParams, needs_target=False)
    for name, kind in KINDS.items()
}


def said(
    execution_id: str,
    by: str = "alice",
    *,
    wasted: tuple[str, ...] = (),
    escalation: str | None = None,
    sufficient: bool | None = None,
) -> FeedbackEntry:
    return FeedbackEntry(
        id=1,
        execution_id=execution_id,
        playbook_id=PLAYBOOK.id,
        playbook_version="1.0.0",
        execution_status="escalated",
        given_by=by,
        given_at="2026-12-06T18:00:00Z",
        sufficient=sufficient,
        wasted_steps=wasted,
        escalation=escalation,
        note=None,
    )


def test_feedback_bears_for_or_against_the_changes_it_speaks_of() -> None:
    wasted_probe = said("e1", wasted=("probe_broker",))
    too_late = said("e2", "bob", escalation="too_late")
    too_early = said("e3", "cy", escalation="too_early")
    not_enough = said("e4", sufficient=False)
    feedback = [wasted_probe, too_late, too_early, not_enough]

    removal = bearing(RemoveStep(step_id="probe_broker", route_to="restart"), PLAYBOOK, feedback)
    assert removal is not None
    assert (removal["supporting"], removal["against"], removal["people"]) == (1, 0, ["alice"])
    [use] = removal["uses"]
    assert use["execution_id"] == "e1" and use["by"] == "alice"
    assert use["said"] == "wasted time: probe_broker" and use["at"] == "2026-12-06T18:00:00Z"

    shorter = bearing(SetTimeout(step_id="restart", timeout_seconds=10), PLAYBOOK, feedback)
    assert shorter is not None
    assert [(u["by"], u["bears"]) for u in shorter["uses"]] == [
        ("bob", "supports"),
        ("cy", "against"),
    ]
    retry = bearing(SetRetry(step_id="restart", retry={"attempts": 3}), PLAYBOOK, feedback)
    assert retry is not None
    assert [(u["by"], u["bears"]) for u in retry["uses"]] == [
        ("bob", "against"),
        ("cy", "supports"),
    ]
    later = ReorderSteps(chain=["probe_broker", "restart"], order=["restart", "probe_broker"])
    reorder = bearing(later, PLAYBOOK, feedback)
    assert reorder is not None and reorder["supporting"] == 1
    added = bearing(
        AddStep(step={"id": "x", "name": "x", "action": "check_service"}, before="verify"),
        PLAYBOOK,
        feedback,
    )
    assert added is not None and [u["execution_id"] for u in added["uses"]] == ["e4"]
    assert bearing(RemoveStep(step_id="check_broker", route_to="restart"), PLAYBOOK, []) is None


def test_a_step_marked_wasted_on_two_executions_is_proposed_for_removal_never_a_verification() -> (
    None
):
    feedback = [
        said("e1", wasted=("probe_broker", "verify")),
        said("e2", "bob", wasted=("probe_broker", "verify")),
        said("e3", wasted=("check_broker",)),  # one execution only
    ]
    found = wasted_removals(PLAYBOOK, feedback, SPECS, proposed=[])
    assert [(change.step_id, change.route_to) for change, _, _ in found] == [
        ("probe_broker", "done")
    ]
    change, summary, evidence = found[0]
    assert "marked it as wasting time on 2 executions" in summary
    assert evidence["execution_ids"] == ["e1", "e2"]
    already = wasted_removals(PLAYBOOK, feedback, SPECS, proposed=[change])
    assert already == []


async def test_the_next_analysis_lists_the_feedback_it_used_on_the_recommendation(
    db: Database,
) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 150)
    escalated = await db.fetchall(
        "SELECT id FROM executions WHERE status = 'escalated' ORDER BY started_at LIMIT 2"
    )
    first, second = (row["id"] for row in escalated)
    steps = await db.fetchall(
        "SELECT DISTINCT step_id FROM execution_steps WHERE execution_id = ?", (first,)
    )
    a_step = steps[0]["step_id"]
    given = await sim.learning.feedback.give(
        first,
        Feedback(sufficient=False, wasted_steps=(a_step,), note="needed the firewall"),
        by="alice",
        now=sim.clock.now(),
    )
    await sim.learning.feedback.give(
        second, Feedback(escalation="not_escalated_should_have"), by="bob", now=sim.clock.now()
    )

    report = await sim.learning.analyze("test")

    added = [r for r in await sim.learning.store.listing("pending") if r.type == "add_step"]
    assert added
    for rec in added:
        feedback = rec.evidence["feedback"]
        assert feedback["people"] == ["alice", "bob"]
        alice = next(use for use in feedback["uses"] if use["by"] == "alice")
        assert alice["execution_id"] == first and alice["at"] == given.given_at
        assert "the playbook was not sufficient" in alice["said"]
        assert "note: needed the firewall" in alice["said"]
    [playbook] = report["playbooks"]
    considered = [c for c in playbook["considered"] if c["change"]["type"] == "add_step"]
    assert considered and all(c["feedback"]["supporting"] == 2 for c in considered)

    # a pending recommendation found again shows the feedback counted the next time
    await sim.learning.feedback.give(
        first, Feedback(sufficient=False), by="cy", now=sim.clock.now()
    )
    await sim.learning.analyze("test")
    again = await sim.learning.store.get(added[0].id)
    assert again is not None and again.status == "pending"
    assert again.evidence["feedback"]["people"] == ["alice", "bob", "cy"]


async def test_people_marking_a_step_wasted_propose_its_removal_never_a_verifications(
    db: Database,
) -> None:
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, 150)
    rows = await db.fetchall(
        "SELECT e.id FROM executions AS e WHERE EXISTS (SELECT 1 FROM execution_steps AS s"
        " WHERE s.execution_id = e.id AND s.step_id = 'verify') AND EXISTS (SELECT 1 FROM"
        " execution_steps AS s WHERE s.execution_id = e.id AND s.step_id = 'check_broker')"
        " ORDER BY e.started_at LIMIT 3"
    )
    for number, row in enumerate(rows):
        await sim.learning.feedback.give(
            row["id"],
            Feedback(wasted_steps=("check_broker", "verify")),
            by=f"tech-{number}",
            now=sim.clock.now(),
        )

    report = await sim.learning.analyze("test")

    removals = {
        c["change"]["step_id"]: c
        for c in report["playbooks"][0]["considered"]
        if c["change"]["type"] == "remove_step"
    }
    assert "verify" not in removals  # do no harm: people's word never removes a verification
    proposed = removals["check_broker"]
    assert proposed["feedback"]["supporting"] == 3
    assert proposed["verdict"]  # replay judged it like any candidate
