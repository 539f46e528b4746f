"""A step that runs another playbook: tracked on its own, bounded in depth."""

from __future__ import annotations

from typing import Any

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.builtins.compose import MAX_DEPTH, RunPlaybook
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.engine.test_runner import FAILURE, Scripted, prepare


def book(playbook_id: str, steps: list[dict[str, Any]]) -> Playbook:
    return Playbook.model_validate(
        {
            "id": playbook_id,
            "name": playbook_id,
            "version": "1.0.0",
            "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
            "steps": steps,
        }
    )


async def composed(
    db: Database, *books: Playbook, fix: list[Any]
) -> tuple[Runner, ExecutionRepository]:
    executions = await prepare(db, books[0])
    versions = PlaybookVersions(db)
    for extra in books[1:]:
        await versions.seed(extra, "", "test.yaml", SystemClock().now())
    composer = RunPlaybook(versions)
    runner = Runner(
        ActionRegistry([composer, Scripted("fix", ActionKind.FIX, fix)]), executions, SystemClock()
    )
    composer.bind(runner)
    return runner, executions


def parent_and_child() -> tuple[Playbook, Playbook]:
    """A parent whose one step runs a child whose one step is `fix`."""
    parent = book(
        "PLAY-PARENT-001",
        [
            {
                "id": "child",
                "name": "Run the child",
                "action": "playbook",
                "params": {"playbook": "PLAY-CHILD-001"},
                "on_success": "done",
            }
        ],
    )
    child = book(
        "PLAY-CHILD-001", [{"id": "fix", "name": "Fix", "action": "fix", "on_success": "done"}]
    )
    return parent, child


async def test_a_step_runs_a_child_playbook_as_an_execution_of_its_own(db: Database) -> None:
    parent, child = parent_and_child()
    runner, executions = await composed(db, parent, child, fix=[True])
    outcome = await runner.run(parent, FAILURE)
    assert outcome.status == "resolved"
    record = await executions.record(outcome.execution_id)
    assert record is not None
    output = record["steps"][0]["output"]
    assert output["status"] == "resolved"
    nested = await executions.record(output["execution_id"])
    assert nested is not None
    assert (nested["playbook_id"], nested["outcome"]["status"]) == ("PLAY-CHILD-001", "resolved")
    assert nested["trigger"]["failure_id"] == FAILURE.failure_id


async def test_a_child_that_fails_fails_the_step(db: Database) -> None:
    parent, child = parent_and_child()
    runner, executions = await composed(db, parent, child, fix=[False])
    outcome = await runner.run(parent, FAILURE)
    assert outcome.status == "escalated"
    record = await executions.record(outcome.execution_id)
    assert record is not None
    assert record["steps"][0]["result"].startswith("PLAY-CHILD-001 1.0.0 escalated")


async def test_a_playbook_that_calls_itself_stops_at_the_depth_bound(db: Database) -> None:
    looping = book(
        "PLAY-LOOP-001",
        [
            {
                "id": "again",
                "name": "Again",
                "action": "playbook",
                "params": {"playbook": "PLAY-LOOP-001"},
                "on_success": "done",
            }
        ],
    )
    runner, executions = await composed(db, looping, fix=[True])
    outcome = await runner.run(looping, FAILURE)
    assert outcome.status == "escalated"
    rows = await executions.recent(20)
    assert len(rows) == MAX_DEPTH + 1  # the outer run and three nested ones
    innermost = await executions.record(rows[0]["id"])
    assert innermost is not None
    assert innermost["steps"][0]["error"] == (
        f"playbooks nest deeper than {MAX_DEPTH} (does PLAY-LOOP-001 call itself?)"
    )


async def test_an_unknown_child_is_a_clear_failure(db: Database) -> None:
    parent = book(
        "PLAY-PARENT-001",
        [
            {
                "id": "child",
                "name": "Run the child",
                "action": "playbook",
                "params": {"playbook": "PLAY-NOWHERE-001"},
                "on_success": "done",
            }
        ],
    )
    runner, executions = await composed(db, parent, fix=[True])
    outcome = await runner.run(parent, FAILURE)
    record = await executions.record(outcome.execution_id)
    assert record is not None
    assert record["steps"][0]["error"] == "no active playbook PLAY-NOWHERE-001"


async def test_a_template_playbook_takes_parameters_from_its_caller(db: Database) -> None:
    from tests.engine.test_runner import Echo

    template = book(
        "PLAY-SVC-TEMPLATE-001",
        [
            {
                "id": "restart",
                "name": "Restart",
                "action": "echo",
                "target": "{params.service}",
                "params": {"port": "{params.port}"},
                "on_success": "done",
            }
        ],
    ).model_copy(update={"parameters": {"service": "unset", "port": 1}})
    caller = book(
        "PLAY-CALLER-001",
        [
            {
                "id": "worker",
                "name": "Worker",
                "action": "playbook",
                "params": {
                    "playbook": "PLAY-SVC-TEMPLATE-001",
                    "parameters": {"service": "worker", "port": 8080},
                },
            },
            {
                "id": "wrong",
                "name": "Wrong",
                "action": "playbook",
                "params": {"playbook": "PLAY-SVC-TEMPLATE-001", "parameters": {"sevice": "x"}},
                "on_success": "done",
                "on_failure": "escalate",
            },
        ],
    )
    executions = await prepare(db, caller)
    versions = PlaybookVersions(db)
    await versions.seed(template, "", "t.yaml", SystemClock().now())
    composer = RunPlaybook(versions)
    runner = Runner(ActionRegistry([composer, Echo()]), executions, SystemClock())  # type: ignore[list-item]
    composer.bind(runner)
    outcome = await runner.run(caller, FAILURE)
    assert outcome.status == "escalated"
    record = await executions.record(outcome.execution_id)
    assert record is not None
    nested = await executions.record(record["steps"][0]["output"]["execution_id"])
    assert nested is not None
    assert nested["steps"][0]["result"] == "worker:8080"
    assert record["steps"][1]["error"] == (
        "PLAY-SVC-TEMPLATE-001 has no parameter sevice (declared: port, service)"
    )
