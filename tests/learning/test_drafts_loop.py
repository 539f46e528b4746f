"""The supervisor and a draft: escalated while no playbook covers the failure, then, once
a person approved the draft the technicians' fixes made, recovered by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.catalog import load_catalog
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    Resolution,
    Resources,
)
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.learning.draft_steps import ComponentSite, DraftSite, playbook_id_for
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.supervisor.loop import Supervisor
from graylogic_supervisor.supervisor.rebuild import PolicyJournal
from tests.daemon_process import REPO
from tests.engine.test_runner import Scripted
from tests.supervisor.test_loop import Harness, open_harness, settle

ERROR = "ERR-INFRA-MQTT-001"
DRAFT = playbook_id_for(ERROR, "mqtt")


class DraftHarness:
    """The loop's harness with a health check the draft can use, and a learning service."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.check = Scripted("wait_for_health", ActionKind.VERIFY, [False, True])
        registry = ActionRegistry([h.fix, self.check])
        h.supervisor = Supervisor(
            h.monitor,
            h.versions,
            h.executions,
            h.incidents,
            runner=Runner(registry, h.executions, h.clock),
            catalog=load_catalog(REPO / "config" / "catalog.yaml"),
            policy=h.policy,
            controls=h.controls,
            observer=h.observer,
            escalations=h.escalations,
            clock=h.clock,
            journal=PolicyJournal(h.policy, h.recovery_state, h.clock),
            arms=TrialArms(h.trials, h.versions),
        )
        self.learning = LearningService(
            h.db,
            h.versions,
            h.audit,
            registry.specs(),
            settings=LearningConfig(),
            clock=h.clock,
            site=DraftSite(components={"mqtt": ComponentSite("mqtt")}),
        )
        self.memory = MemoryRepository(h.db)

    async def technician_fixed(self, failure_id: str) -> None:
        """What `memory resolve` records: the fix action a person ran."""
        now = self.h.clock.now()
        context = FailureContext(
            failure_id=failure_id,
            incident_id=None,
            detected_at=now - timedelta(minutes=30),
            error_id=ERROR,
            component="mqtt",
            severity="critical",
            message="MQTT broker connection failed: down",
            other_health={},
            recent_events=[],
            resources=Resources(memory_percent=30, disk_percent=30, cpu_percent=5, load_per_cpu=0),
            environment=Environment(hour=now.hour, weekday=now.weekday(), uptime_s=60),
        )
        resolution = Resolution(
            resolved_at=now,
            fixed_by="ana",
            what_fixed_it="ran fix by hand",
            fix_action="fix",
            fix_target=None,
        )
        await self.memory.save(FailureRecord(context=context, resolution=resolution), now)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DraftHarness]:
    async with open_harness(tmp_path) as h:
        harness = DraftHarness(h)
        task = asyncio.create_task(h.supervisor.run())
        yield harness
        h.supervisor.stop_accepting()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_approved_draft_recovers_what_was_escalated_before(site: DraftHarness) -> None:
    h = site.h
    for number in range(3):
        h.monitor.report("mqtt", False, "down")
        await h.clock.sleep(0.05)  # escalated; the incident waits for health
        h.monitor.report("mqtt", True, "a technician fixed it")
        await settle(h)
        await site.technician_fixed(f"fail-by-hand-{number}")
    assert await h.statuses() == []  # nothing ran: no playbook covers it
    assert [a for a in h.observer.alerts if "no active playbook" in a[1]]
    escalated = len(h.observer.alerts)

    await site.learning.users.add("ada", "admin", "correct horse battery", h.clock.now())
    await site.learning.analyze("test")
    [rec] = [r for r in await site.learning.store.listing("pending") if r.type == "new_playbook"]
    assert await h.versions.active_version(DRAFT) is None  # a draft never runs by itself
    assert await site.learning.approve(rec.id, "ada", "the broker hangs") == "1.0.0"

    h.healthy_on_probe = True  # the fix works
    h.monitor.report("mqtt", False, "down again")
    await settle(h)
    assert await h.statuses() == ["resolved"]
    [execution] = await h.executions.recent(1)
    assert (execution["playbook_id"], execution["playbook_version"]) == (DRAFT, "1.0.0")
    assert h.fix.calls == 1 and site.check.calls == 2  # the check found it, the verify healthy
    assert len(h.observer.alerts) == escalated  # no technician called this time


async def test_a_playbook_a_person_wrote_later_takes_precedence_over_the_draft(
    site: DraftHarness,
) -> None:
    """An installer who then writes a playbook for that failure (one the catalog does not
    name) gets it run, not the draft, whichever id sorts first."""
    h = site.h
    for number in range(3):
        await site.technician_fixed(f"fail-by-hand-{number}")
    await site.learning.users.add("ada", "admin", "correct horse battery", h.clock.now())
    await site.learning.analyze("test")
    [rec] = [r for r in await site.learning.store.listing("pending") if r.type == "new_playbook"]
    assert await site.learning.approve(rec.id, "ada", "the broker hangs") == "1.0.0"
    written = "PLAY-ZZ-BROKER-BY-HAND-001"  # sorts after PLAY-DRAFT-...
    assert written > DRAFT
    book = Playbook.model_validate(
        {
            "id": written,
            "name": "written by the installer",
            "version": "1.0.0",
            "trigger": {"component": "mqtt", "error_ids": [ERROR]},
            "steps": [{"id": "fix", "name": "Fix", "action": "fix", "on_success": "done"}],
        }
    )
    await h.versions.seed(book, "", "by-hand.yaml", h.clock.now())
    h.healthy_on_probe = True
    h.monitor.report("mqtt", False, "down again")
    await settle(h)
    [execution] = await h.executions.recent(1)
    assert execution["playbook_id"] == written
