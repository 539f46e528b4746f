"""Pause, resume, cancel and override a running execution; priorities under a limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.control import ExecutionControls, Override, PriorityGate
from graylogic_supervisor.engine.runner import Runner
from tests.engine.test_runner import FAILURE, STANDARD, Scripted, playbook, prepare, steps_of
from tests.virtual_time import DrivenClock, Timed, driven


async def started(clock: DrivenClock, controls: ExecutionControls, count: int = 1) -> str:
    """The first running execution's id, once ``count`` are running."""
    deadline = clock.monotonic() + 5
    while len(controls.running()) < count:
        assert clock.monotonic() < deadline, "no execution started"
        await clock.sleep(0.005)
    return controls.running()[0]


def slow_registry(check: list[Any]) -> ActionRegistry:
    return ActionRegistry(
        [
            Scripted("check", ActionKind.CHECK, check),
            Scripted("fix", ActionKind.FIX, [True]),
            Scripted("verify", ActionKind.CHECK, [True]),
        ]
    )


async def test_a_paused_execution_waits_between_steps_and_resumes(
    timed: Timed,
) -> None:
    clock, db = timed
    book = playbook(STANDARD)
    executions = await prepare(db, book)
    controls = ExecutionControls(clock)
    fix = Scripted("fix", ActionKind.FIX, [True])
    registry = ActionRegistry(
        [
            Scripted("check", ActionKind.CHECK, [0.1]),
            fix,
            Scripted("verify", ActionKind.CHECK, [True]),
        ]
    )
    task = asyncio.create_task(
        Runner(registry, executions, clock, controls=controls).run(book, FAILURE)
    )
    execution_id = await started(clock, controls)
    assert controls.pause(execution_id) == f"{execution_id} paused (after its current step)"
    assert controls.pause(execution_id) == f"{execution_id} was already paused"
    await clock.sleep(0.3)
    assert not task.done()  # the check finished; the next step waits
    assert controls.resume(execution_id) == f"{execution_id} resumed"
    outcome = await task
    assert outcome.status == "resolved"
    assert controls.running() == []
    assert controls.resume(execution_id) == f"{execution_id} is not running"


async def test_a_cancelled_execution_is_interrupted_and_says_who(
    timed: Timed,
) -> None:
    clock, db = timed
    book = playbook(STANDARD)
    executions = await prepare(db, book)
    controls = ExecutionControls(clock)
    task = asyncio.create_task(
        Runner(slow_registry([10.0]), executions, clock, controls=controls).run(book, FAILURE)
    )
    execution_id = await started(clock, controls)
    controls.cancel(execution_id, "alice")
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await executions.record(execution_id)
    assert record is not None
    assert record["outcome"]["status"] == "interrupted"
    assert record["outcome"]["detail"] == "cancelled by alice"


async def test_a_person_can_mark_a_running_step_succeeded(
    timed: Timed,
) -> None:
    clock, db = timed
    book = playbook(STANDARD)
    executions = await prepare(db, book)
    controls = ExecutionControls(clock)
    task = asyncio.create_task(
        Runner(slow_registry([10.0]), executions, clock, controls=controls).run(book, FAILURE)
    )
    execution_id = await started(clock, controls)
    await clock.sleep(0.05)
    said = controls.override(execution_id, "check", Override("failure", "bob", "saw it down"))
    assert said == f"step check of {execution_id} marked failure by bob"
    outcome = await clock.wait_for(task, 5)
    assert outcome.status == "resolved"
    record = await executions.record(execution_id)
    assert record is not None
    assert steps_of(record)[0] == ("check", "failure", "fix")
    assert record["steps"][0]["result"] == "overridden by bob: saw it down"


async def test_emergency_stop_cancels_every_execution(timed: Timed) -> None:
    clock, db = timed
    book = playbook(STANDARD)
    executions = await prepare(db, book)
    controls = ExecutionControls(clock)
    runner = Runner(slow_registry([10.0]), executions, clock, controls=controls)
    tasks = [asyncio.create_task(runner.run(book, FAILURE)) for _ in range(3)]
    await started(clock, controls, count=3)
    assert controls.emergency_stop("carol") == "emergency stop: 3 execution(s) cancelled"
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_the_gate_lets_the_most_urgent_waiting_run_go_first() -> None:
    async with driven(DrivenClock()) as clock:
        gate = PriorityGate(limit=1)
        order: list[str] = []

        async def run(name: str, priority: int, hold: float) -> None:
            async with gate.slot(priority):
                order.append(name)
                await clock.sleep(hold)

        first = asyncio.create_task(run("first", 3, 0.05))
        await clock.sleep(0.01)
        others = [
            asyncio.create_task(run("low", 3, 0)),
            asyncio.create_task(run("critical", 0, 0)),
            asyncio.create_task(run("high", 1, 0)),
        ]
        await clock.sleep(0.01)
        assert gate.waiting == 3
        await asyncio.gather(first, *others)
        assert order == ["first", "critical", "high", "low"]


async def test_a_cancelled_waiter_does_not_lose_the_slot() -> None:
    async with driven(DrivenClock()) as clock:
        gate = PriorityGate(limit=1)
        release = asyncio.Event()

        async def hold() -> None:
            async with gate.slot(1):
                await release.wait()

        holder = asyncio.create_task(hold())
        await clock.sleep(0.01)
        waiter = asyncio.create_task(hold())
        await clock.sleep(0.01)
        waiter.cancel()
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiter
        async with asyncio.timeout(1), gate.slot(0):
            pass  # the slot is free again


async def test_the_watchdog_flags_an_execution_past_its_deadline_once() -> None:
    from tests.clocks import ManualClock

    clock = ManualClock()
    controls = ExecutionControls(clock)
    handle = controls.open("exec-1", deadline=clock.monotonic() + 60)
    clock.advance(60 + 29)
    assert controls.stuck(grace_s=30) == []
    controls.beat("exec-1")
    clock.advance(2)
    [(execution_id, silent)] = controls.stuck(grace_s=30)
    assert (execution_id, silent) == ("exec-1", 2)
    assert controls.stuck(grace_s=30) == []  # said once
    assert handle.flagged


async def test_a_pause_moves_the_deadline_with_it() -> None:
    from tests.clocks import ManualClock

    clock = ManualClock()
    controls = ExecutionControls(clock)
    handle = controls.open("exec-1", deadline=100)
    controls.pause("exec-1")
    waiting = asyncio.create_task(controls.wait_while_paused(handle))
    await asyncio.sleep(0)
    clock.advance(50)
    controls.resume("exec-1")
    assert await waiting == 50
    assert handle.deadline == 150
