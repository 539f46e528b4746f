"""The runner against a real SQLite file: every step recorded, every ending right."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from graylogic_supervisor.clock import Clock, SystemClock, VirtualClock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import ActionRegistry, NoParams, StepContext, StepResult
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.virtual_time import DrivenClock, Timed

Behaviour = Callable[[StepContext], Any]


class Scripted:
    """A test action whose answers are given in order: True, False, an exception or a delay."""

    params_model: ClassVar[type[BaseModel]] = NoParams
    needs_target: ClassVar[bool] = False

    def __init__(self, name: str, kind: ActionKind, answers: list[Any]) -> None:
        self.name = name  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.answers = answers
        self.calls = 0
        self.seen_while_running: list[Any] = []

    async def run(self, ctx: StepContext) -> StepResult:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, float):
            await ctx.clock.sleep(answer)  # real or virtual, as the runner's clock is
            return StepResult.ok(f"slept {answer}")
        if callable(answer):
            return await answer(ctx)
        return StepResult.ok("fine", n=self.calls) if answer else StepResult.failed("broken")


FAILURE = FailureInfo("fail-1", "mqtt", "ERR-INFRA-MQTT-001", "link lost")


def playbook(steps: list[dict[str, Any]], **limits: Any) -> Playbook:
    return Playbook.model_validate(
        {
            "id": "PLAY-TEST-RECOVER-001",
            "name": "test",
            "version": "1.0.0",
            "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
            "limits": limits,
            "steps": steps,
        }
    )


STANDARD = [
    {
        "id": "check",
        "name": "Check",
        "action": "check",
        "on_success": "verify",
        "on_failure": "fix",
    },
    {"id": "fix", "name": "Fix", "action": "fix", "on_success": "verify", "on_failure": "escalate"},
    {"id": "verify", "name": "Verify", "action": "verify", "on_success": "done"},
]


async def prepare(db: Database, book: Playbook) -> ExecutionRepository:
    """The playbook version and the failure an execution refers to."""
    now = SystemClock().now()
    await PlaybookVersions(db).seed(book, "", "test.yaml", now)
    executions = ExecutionRepository(db)
    await executions.record_failure(
        FAILURE.failure_id,
        FAILURE.component,
        FAILURE.error_id,
        "critical",
        message=FAILURE.message,
        detected_at=now,
    )
    return executions


async def run(
    db: Database, book: Playbook, *actions: Scripted, clock: Clock | None = None
) -> tuple[Any, dict[str, Any]]:
    executions = await prepare(db, book)
    runner = Runner(ActionRegistry(actions), executions, clock or SystemClock())
    outcome = await runner.run(book, FAILURE)
    await_record = await executions.record(outcome.execution_id)
    assert await_record is not None
    return outcome, await_record


def steps_of(record: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(s["id"], s["outcome"], s["transitioned_to"]) for s in record["steps"]]


async def test_failed_check_leads_to_fix_and_verified_resolution(db: Database) -> None:
    outcome, record = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [False]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "resolved"
    assert steps_of(record) == [
        ("check", "failure", "fix"),
        ("fix", "success", "verify"),
        ("verify", "success", "done"),
    ]
    assert [s["step"] for s in record["steps"]] == [1, 2, 3]
    assert record["outcome"]["resolved_by"] == "fix"
    assert record["outcome"]["playbook_sufficient"] is True
    assert record["trigger"] == {
        "failure_id": "fail-1",
        "error_id": "ERR-INFRA-MQTT-001",
        "component": "mqtt",
    }
    for step in record["steps"]:
        assert step["started_at"] and step["completed_at"]
        assert step["duration_seconds"] >= 0
    assert record["duration_seconds"] >= sum(s["duration_seconds"] for s in record["steps"])


async def test_resolution_without_a_fix_is_credited_to_the_check_that_ended_it(
    db: Database,
) -> None:
    outcome, record = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [True]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "resolved"
    assert steps_of(record) == [("check", "success", "verify"), ("verify", "success", "done")]
    assert record["outcome"]["resolved_by"] == "verify"


async def test_failed_fix_escalates_and_the_playbook_was_not_sufficient(db: Database) -> None:
    outcome, record = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [False]),
        Scripted("fix", ActionKind.FIX, [False]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "escalated"
    assert steps_of(record)[-1] == ("fix", "failure", "escalate")
    assert record["outcome"]["playbook_sufficient"] is False
    assert record["outcome"]["resolved_by"] is None
    assert record["steps"][-1]["error"] == "broken"


async def test_step_timeout_is_enforced_and_follows_on_failure(db: Database) -> None:
    slow_check = Scripted("check", ActionKind.CHECK, [300.0])
    steps = [dict(STANDARD[0], timeout_seconds=30), *STANDARD[1:]]
    outcome, record = await run(
        db,
        playbook(steps),
        slow_check,
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
        clock=VirtualClock(datetime(2026, 11, 26, tzinfo=UTC)),
    )
    assert steps_of(record)[0] == ("check", "timeout", "fix")
    assert record["steps"][0]["error"] == "no answer within 30 s"
    assert record["steps"][0]["duration_seconds"] == 30  # on the virtual clock, exactly
    assert outcome.status == "resolved"


async def test_playbook_deadline_cuts_the_step_and_fails_the_execution(db: Database) -> None:
    steps = [dict(STANDARD[0], timeout_seconds=30), *STANDARD[1:]]
    outcome, record = await run(
        db,
        playbook(steps, timeout_seconds=10),
        Scripted("check", ActionKind.CHECK, [300.0]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
        clock=VirtualClock(datetime(2026, 11, 26, tzinfo=UTC)),
    )
    assert outcome.status == "failed"
    assert outcome.detail == "playbook timeout of 10 s reached in step check"
    assert steps_of(record) == [("check", "timeout", "failed")]
    assert record["steps"][0]["duration_seconds"] == 10  # the step got what the playbook had left


async def test_retries_are_each_recorded_until_one_succeeds(db: Database) -> None:
    steps = [
        STANDARD[0],
        dict(STANDARD[1], retry={"attempts": 3, "backoff_seconds": 10, "multiplier": 2}),
        STANDARD[2],
    ]
    fix = Scripted("fix", ActionKind.FIX, [False, False, True])
    clock = VirtualClock(datetime(2026, 11, 26, tzinfo=UTC))
    outcome, record = await run(
        db,
        playbook(steps),
        Scripted("check", ActionKind.CHECK, [False]),
        fix,
        Scripted("verify", ActionKind.CHECK, [True]),
        clock=clock,
    )
    assert clock.monotonic() == 30  # backoff 10 s, then 20 s, exactly (no jitter)
    assert outcome.status == "resolved"
    fixes = [s for s in record["steps"] if s["id"] == "fix"]
    assert [(s["attempt"], s["outcome"], s["transitioned_to"]) for s in fixes] == [
        (1, "failure", "retry:fix"),
        (2, "failure", "retry:fix"),
        (3, "success", "verify"),
    ]
    assert fix.calls == 3


async def test_loop_stops_at_its_bound_and_escalates(db: Database) -> None:
    steps = [
        {"id": "fix", "name": "Fix", "action": "fix", "max_visits": 2, "on_success": "verify"},
        {
            "id": "verify",
            "name": "Verify",
            "action": "verify",
            "on_failure": "fix",
            "on_success": "done",
        },
    ]
    outcome, record = await run(
        db,
        playbook(steps),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [False]),
    )
    assert outcome.status == "escalated"
    assert "loop bound" in outcome.detail
    assert [s["id"] for s in record["steps"]] == ["fix", "verify", "fix", "verify"]


async def test_an_action_that_raises_is_an_error_step_not_a_crash(db: Database) -> None:
    outcome, record = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [RuntimeError("bug in plugin")]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert steps_of(record)[0] == ("check", "error", "fix")
    assert record["steps"][0]["error"] == "RuntimeError: bug in plugin"
    assert outcome.status == "resolved"


async def test_a_step_is_in_the_store_while_it_runs(db: Database) -> None:
    async def look(ctx: StepContext) -> StepResult:
        record = await ExecutionRepository(db).record(ctx.execution_id)
        assert record is not None
        running = [(s["id"], s["outcome"]) for s in record["steps"]]
        return StepResult.ok("looked", running=running, status=record["outcome"]["status"])

    outcome, record = await run(
        db,
        playbook([{"id": "look", "name": "Look", "action": "look", "on_success": "done"}]),
        Scripted("look", ActionKind.CHECK, [look]),
    )
    assert record["steps"][0]["output"] == {"running": [["look", "running"]], "status": "running"}
    assert outcome.status == "resolved"


async def cancelled_after(
    clock: DrivenClock,
    seconds: float,
    runner: Runner,
    book: Playbook,
    executions: ExecutionRepository,
) -> dict[str, Any]:
    """Start a run, cancel it after `seconds` of virtual time, and return what was recorded."""
    task = asyncio.create_task(runner.run(book, FAILURE))
    await clock.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await executions.recent(1)
    record = await executions.record(row["id"])
    assert record is not None
    return record


async def test_cancelling_marks_the_execution_and_its_step_interrupted(timed: Timed) -> None:
    clock, db = timed
    book = playbook([{"id": "wait", "name": "Wait", "action": "wait", "on_success": "done"}])
    executions = await prepare(db, book)
    runner = Runner(ActionRegistry([Scripted("wait", ActionKind.CHECK, [10.0])]), executions, clock)
    record = await cancelled_after(clock, 0.1, runner, book, executions)
    assert record["outcome"]["status"] == "interrupted"
    assert steps_of(record) == [("wait", "interrupted", None)]


async def test_an_unsuccessful_run_names_the_step_it_failed_on(db: Database) -> None:
    outcome, _ = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [False]),
        Scripted("fix", ActionKind.FIX, [False]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.failed_step is not None
    assert (outcome.failed_step.step_id, outcome.failed_step.action) == ("fix", "fix")
    assert outcome.failed_step.outcome == "failure"


async def test_a_resolved_run_has_no_failed_step_even_after_a_failed_check(
    db: Database,
) -> None:
    outcome, _ = await run(
        db,
        playbook(STANDARD),
        Scripted("check", ActionKind.CHECK, [False]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "resolved"
    assert outcome.failed_step is None


UNDOABLE = [
    {
        "id": "isolate",
        "name": "Stop the bridge",
        "action": "isolate",
        "compensate": {"action": "restore", "timeout_seconds": 1},
    },
    {
        "id": "drain",
        "name": "Drain queues",
        "action": "drain",
        "compensate": {"action": "undrain"},
    },
    {"id": "fix", "name": "Fix", "action": "fix", "on_success": "done"},
]


def undo_actions(fix_answer: Any, restore_answer: Any = True) -> list[Scripted]:
    return [
        Scripted("isolate", ActionKind.FIX, [True]),
        Scripted("drain", ActionKind.FIX, [True]),
        Scripted("fix", ActionKind.FIX, [fix_answer]),
        Scripted("restore", ActionKind.FIX, [restore_answer]),
        Scripted("undrain", ActionKind.FIX, [True]),
    ]


async def test_an_escalation_undoes_completed_steps_newest_first(db: Database) -> None:
    actions = undo_actions(False)
    outcome, record = await run(db, playbook(UNDOABLE), *actions)
    assert outcome.status == "escalated"
    assert steps_of(record) == [
        ("isolate", "success", "drain"),
        ("drain", "success", "fix"),
        ("fix", "failure", "escalate"),
        ("drain:compensate", "success", "isolate:compensate"),
        ("isolate:compensate", "success", None),
    ]
    assert record["steps"][3]["name"] == "Undo: Drain queues"
    assert record["steps"][3]["action"] == "undrain"


async def test_a_resolved_run_undoes_nothing(db: Database) -> None:
    outcome, record = await run(db, playbook(UNDOABLE), *undo_actions(True))
    assert outcome.status == "resolved"
    assert [s["id"] for s in record["steps"]] == ["isolate", "drain", "fix"]


async def test_an_undo_that_fails_is_recorded_and_the_others_still_run(db: Database) -> None:
    outcome, record = await run(
        db, playbook(UNDOABLE), *undo_actions(False, restore_answer=RuntimeError("stuck"))
    )
    assert steps_of(record)[-2:] == [
        ("drain:compensate", "success", "isolate:compensate"),
        ("isolate:compensate", "error", None),
    ]
    assert record["steps"][-1]["error"] == "RuntimeError: stuck"
    assert outcome.status == "escalated"


async def test_the_playbook_deadline_still_runs_the_undos(db: Database) -> None:
    steps = [*UNDOABLE[:2], dict(UNDOABLE[2], timeout_seconds=10)]
    outcome, record = await run(db, playbook(steps, timeout_seconds=0.2), *undo_actions(5.0))
    assert outcome.status == "failed"
    assert [s["id"] for s in record["steps"]][-2:] == ["drain:compensate", "isolate:compensate"]


async def test_a_cancelled_run_undoes_before_it_stops(timed: Timed) -> None:
    clock, db = timed
    book = playbook(UNDOABLE)
    executions = await prepare(db, book)
    runner = Runner(ActionRegistry(undo_actions(10.0)), executions, clock)
    record = await cancelled_after(clock, 0.1, runner, book, executions)
    assert record["outcome"]["status"] == "interrupted"
    assert steps_of(record)[2:] == [
        ("fix", "interrupted", None),
        ("drain:compensate", "success", "isolate:compensate"),
        ("isolate:compensate", "success", None),
    ]


def group(join: str, on_failure: str = "escalate") -> list[dict[str, Any]]:
    return [
        {
            "id": "both",
            "name": "Restart both",
            "parallel": {
                "join": join,
                "branches": [
                    {"id": "broker", "name": "Broker", "action": "fix_broker"},
                    {"id": "bridge", "name": "Bridge", "action": "fix_bridge"},
                ],
            },
            "on_success": "verify",
            "on_failure": on_failure,
        },
        {"id": "verify", "name": "Verify", "action": "verify", "on_success": "done"},
    ]


async def test_a_parallel_group_runs_its_branches_at_once_and_joins_all(db: Database) -> None:
    started = asyncio.get_running_loop().time()
    outcome, record = await run(
        db,
        playbook(group("all")),
        Scripted("fix_broker", ActionKind.FIX, [0.2]),
        Scripted("fix_bridge", ActionKind.FIX, [0.2]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert asyncio.get_running_loop().time() - started < 0.35  # not 0.4: at once
    assert outcome.status == "resolved"
    rows = {s["id"]: s for s in record["steps"]}
    assert rows["both"]["outcome"] == "success"
    assert rows["both"]["transitioned_to"] == "verify"
    assert rows["both"]["result"] == "2 of 2 branches succeeded (join all)"
    assert rows["both.broker"]["transitioned_to"] == "join:both"
    assert rows["both.bridge"]["outcome"] == "success"
    assert outcome.resolved_by in ("both.broker", "both.bridge")


async def test_join_all_fails_when_one_branch_fails(db: Database) -> None:
    outcome, record = await run(
        db,
        playbook(group("all")),
        Scripted("fix_broker", ActionKind.FIX, [True]),
        Scripted("fix_bridge", ActionKind.FIX, [False]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "escalated"
    assert outcome.failed_step is not None and outcome.failed_step.step_id == "both.bridge"
    rows = {s["id"]: s for s in record["steps"]}
    assert (rows["both"]["outcome"], rows["both"]["transitioned_to"]) == ("failure", "escalate")
    assert rows["both"]["output"] == {"both.broker": "success", "both.bridge": "failure"}


async def test_join_any_takes_the_first_success_and_cancels_the_rest(db: Database) -> None:
    started = asyncio.get_running_loop().time()
    outcome, record = await run(
        db,
        playbook(group("any")),
        Scripted("fix_broker", ActionKind.FIX, [True]),
        Scripted("fix_bridge", ActionKind.FIX, [5.0]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert asyncio.get_running_loop().time() - started < 1
    assert outcome.status == "resolved"
    rows = {s["id"]: s for s in record["steps"]}
    assert rows["both.bridge"]["outcome"] == "interrupted"
    assert rows["both"]["result"] == "1 of 2 branches succeeded (join any)"


async def test_a_failed_run_undoes_the_branches_that_succeeded(db: Database) -> None:
    steps = group("all")
    steps[0]["parallel"]["branches"][0]["compensate"] = {"action": "undo_broker"}
    outcome, record = await run(
        db,
        playbook(steps),
        Scripted("fix_broker", ActionKind.FIX, [True]),
        Scripted("fix_bridge", ActionKind.FIX, [False]),
        Scripted("verify", ActionKind.CHECK, [True]),
        Scripted("undo_broker", ActionKind.FIX, [True]),
    )
    assert outcome.status == "escalated"
    assert steps_of(record)[-1] == ("both.broker:compensate", "success", None)


class Echo:
    """Reports the target and params it was given (after templates were filled in)."""

    name = "echo"
    kind = ActionKind.CHECK
    needs_target = False

    class params_model(BaseModel):
        model_config = {"extra": "forbid"}
        port: int = 0

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, Echo.params_model)
        return StepResult.ok(f"{ctx.target}:{params.port}", target=ctx.target, port=params.port)


async def test_when_skips_a_step_and_the_run_goes_on_in_order(db: Database) -> None:
    steps = [
        {
            "id": "check",
            "name": "Check",
            "action": "check",
            "on_success": "fix",
            "on_failure": "fix",
        },
        {"id": "fix", "name": "Fix", "action": "fix", "when": "steps.check.outcome == 'failure'"},
        {"id": "verify", "name": "Verify", "action": "verify", "on_success": "done"},
    ]
    fix = Scripted("fix", ActionKind.FIX, [True])
    outcome, record = await run(
        db,
        playbook(steps),
        Scripted("check", ActionKind.CHECK, [True]),
        fix,
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "resolved"
    assert steps_of(record) == [
        ("check", "success", "fix"),
        ("fix", "skipped", "verify"),
        ("verify", "success", "done"),
    ]
    assert record["steps"][1]["result"] == "skipped: steps.check.outcome == 'failure' is false"
    assert fix.calls == 0


async def test_success_when_decides_the_outcome_from_the_result(db: Database) -> None:
    steps = [
        {
            "id": "probe",
            "name": "Probe",
            "action": "echo",
            "target": "broker",
            "params": {"port": 1883},
            "success_when": "steps.probe.output.port != 1883",
            "on_failure": "escalate",
            "on_success": "done",
        }
    ]
    outcome, record = await run(db, playbook(steps), Echo())  # type: ignore[arg-type]
    assert outcome.status == "escalated"
    assert record["steps"][0]["outcome"] == "failure"
    assert record["steps"][0]["error"] == "steps.probe.output.port != 1883 is false (broker:1883)"


async def test_targets_and_params_are_filled_in_from_the_failure_and_earlier_steps(
    db: Database,
) -> None:
    steps = [
        {"id": "first", "name": "First", "action": "echo", "target": "x", "params": {"port": 8883}},
        {
            "id": "second",
            "name": "Second",
            "action": "echo",
            "target": "{failure.component}-{steps.first.output.port}",
            "params": {"port": "{steps.first.output.port + 1}"},
            "on_success": "done",
        },
    ]
    outcome, record = await run(db, playbook(steps), Echo())  # type: ignore[arg-type]
    assert outcome.status == "resolved"
    second = record["steps"][1]
    assert (second["target"], second["result"]) == ("mqtt-8883", "mqtt-8883:8884")


async def test_a_placeholder_that_cannot_be_filled_in_is_an_error_step(db: Database) -> None:
    steps = [
        {
            "id": "only",
            "name": "Only",
            "action": "echo",
            "target": "{failure.message}",
            "params": {"port": "{failure.component}"},
            "on_failure": "escalate",
            "on_success": "done",
        }
    ]
    outcome, record = await run(db, playbook(steps), Echo())  # type: ignore[arg-type]
    assert outcome.status == "escalated"
    assert record["steps"][0]["outcome"] == "error"
    assert "cannot fill in the step" in record["steps"][0]["error"]
    assert "port" in record["steps"][0]["error"]


GRAPH = [
    {"id": "stop_bridge", "name": "Stop bridge", "action": "stop_bridge"},
    {"id": "flush", "name": "Flush queue", "action": "flush"},
    {"id": "restart", "name": "Restart broker", "action": "fix", "needs": ["stop_bridge", "flush"]},
    {"id": "verify", "name": "Verify", "action": "verify", "needs": ["restart"]},
]


async def test_steps_with_needs_run_in_waves_independent_ones_at_once(db: Database) -> None:
    started = asyncio.get_running_loop().time()
    outcome, record = await run(
        db,
        playbook(GRAPH),
        Scripted("stop_bridge", ActionKind.FIX, [0.2]),
        Scripted("flush", ActionKind.FIX, [0.2]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert asyncio.get_running_loop().time() - started < 0.35  # the first wave at once
    assert outcome.status == "resolved"
    order = [s["id"] for s in record["steps"]]
    assert set(order[:2]) == {"stop_bridge", "flush"}
    assert order[2:] == ["restart", "verify"]
    assert outcome.resolved_by == "restart"


async def test_a_step_whose_need_failed_is_skipped_and_the_run_escalates(db: Database) -> None:
    outcome, record = await run(
        db,
        playbook(GRAPH),
        Scripted("stop_bridge", ActionKind.FIX, [True]),
        Scripted("flush", ActionKind.FIX, [False]),
        Scripted("fix", ActionKind.FIX, [True]),
        Scripted("verify", ActionKind.CHECK, [True]),
    )
    assert outcome.status == "escalated"
    rows = {s["id"]: s for s in record["steps"]}
    assert rows["restart"]["outcome"] == "skipped"
    assert rows["restart"]["result"] == "skipped: needs flush, which did not succeed"
    assert rows["verify"]["result"] == "skipped: needs restart, which did not succeed"
    assert outcome.detail == "steps did not succeed: flush, restart, verify"


async def test_a_cancel_during_a_retry_backoff_interrupts_cleanly_and_undoes(
    timed: Timed,
) -> None:
    clock, db = timed
    steps = [
        dict(UNDOABLE[0]),
        {
            "id": "fix",
            "name": "Fix",
            "action": "fix",
            "on_success": "done",
            "retry": {"attempts": 3, "backoff_seconds": 5},
        },
    ]
    book = playbook(steps)
    executions = await prepare(db, book)
    actions = [
        Scripted("isolate", ActionKind.FIX, [True]),
        Scripted("fix", ActionKind.FIX, [False]),
        Scripted("restore", ActionKind.FIX, [True]),
    ]
    runner = Runner(ActionRegistry(actions), executions, clock)
    # after 0.2 s the first attempt has failed and the runner waits 5 s to retry
    record = await cancelled_after(clock, 0.2, runner, book, executions)
    assert record["outcome"]["status"] == "interrupted"
    assert steps_of(record) == [
        ("isolate", "success", "fix"),
        ("fix", "failure", "retry:fix"),
        ("isolate:compensate", "success", None),
    ]
