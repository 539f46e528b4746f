"""Give-up state survives a restart: a supervisor restarted on the same store denies
what the one before it would have denied (issue 13: it used to start empty)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.config import PolicyConfig
from graylogic_supervisor.store.executions import ExecutionEnd, StepEnd
from graylogic_supervisor.supervisor.policy import Breaker, Reason
from graylogic_supervisor.supervisor.rebuild import ClockMap, rebuild_policy
from tests.clocks import ManualClock
from tests.supervisor.test_loop import Harness, eventually, open_harness

SETTINGS = PolicyConfig(
    rearm_after_s=600,
    open_cooldown_s=300,
    max_open_cooldown_s=1200,
)
DOWNTIME_S = 60.0


async def rebuild(h: Harness) -> None:
    await rebuild_policy(h.policy, h.recovery_state, h.incidents, h.executions, clock=h.clock)


async def stop(h: Harness, task: asyncio.Task[None]) -> None:
    h.supervisor.stop_accepting()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_supervisor_restarted_on_the_same_store_denies_what_the_first_would_have(
    tmp_path: Path,
) -> None:
    # First life: the broker's fix fails the same way twice, so its breaker opens.
    async with open_harness(tmp_path, settings=SETTINGS) as first:
        await first.seed(max_attempts=5)
        first.fix.answers = [False]
        task = asyncio.create_task(first.supervisor.run())
        first.monitor.report("mqtt", False, "down")

        async def breaker_open() -> bool:
            return first.policy.breaker("mqtt") is Breaker.OPEN

        await eventually(first.clock, breaker_open)
        await first.clock.sleep(1)
        await stop(first, task)
        reopens_in = first.policy.reopens_in("mqtt")
        record = first.policy.record("mqtt")
        reading = first.policy.termination()
        stopped_at = first.clock.now()
    assert reading.terminated == 2 and 290 < reopens_in < 300

    # Second life, on the same store, after a minute down.
    async with open_harness(
        tmp_path, start=stopped_at + timedelta(seconds=DOWNTIME_S), settings=SETTINGS
    ) as second:
        await rebuild(second)
        policy = second.policy
        assert policy.reopens_in("mqtt") == pytest.approx(reopens_in - DOWNTIME_S, abs=0.01)
        restored = policy.record("mqtt")
        assert (restored.breaker, restored.signature, restored.open_for) == (
            record.breaker,
            record.signature,
            record.open_for,
        )
        assert policy.termination() == reading

        # The broker fails again: held by the breaker it had, not handed a fresh budget.
        await second.seed(max_attempts=5)
        second.fix.answers = [False]
        task = asyncio.create_task(second.supervisor.run())
        try:
            second.monitor.report("mqtt", False, "down again")

            async def held() -> bool:
                return (0, "breaker_open") in await second.evaluations()

            await eventually(second.clock, held)
            assert len(await second.statuses()) == 2  # nothing ran

            # After what was left of the cooldown, one trial, as the first would have.
            async def trial() -> bool:
                return len(await second.statuses()) == 3

            deadline = second.clock.monotonic() + reopens_in
            while not await trial():  # polled each virtual second: the wait is minutes long
                assert second.clock.monotonic() < deadline, "no trial after the cooldown"
                await second.clock.sleep(1)
            allowed = [reason for ok, reason in await second.evaluations() if ok]
            assert allowed == ["within_budget", "within_budget", "trial_attempt"]
            assert policy.reopens_in("mqtt") == pytest.approx(600, abs=1)  # failed: doubled
        finally:
            await stop(second, task)


async def test_the_attempt_budget_is_rebuilt_from_the_allowed_evaluations(
    tmp_path: Path,
) -> None:
    async with open_harness(tmp_path, settings=SETTINGS) as first:
        await first.seed(max_attempts=3)
        first.healthy_on_probe = True
        task = asyncio.create_task(first.supervisor.run())
        for _ in range(2):  # two recoveries that worked, seconds apart: no re-arm
            first.monitor.report("mqtt", False, "down")
            await eventually(first.clock, lambda: _no_recovery(first))
            await first.clock.sleep(5)
        await stop(first, task)
        stopped_at = first.clock.now()
    async with open_harness(
        tmp_path, start=stopped_at + timedelta(seconds=DOWNTIME_S), settings=SETTINGS
    ) as second:
        await rebuild(second)
        verdict = second.policy.evaluate("mqtt", max_attempts=3)
        assert (verdict.allowed, verdict.attempts_in_window) == (True, 2)
        denied = second.policy.evaluate("mqtt", max_attempts=3)
        assert (denied.allowed, denied.reason) == (False, Reason.ATTEMPT_BUDGET)


async def _no_recovery(h: Harness) -> bool:
    return not h.supervisor.recovering and bool(await h.statuses())


async def test_the_termination_window_is_rebuilt_without_what_the_supervisor_could_not_run(
    tmp_path: Path,
) -> None:
    async with open_harness(tmp_path, settings=SETTINGS) as h:
        await h.seed()
        started = h.clock.now()
        ends = [
            ("resolved", None),
            ("escalated", "failure"),
            ("failed", "timeout"),
            ("escalated", "error"),  # its step raised: the supervisor could not run it
            ("interrupted", None),  # a shutdown
        ]
        for number, (status, step_outcome) in enumerate(ends):
            execution_id = f"exec-{number}"
            await h.executions.record_failure(
                f"fail-{number}",
                "mqtt",
                "ERR-INFRA-MQTT-001",
                "high",
                message="down",
                detected_at=started,
            )
            await h.executions.start_execution(
                execution_id,
                "PLAY-MQTT-RECOVER-001",
                "1.0.0",
                f"fail-{number}",
                error_id="ERR-INFRA-MQTT-001",
                component="mqtt",
                started_at=started,
            )
            if step_outcome is not None:
                row = await h.executions.start_step(
                    execution_id,
                    1,
                    "fix",
                    "Fix",
                    action="fix",
                    target=None,
                    attempt=1,
                    started_at=started,
                )
                await h.executions.finish_step(
                    row, started, 0.1, StepEnd(step_outcome, None, {}, "x", "escalate")
                )
                # an undo after it succeeded: not the failing step
                row = await h.executions.start_step(
                    execution_id,
                    2,
                    "fix:compensate",
                    "Undo",
                    action="fix",
                    target=None,
                    attempt=1,
                    started_at=started,
                )
                await h.executions.finish_step(
                    row, started, 0.1, StepEnd("success", "undone", {}, None, None)
                )
            await h.executions.finish_execution(
                execution_id, started, 0.2, ExecutionEnd(status, None, None, None, "ended")
            )
        # An old one, out of the window.
        await h.clock.sleep(SETTINGS.termination_window_s - 10)
        await rebuild(h)
        reading = h.policy.termination()
        assert (reading.finished, reading.terminated) == (3, 2)
        await h.clock.sleep(11)
        assert h.policy.termination().finished == 0


def test_stored_moments_map_onto_the_monotonic_clock() -> None:
    clock = ManualClock()
    clock.advance(1000)
    times = ClockMap(clock)
    assert times.to_monotonic(clock.now() - timedelta(seconds=250)) == 750
    assert times.to_monotonic(clock.now() + timedelta(seconds=30)) == 1000  # clock went back
    assert times.to_wall(750) == clock.now() - timedelta(seconds=250)
