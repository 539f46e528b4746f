"""The daemon's playbook choice with a running trial (BR-WF-034): its share of failures
runs the trial's version, a retry stays in its arm, and safe mode runs the base."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from graylogic_supervisor.config import PolicyConfig
from graylogic_supervisor.learning.trials import in_trial
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.trials import NewTrial
from tests.supervisor.test_loop import Harness, eventually, open_harness, settle

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
TRIAL = "trial-20260105-080000-000000000001"
CALM = PolicyConfig(flap_changes=1000, rearm_after_s=0.3, open_cooldown_s=0.3)


async def with_trial(h: Harness, share: float, **limits: float) -> None:
    """The seeded 1.0.0 active, and 1.1.0 on trial beside it for ``share`` of failures."""
    await h.seed(**limits)
    base = await h.versions.active_playbook(PLAYBOOK)
    assert base is not None
    await h.versions.add_version(
        Playbook.model_validate({**base.model_dump(), "version": "1.1.0"}),
        parent_version="1.0.0",
        created_by="workflow_learning",
        approved_by="ada",
        reason="on trial",
        recommendation_id=None,
        changes=[],
        now=h.clock.now(),
        activate=False,
    )
    assert await h.trials.start(
        NewTrial(
            id=TRIAL,
            playbook_id=PLAYBOOK,
            base_version="1.0.0",
            trial_version="1.1.0",
            share=share,
            recommendation_id=None,
            by="ada",
            at=h.clock.now(),
        )
    )


async def arms_run(h: Harness) -> list[tuple[str, str]]:
    rows = await h.db.fetchall(
        "SELECT failure_id, playbook_version FROM executions ORDER BY started_at"
    )
    return [(row["failure_id"], row["playbook_version"]) for row in rows]


async def test_a_running_trial_takes_its_share_of_failures(tmp_path: Path) -> None:
    async with open_harness(tmp_path, settings=CALM) as h:
        await with_trial(h, 0.5, max_attempts=50)
        h.healthy_on_probe = True
        task = asyncio.create_task(h.supervisor.run())
        try:
            for n in range(20):
                h.monitor.report("mqtt", False, f"down {n}")
                await settle(h)
            ran = await arms_run(h)
            assert len(ran) == 20
            for failure_id, version in ran:
                assert version == ("1.1.0" if in_trial(TRIAL, failure_id, 0.5) else "1.0.0")
            assert {version for _, version in ran} == {"1.0.0", "1.1.0"}
            assert await h.versions.active_version(PLAYBOOK) == "1.0.0"
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_every_attempt_at_one_failure_runs_the_same_arm(tmp_path: Path) -> None:
    async with open_harness(tmp_path, settings=CALM) as h:
        await with_trial(h, 0.5, max_attempts=3)
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("mqtt", False, "down")  # the probe keeps saying unhealthy

            async def held() -> bool:
                return (0, "attempt_budget") in await h.evaluations()

            await eventually(h.clock, held)
            ran = await arms_run(h)
            assert len(ran) == 3 and len({failure for failure, _ in ran}) == 1
            [(failure_id, _)] = set(ran)
            expected = "1.1.0" if in_trial(TRIAL, failure_id, 0.5) else "1.0.0"
            assert {version for _, version in ran} == {expected}
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_in_safe_mode_an_essential_runs_the_base_not_the_trial(tmp_path: Path) -> None:
    settings = PolicyConfig(essentials=("mqtt",), flap_changes=1000)
    async with open_harness(tmp_path, settings=settings) as h:
        await with_trial(h, 0.95, max_attempts=50)
        await h.controls.set_safe_mode(True, "test", "alice", h.clock.now())
        h.healthy_on_probe = True
        task = asyncio.create_task(h.supervisor.run())
        try:
            for n in range(6):
                h.monitor.report("mqtt", False, f"down {n}")
                await settle(h)
            ran = await arms_run(h)
            assert len(ran) == 6
            assert any(in_trial(TRIAL, failure, 0.95) for failure, _ in ran)  # would have
            assert {version for _, version in ran} == {"1.0.0"}
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
