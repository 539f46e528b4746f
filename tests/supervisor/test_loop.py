"""The supervisor loop: from a health change to exactly the recoveries it should start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.catalog import load_catalog
from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import ComponentConfig, MqttComponent
from graylogic_supervisor.engine.action import ActionKind, ActionRegistry
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.supervisor.loop import Supervisor
from tests.daemon_process import REPO
from tests.engine.test_runner import Scripted


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        self.sent.append((severity, message, context))


class Harness:
    """A supervisor over a real store, with a probe and actions the test controls."""

    def __init__(self, db: Database, grace_s: float = 0.0) -> None:
        self.db = db
        self.healthy_on_probe = False
        self.fix = Scripted("fix", ActionKind.FIX, [0.05])
        self.alerts = Alerts()
        clock = SystemClock()

        async def prober(component: str, config: ComponentConfig) -> tuple[bool, str]:
            return self.healthy_on_probe, "probe says so"

        components: dict[str, ComponentConfig] = {
            "mqtt": MqttComponent(kind="mqtt", error_id="ERR-INFRA-MQTT-001", grace_s=grace_s)
        }
        self.monitor = HealthMonitor(components, ServiceManager(clock), {"mqtt": prober}, clock)
        self.executions = ExecutionRepository(db)
        self.versions = PlaybookVersions(db)
        runner = Runner(ActionRegistry([self.fix]), self.executions, clock)
        self.supervisor = Supervisor(
            self.monitor,
            self.versions,
            self.executions,
            runner,
            load_catalog(REPO / "config" / "catalog.yaml"),
            self.alerts,
            clock,
        )

    async def seed(self, on_success: str = "done", **limits: Any) -> None:
        book = Playbook.model_validate(
            {
                "id": "PLAY-MQTT-RECOVER-001",
                "name": "test",
                "version": "1.0.0",
                "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
                "limits": {"cooldown_seconds": 0.05, **limits},
                "steps": [{"id": "fix", "name": "Fix", "action": "fix", "on_success": on_success}],
            }
        )
        await self.versions.seed(book, "", "test.yaml", SystemClock().now())

    async def statuses(self) -> list[str]:
        return [row["status"] for row in reversed(await self.executions.recent(100))]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Database(tmp_path / "s.db") as db:
        h = Harness(db)
        task = asyncio.create_task(h.supervisor.run())
        yield h
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def settle(h: Harness, timeout: float = 5) -> None:
    await asyncio.sleep(0.01)
    async with asyncio.timeout(timeout):
        while h.supervisor.recovering:
            await asyncio.sleep(0.01)


async def test_an_unhealthy_component_runs_its_playbook_once(harness: Harness) -> None:
    await harness.seed()
    harness.monitor.report("mqtt", False, "link lost")
    await asyncio.sleep(0.01)
    # More bad news while the recovery runs starts nothing new.
    harness.monitor.report("mqtt", True, "flap")
    harness.monitor.report("mqtt", False, "lost again")
    assert harness.supervisor.recovering == {"mqtt"}
    harness.monitor.report("mqtt", True, "fixed")
    await settle(harness)
    assert await harness.statuses() == ["resolved"]
    assert harness.fix.calls == 1
    [failure] = await harness.db.fetchall("SELECT * FROM failures")
    assert (failure["component"], failure["error_id"], failure["message"]) == (
        "mqtt",
        "ERR-INFRA-MQTT-001",
        "link lost",
    )


async def test_a_failure_gone_within_its_grace_window_runs_nothing(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        h = Harness(db, grace_s=0.1)
        await h.seed()
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.healthy_on_probe = True
            h.monitor.report("mqtt", False, "blip")
            await settle(h)
            assert await h.statuses() == []
            assert h.monitor.state("mqtt").health.value == "healthy"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_unsuccessful_recoveries_stop_at_max_attempts_and_alert_each_time(
    harness: Harness,
) -> None:
    await harness.seed(on_success="escalate", max_attempts=2)
    harness.monitor.report("mqtt", False, "down")
    await settle(harness)
    assert await harness.statuses() == ["escalated", "escalated"]
    assert [a[1].split(":")[0] for a in harness.alerts.sent] == [
        "PLAY-MQTT-RECOVER-001 escalated for mqtt"
    ] * 2
    assert harness.alerts.sent[0][0] == "critical"

    # It waits for a human now: the component staying unhealthy starts nothing.
    await asyncio.sleep(0.2)
    assert await harness.statuses() == ["escalated", "escalated"]

    # Recovery by other means re-arms it.
    harness.monitor.report("mqtt", True, "a technician fixed it")
    harness.monitor.report("mqtt", False, "down again")
    await settle(harness)
    assert len(await harness.statuses()) == 4


async def test_a_resolved_run_that_leaves_the_component_unhealthy_tries_again(
    harness: Harness,
) -> None:
    await harness.seed(max_attempts=3)
    harness.monitor.report("mqtt", False, "down")  # nothing marks it healthy again
    await settle(harness)
    assert await harness.statuses() == ["resolved", "resolved", "resolved"]


async def test_a_failure_without_a_playbook_is_an_alert_not_a_crash(harness: Harness) -> None:
    harness.monitor.report("mqtt", False, "down")
    await settle(harness)
    assert await harness.statuses() == []
    [(severity, message, _)] = harness.alerts.sent
    assert severity == "critical"
    assert message == "no active playbook handles ERR-INFRA-MQTT-001 on mqtt"


async def test_after_stop_accepting_new_failures_start_nothing(harness: Harness) -> None:
    await harness.seed()
    harness.supervisor.stop_accepting()
    harness.monitor.report("mqtt", False, "down")
    await asyncio.sleep(0.05)
    assert harness.supervisor.recovering == frozenset()
    assert await harness.supervisor.wait_idle(0.1)
