"""The supervisor loop: health changes become incidents, incidents the recoveries allowed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.catalog import load_catalog
from graylogic_supervisor.config import (
    BridgeComponent,
    ComponentConfig,
    CriticalPattern,
    EscalationConfig,
    MqttComponent,
    PolicyConfig,
)
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionRegistry, StepContext, StepResult
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.store.recovery_state import RecoveryStateRepository
from graylogic_supervisor.store.trials import TrialRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.supervisor.escalation import EscalationChain
from graylogic_supervisor.supervisor.loop import MAINTENANCE_CHECK_S, Supervisor
from graylogic_supervisor.supervisor.policy import RecoveryPolicy, Verdict
from graylogic_supervisor.supervisor.rebuild import PolicyJournal
from tests.daemon_process import REPO
from tests.engine.test_runner import Scripted
from tests.virtual_time import CountingDatabase, CountingExecutor, DrivenClock, driven

FAST = PolicyConfig(rearm_after_s=0.3, open_cooldown_s=0.3, max_open_cooldown_s=0.6)


class Observer:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, str]] = []
        self.incidents: list[dict[str, Any]] = []
        self.verdicts: list[Verdict] = []

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        self.alerts.append((severity, message))

    def incident_changed(self, component: str, incident: dict[str, Any]) -> None:
        self.incidents.append(incident)

    def viability(self, component: str, verdict: Verdict) -> None:
        self.verdicts.append(verdict)


class Harness:
    """A supervisor over a real store, with a probe and an action the test controls."""

    def __init__(
        self,
        db: Database,
        clock: DrivenClock,
        grace_s: float = 0.0,
        settings: PolicyConfig = FAST,
        extra: dict[str, ComponentConfig] | None = None,
    ) -> None:
        self.db = db
        self.healthy_on_probe = False
        self.probe_health: dict[str, bool] = {}  # per component, overrides healthy_on_probe
        self.fix = Scripted("fix", ActionKind.FIX, [0.02])
        self.observer = Observer()
        self.clock = clock

        self.probe_raises: dict[str, list[Exception]] = {}  # per component, raised in order

        async def prober(component: str, config: ComponentConfig) -> tuple[bool, str]:
            if self.probe_raises.get(component):
                raise self.probe_raises[component].pop(0)
            return self.probe_health.get(component, self.healthy_on_probe), "probe says so"

        components: dict[str, ComponentConfig] = {
            "mqtt": MqttComponent(kind="mqtt", error_id="ERR-INFRA-MQTT-001", grace_s=grace_s),
            **(extra or {}),
        }
        self.monitor = HealthMonitor(
            components, ServiceManager(clock), {"mqtt": prober, "bridge": prober}, clock
        )
        self.executions = ExecutionRepository(db)
        self.incidents = IncidentRepository(db)
        self.versions = PlaybookVersions(db)
        self.trials = TrialRepository(db)
        self.policy = RecoveryPolicy(settings, clock)
        self.recovery_state = RecoveryStateRepository(db)
        # the head file is written on a worker thread the driven clock must see
        self.audit_worker = CountingExecutor(clock)
        self.audit = AuditLog(db, self.audit_worker)
        self.controls = ControlRepository(db, self.audit)
        self.escalations = EscalationChain(
            EscalationConfig(), EscalationRepository(db, self.audit), self.observer, clock
        )
        self.supervisor = Supervisor(
            self.monitor,
            self.versions,
            self.executions,
            self.incidents,
            runner=Runner(ActionRegistry([self.fix]), self.executions, clock),
            catalog=load_catalog(REPO / "config" / "catalog.yaml"),
            policy=self.policy,
            controls=self.controls,
            observer=self.observer,
            escalations=self.escalations,
            clock=clock,
            journal=PolicyJournal(self.policy, self.recovery_state, clock),
            arms=TrialArms(self.trials, self.versions),
        )

    async def seed(
        self,
        on_success: str = "done",
        component: str = "mqtt",
        error_id: str = "ERR-INFRA-MQTT-001",
        **limits: Any,
    ) -> None:
        book = Playbook.model_validate(
            {
                "id": f"PLAY-{component.upper().replace('-', '')}-RECOVER-001",
                "name": "test",
                "version": "1.0.0",
                "trigger": {"component": component, "error_ids": [error_id]},
                "limits": {"cooldown_seconds": 0.05, **limits},
                "steps": [{"id": "fix", "name": "Fix", "action": "fix", "on_success": on_success}],
            }
        )
        await self.versions.seed(book, "", "test.yaml", self.clock.now())

    async def statuses(self) -> list[str]:
        return [row["status"] for row in reversed(await self.executions.recent(100))]

    async def incident_rows(self) -> list[Any]:
        return await self.db.fetchall("SELECT * FROM incidents ORDER BY opened_at")

    async def evaluations(self) -> list[tuple[int, str]]:
        rows = await self.db.fetchall(
            "SELECT allowed, reason FROM viability_evaluations ORDER BY id"
        )
        return [(row["allowed"], row["reason"]) for row in rows]


@asynccontextmanager
async def open_harness(
    tmp_path: Path, start: datetime | None = None, **options: Any
) -> AsyncIterator[Harness]:
    """A harness on virtual time: its clock driven (from ``start``), its store counted."""
    async with (
        driven(DrivenClock() if start is None else DrivenClock(start)) as clock,
        CountingDatabase(tmp_path / "s.db", clock) as db,
    ):
        harness = Harness(db, clock, **options)
        try:
            yield harness
        finally:
            harness.audit_worker.shutdown()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as h:
        task = asyncio.create_task(h.supervisor.run())
        yield h
        h.supervisor.stop_accepting()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def eventually(
    clock: DrivenClock, check: Callable[[], Awaitable[bool]], timeout: float = 5
) -> None:
    """Wait, on the virtual clock, until ``check`` holds; fail past ``timeout``."""
    deadline = clock.monotonic() + timeout
    while not await check():
        assert clock.monotonic() < deadline, f"not within {timeout} s of virtual time"
        await clock.sleep(0.01)


async def settle(h: Harness, timeout: float = 5) -> None:
    await h.clock.sleep(0.01)
    deadline = h.clock.monotonic() + timeout
    while h.supervisor.recovering:
        assert h.clock.monotonic() < deadline, f"still recovering after {timeout} s"
        await h.clock.sleep(0.01)


async def test_an_unhealthy_component_opens_one_incident_that_its_playbook_resolves(
    harness: Harness,
) -> None:
    await harness.seed()
    harness.healthy_on_probe = True  # the fix works
    harness.monitor.report("mqtt", False, "link lost")
    await harness.clock.sleep(0.005)
    # More bad news while the incident is open starts nothing new.
    harness.monitor.report("mqtt", True, "flap")
    harness.monitor.report("mqtt", False, "lost again")
    assert harness.supervisor.recovering == {"mqtt"}
    await settle(harness)
    assert await harness.statuses() == ["resolved"]
    assert harness.fix.calls == 1
    [incident] = await harness.incident_rows()
    assert (incident["component"], incident["phase"], incident["attempts"]) == (
        "mqtt",
        "resolved",
        1,
    )
    assert incident["closed_at"] is not None
    [failure] = await harness.db.fetchall("SELECT * FROM failures")
    assert (failure["error_id"], failure["message"]) == ("ERR-INFRA-MQTT-001", "link lost")
    [execution] = await harness.executions.recent(1)
    assert execution["incident_id"] == incident["id"]
    assert await harness.evaluations() == [(1, "within_budget")]
    phases = [i["phase"] for i in harness.observer.incidents]
    assert phases == ["detected", "executing", "resolved"]


async def test_a_run_starts_only_once_its_failure_incident_verdict_and_phase_are_written(
    harness: Harness,
) -> None:
    """Decided first, written in one go: nothing runs before its records are in the store."""
    seen: dict[str, Any] = {}

    async def look(ctx: StepContext) -> StepResult:
        db = harness.db
        seen["failures"] = len(await db.fetchall("SELECT id FROM failures"))
        seen["incidents"] = [r["phase"] for r in await db.fetchall("SELECT phase FROM incidents")]
        seen["evaluations"] = await harness.evaluations()
        seen["executions"] = await harness.statuses()
        return StepResult.ok("fixed")

    harness.fix.answers = [look]
    await harness.seed()
    harness.healthy_on_probe = True
    harness.monitor.report("mqtt", False, "link lost")
    await settle(harness)
    assert seen == {
        "failures": 1,
        "incidents": ["executing"],
        "evaluations": [(1, "within_budget")],
        "executions": ["running"],
    }


async def test_an_allowed_recovery_writes_its_first_rows_in_one_commit(tmp_path: Path) -> None:
    """The failure, the incident, the verdict and the phase: one commit before the run
    (the store's group commit), then the execution's own rows."""
    async with open_harness(tmp_path) as h:
        await h.seed()
        h.healthy_on_probe = True
        batches: list[list[str]] = []
        flush = h.db._flush

        async def counted(batch: list[Any]) -> None:
            batches.append(
                [
                    " ".join(re.findall(r"^(\w+) (?:INTO )?(\w+)", sql)[0])
                    for w in batch
                    for sql, _ in w.statements
                ]
            )
            await flush(batch)

        h.db._flush = counted  # type: ignore[method-assign]
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("mqtt", False, "link lost")
            await settle(h)
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert batches[0] == [
            "INSERT failures",
            "INSERT incidents",
            "INSERT viability_evaluations",
            "UPDATE incidents",
        ]
        assert await h.statuses() == ["resolved"]


async def test_a_failure_gone_within_its_grace_window_opens_no_incident(tmp_path: Path) -> None:
    async with open_harness(tmp_path, grace_s=0.1) as h:
        await h.seed()
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.healthy_on_probe = True
            h.monitor.report("mqtt", False, "blip")
            await settle(h)
            assert await h.statuses() == []
            assert await h.incident_rows() == []
            assert h.supervisor.transients == 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_run_resolved_on_paper_but_still_unhealthy_is_no_success(harness: Harness) -> None:
    await harness.seed(max_attempts=2)
    harness.monitor.report("mqtt", False, "down")  # the probe keeps saying unhealthy

    async def held() -> bool:
        return (0, "attempt_budget") in await harness.evaluations()

    await eventually(harness.clock, held)
    assert await harness.statuses() == ["resolved", "resolved"]
    assert (0, "attempt_budget") in await harness.evaluations()
    [incident] = await harness.incident_rows()
    assert incident["phase"] == "escalated"
    assert "automatic recovery held: 2 attempts" in incident["detail"]


async def test_the_same_failure_twice_opens_the_breaker_then_a_trial_follows(
    harness: Harness,
) -> None:
    await harness.seed(max_attempts=5)
    harness.fix.answers = [False]  # the fix fails every time, the same way
    harness.monitor.report("mqtt", False, "down")

    async def breaker_open() -> bool:
        if harness.policy.breaker("mqtt").value != "open":
            return False
        incidents = await harness.incident_rows()
        return bool(incidents) and "the same failure twice" in incidents[0]["detail"]

    await eventually(harness.clock, breaker_open)
    assert await harness.statuses() == ["escalated", "escalated"]
    messages = [m for _, m in harness.observer.alerts]
    # One page per incident until someone acknowledges it; the incident shows the latest why.
    assert len(messages) == 1
    assert messages[0].startswith("PLAY-MQTT-RECOVER-001 escalated for mqtt")
    [incident] = await harness.incident_rows()
    assert "the same failure twice: fix/failure at fix (ERR-INFRA-MQTT-001)" in incident["detail"]
    assert harness.policy.breaker("mqtt").value == "open"

    # After the cooldown, one trial attempt; it fails too, and the breaker reopens for longer.
    async def trial_failed() -> bool:
        return len(await harness.statuses()) == 3 and harness.policy.reopens_in("mqtt") > 0

    await eventually(harness.clock, trial_failed)
    assert await harness.statuses() == ["escalated", "escalated", "escalated"]
    assert (1, "trial_attempt") in await harness.evaluations()
    assert harness.policy.reopens_in("mqtt") > 0.3


async def test_an_escalated_incident_closes_when_someone_else_fixes_it_and_rearms(
    harness: Harness,
) -> None:
    await harness.seed(on_success="escalate", max_attempts=1)
    harness.monitor.report("mqtt", False, "down")

    async def held() -> bool:
        return len(await harness.evaluations()) == 2

    await eventually(harness.clock, held)
    [incident] = await harness.incident_rows()
    assert incident["phase"] == "escalated"
    assert harness.supervisor.recovering == {"mqtt"}  # waiting, not retrying

    harness.monitor.report("mqtt", True, "a technician fixed it")
    await settle(harness)
    [incident] = await harness.incident_rows()
    assert incident["closed_at"] is not None
    assert incident["detail"] == "healthy again without an execution of ours"

    await harness.clock.sleep(0.35)  # healthy past rearm_after_s
    harness.monitor.report("mqtt", False, "down again")

    async def held_again() -> bool:
        return len(await harness.evaluations()) == 4

    await eventually(harness.clock, held_again)
    assert len(await harness.statuses()) == 2
    assert await harness.evaluations() == [
        (1, "within_budget"),
        (0, "attempt_budget"),
        (1, "within_budget"),  # re-armed: the budget is whole again
        (0, "attempt_budget"),
    ]


async def test_a_failure_without_a_playbook_is_escalated_not_a_crash(harness: Harness) -> None:
    harness.monitor.report("mqtt", False, "down")
    await harness.clock.sleep(0.05)
    assert await harness.statuses() == []
    [(severity, message)] = harness.observer.alerts
    assert (severity, message) == (
        "critical",
        "no active playbook handles ERR-INFRA-MQTT-001 on mqtt",
    )
    [incident] = await harness.incident_rows()
    assert incident["phase"] == "escalated"


async def test_the_termination_rate_gate_holds_recovery_and_records_why(harness: Harness) -> None:
    await harness.seed()
    for _ in range(10):
        harness.policy.execution_finished("failed")
    harness.monitor.report("mqtt", False, "down")
    await harness.clock.sleep(0.05)
    assert await harness.statuses() == []
    assert await harness.evaluations() == [(0, "termination_rate")]
    [verdict] = harness.observer.verdicts
    assert verdict.termination_rate == 1.0
    [incident] = await harness.incident_rows()
    assert incident["phase"] == "escalated"
    assert "termination rate 100%" in incident["detail"]


async def test_under_a_closed_termination_gate_the_essential_broker_still_recovers_at_once(
    tmp_path: Path,
) -> None:
    """Issue 13: false failures closed the gate and a real broker crash then stayed
    down 44 minutes. The broker is essential: it gets the breaker's trial cadence."""
    settings = PolicyConfig(essentials=("mqtt",), open_cooldown_s=120)
    async with open_harness(tmp_path, settings=settings, extra=bridge()) as h:
        await h.seed()
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001")
        h.healthy_on_probe = True
        for _ in range(10):
            h.policy.execution_finished("failed")
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("bridge-knx", False, "heartbeat missing")
            h.monitor.report("mqtt", False, "broker killed")
            await h.clock.sleep(1)
            assert await h.statuses() == ["resolved"]  # the broker, within a second
            rows = await h.db.fetchall(
                "SELECT component, allowed, reason FROM viability_evaluations ORDER BY id"
            )
            seen = {(r["component"], r["allowed"], r["reason"]) for r in rows}
            assert ("mqtt", 1, "essential_trial") in seen
            assert ("bridge-knx", 0, "termination_rate") in seen  # others stay held
            assert "bridge-knx" in h.supervisor.recovering
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_runs_the_supervisor_could_not_carry_out_do_not_count_toward_the_gate(
    harness: Harness,
) -> None:
    await harness.seed(max_attempts=20)
    harness.fix.answers = [OSError(24, "Too many open files")]  # the step cannot even run
    harness.monitor.report("mqtt", False, "down")

    async def several() -> bool:
        return len(await harness.statuses()) >= 3

    await eventually(harness.clock, several)
    assert set(await harness.statuses()) == {"escalated"}
    reading = harness.policy.termination()
    assert (reading.finished, reading.terminated) == (0, 0)


async def test_a_broker_that_dies_after_every_restart_raises_one_escalation_updated(
    tmp_path: Path,
) -> None:
    """Issue 13: 97 escalations for 100 kills; now one, with its count of incidents."""
    settings = FAST.model_copy(update={"flap_changes": 1000})  # flapping is not under test
    async with open_harness(tmp_path, settings=settings) as h:
        await h.seed()
        h.healthy_on_probe = True  # every restart works, for a moment
        task = asyncio.create_task(h.supervisor.run())
        try:
            for _ in range(12):
                h.monitor.report("mqtt", False, "broker killed")
                await settle(h)
                await h.clock.sleep(0.05)  # dies again well before it could re-arm
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await h.statuses() == ["resolved"] * 12  # each brought back, at its cadence
        [escalation] = await h.db.fetchall("SELECT * FROM escalations")
        later = [i["id"] for i in await h.incident_rows() if i["id"] != escalation["incident_id"]]
        assert escalation["occurrences"] >= 4  # every held incident after the budget ran out
        assert escalation["last_incident_id"] in later
        assert escalation["last_detail"].startswith("automatic recovery held")
        assert len(h.observer.alerts) == 1  # one page


async def test_after_stop_accepting_new_failures_start_nothing(harness: Harness) -> None:
    await harness.seed()
    harness.supervisor.stop_accepting()
    harness.monitor.report("mqtt", False, "down")
    await harness.clock.sleep(0.05)
    assert harness.supervisor.recovering == frozenset()
    assert await harness.supervisor.wait_idle(0.1)


async def test_a_bridge_that_fails_with_the_broker_is_a_symptom_not_an_incident(
    tmp_path: Path,
) -> None:
    bridge = BridgeComponent(
        kind="bridge",
        error_id="ERR-BRIDGE-HEARTBEAT-001",
        depends_on=["mqtt"],
        heartbeat_window_s=0.2,
    )
    async with open_harness(tmp_path, extra={"bridge-knx": bridge}) as h:
        await h.seed()
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001")
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.probe_health = {"mqtt": False, "bridge-knx": False}
            h.fix.answers = [0.1]  # the broker's fix takes a moment
            h.monitor.report("mqtt", False, "broker killed")
            h.monitor.report("bridge-knx", False, "heartbeat missing")
            await h.clock.sleep(0.02)
            assert h.supervisor.recovering == {"mqtt"}
            [symptom] = await h.db.fetchall("SELECT * FROM failures WHERE symptom_of IS NOT NULL")
            assert (symptom["component"], symptom["symptom_of"]) == ("bridge-knx", "mqtt")
            assert symptom["message"] == "symptom of mqtt: heartbeat missing"

            # The broker comes back; the bridge gets its heartbeat window before anything runs.
            h.probe_health["mqtt"] = True
            await h.clock.sleep(0.15)
            h.monitor.report("mqtt", True, "recovered")
            await h.clock.sleep(0.05)
            assert [r["component"] for r in await h.incident_rows()] == ["mqtt"]

            # Its heartbeats never return: after the window it is a failure of its own,
            # which its own playbook fixes.
            async def restart_bridge(ctx: StepContext) -> StepResult:
                h.probe_health["bridge-knx"] = True
                return StepResult.ok("bridge restarted")

            h.fix.answers = [restart_bridge]
            await settle(h)
            assert await h.statuses() == ["resolved", "resolved"]
            components = [r["component"] for r in await h.incident_rows()]
            assert components == ["mqtt", "bridge-knx"]
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_bridge_whose_heartbeat_returns_with_the_broker_is_never_recovered(
    tmp_path: Path,
) -> None:
    bridge = BridgeComponent(
        kind="bridge", error_id="ERR-BRIDGE-HEARTBEAT-001", depends_on=["mqtt"]
    )
    async with open_harness(tmp_path, extra={"bridge-knx": bridge}) as h:
        await h.seed()
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001")
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.probe_health = {"mqtt": True, "bridge-knx": True}  # the fix works for both
            h.monitor.report("mqtt", False, "broker killed")
            h.monitor.report("bridge-knx", False, "heartbeat missing")
            await h.clock.sleep(0.05)
            h.monitor.report("bridge-knx", True, "heartbeat")
            h.monitor.report("mqtt", True, "recovered")
            await settle(h)
            assert [r["component"] for r in await h.incident_rows()] == ["mqtt"]
            assert await h.statuses() == ["resolved"]
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_maintenance_window_holds_recovery_and_ends_on_its_own(harness: Harness) -> None:
    await harness.seed()
    harness.healthy_on_probe = True
    now = harness.clock.now()
    # a window well past the first look (0.1 s), short of the next maintenance check
    await harness.controls.start_maintenance(
        "mqtt", 2.0, "replacing the switch", by="alice", now=now
    )
    harness.monitor.report("mqtt", False, "down")
    await harness.clock.sleep(0.1)
    assert await harness.statuses() == []
    [failure] = await harness.db.fetchall("SELECT * FROM failures")
    assert failure["expected"] == 1
    assert failure["message"].startswith("expected (maintenance mw-")
    # The window runs out: at the next check, the failure still there is handled.
    await harness.clock.sleep(MAINTENANCE_CHECK_S + 2)
    assert await harness.statuses() == ["resolved"]
    actions = [row["action"] for row in reversed(await harness.audit.entries())]
    assert actions == ["maintenance.start", "maintenance.end"]
    assert (await harness.audit.verify()).ok


async def test_a_site_wide_window_started_mid_incident_holds_it(harness: Harness) -> None:
    await harness.seed(max_attempts=5)
    harness.fix.answers = [False, True]
    now = harness.clock.now()
    harness.monitor.report("mqtt", False, "down")

    async def under_way() -> bool:
        return bool(await harness.evaluations())

    await eventually(harness.clock, under_way)  # the incident is open and its first run allowed
    await harness.controls.start_maintenance("*", 60, "site works", by="bob", now=now)

    async def held() -> bool:
        return len(await harness.evaluations()) == 2

    await eventually(harness.clock, held)
    await harness.clock.sleep(0.3)  # the hold lasts: nothing more is tried or recorded
    assert await harness.statuses() == ["escalated"]
    reasons = [reason for _, reason in await harness.evaluations()]
    assert reasons == ["within_budget", "maintenance"]  # recorded once while it lasts


def bridge(name: str = "bridge-knx", **options: Any) -> dict[str, ComponentConfig]:
    return {
        name: BridgeComponent(
            kind="bridge", error_id="ERR-BRIDGE-HEARTBEAT-001", heartbeat_window_s=0.2, **options
        )
    }


async def test_failures_of_distinct_components_enter_safe_mode_which_holds_non_essentials(
    tmp_path: Path,
) -> None:
    settings = PolicyConfig(safe_mode_failures=2, safe_mode_window_s=60)
    async with open_harness(tmp_path, settings=settings, extra=bridge()) as h:
        await h.seed()
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001")
        h.healthy_on_probe = True
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("mqtt", False, "down")  # component 1: a normal incident
            await settle(h)
            h.monitor.report("mqtt", False, "down again")  # the same one again: no safe mode
            await settle(h)
            assert not (await h.controls.safe_mode()).active
            assert await h.statuses() == ["resolved", "resolved"]
            h.monitor.report("bridge-knx", False, "heartbeat missing")  # component 2: safe mode
            await h.clock.sleep(0.1)
            safe = await h.controls.safe_mode()
            assert (safe.active, safe.changed_by) == (True, "supervisor")
            assert any(
                m.startswith("safe mode: 2 components failed within 60 s")
                for _, m in h.observer.alerts
            )
            assert (0, "safe_mode") in await h.evaluations()
            assert await h.statuses() == ["resolved", "resolved"]
            # Leaving is a person's act; then recovery resumes.
            await h.controls.set_safe_mode(
                False, "checked the power supply", "alice", h.clock.now()
            )
            await settle(h)
            assert await h.statuses() == ["resolved", "resolved", "resolved"]
            actions = [row["action"] for row in reversed(await h.audit.entries())]
            assert [a for a in actions if a.startswith("safe_mode")] == [
                "safe_mode.enter",
                "safe_mode.leave",
            ]
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_one_bridge_failing_again_and_again_never_puts_the_site_in_safe_mode(
    tmp_path: Path,
) -> None:
    """Five offline heartbeats of one bridge (anyone on the broker can send them)."""
    settings = PolicyConfig(safe_mode_failures=5, safe_mode_window_s=60, flap_changes=100)
    async with open_harness(tmp_path, settings=settings, extra=bridge()) as h:
        await h.seed(component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001", max_attempts=20)
        h.healthy_on_probe = True
        task = asyncio.create_task(h.supervisor.run())
        try:
            for _ in range(8):
                h.monitor.report("bridge-knx", False, "offline heartbeat")
                await settle(h)
                h.monitor.report("bridge-knx", True, "online heartbeat")
            await settle(h)
            assert len(await h.incident_rows()) == 8
            assert not (await h.controls.safe_mode()).active
            assert "safe_mode" not in [reason for _, reason in await h.evaluations()]
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_essentials_still_recover_in_safe_mode(tmp_path: Path) -> None:
    settings = PolicyConfig(essentials=("mqtt",))
    async with open_harness(tmp_path, settings=settings) as h:
        await h.seed()
        await h.controls.set_safe_mode(True, "test", "alice", h.clock.now())
        h.healthy_on_probe = True
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("mqtt", False, "down")
            await settle(h)
            assert await h.statuses() == ["resolved"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_flapping_component_is_held_to_settle(tmp_path: Path) -> None:
    settings = PolicyConfig(flap_changes=4, flap_window_s=10, stabilisation_s=0.3)
    async with open_harness(tmp_path, settings=settings) as h:
        await h.seed()
        task = asyncio.create_task(h.supervisor.run())
        try:
            for _ in range(2):
                h.monitor.report("mqtt", False, "dip")
                h.monitor.report("mqtt", True, "up")
            h.healthy_on_probe = True
            h.monitor.report("mqtt", False, "dip again")
            await h.clock.sleep(0.1)
            assert await h.statuses() == []
            assert (0, "flapping") in await h.evaluations()
            await settle(h)
            assert await h.statuses() == ["resolved"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_an_essential_that_flaps_is_not_held_its_budget_bounds_it(tmp_path: Path) -> None:
    settings = PolicyConfig(
        flap_changes=4, flap_window_s=10, stabilisation_s=30, essentials=("mqtt",)
    )
    async with open_harness(tmp_path, settings=settings) as h:
        await h.seed()
        task = asyncio.create_task(h.supervisor.run())
        try:
            for _ in range(2):
                h.monitor.report("mqtt", False, "killed")
                h.monitor.report("mqtt", True, "up")
            h.healthy_on_probe = True
            h.monitor.report("mqtt", False, "killed again")
            await settle(h, timeout=1)  # not 30 s of stabilisation
            assert await h.statuses() == ["resolved"]
            assert (0, "flapping") not in await h.evaluations()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_critical_pattern_goes_to_a_human_at_once(tmp_path: Path) -> None:
    settings = PolicyConfig(
        critical_patterns=[
            CriticalPattern(
                error_id="ERR-INFRA-MQTT-001",
                message="(?i)certificate",
                reason="TLS trust is a human call",
            )
        ]
    )
    async with open_harness(tmp_path, settings=settings) as h:
        await h.seed()
        task = asyncio.create_task(h.supervisor.run())
        try:
            h.monitor.report("mqtt", False, "Certificate verify failed")
            await h.clock.sleep(0.1)
            assert await h.statuses() == []
            assert await h.evaluations() == [(0, "critical_pattern")]
            [(_, message)] = h.observer.alerts
            assert message == "automatic recovery held: critical failure: TLS trust is a human call"
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_an_acknowledged_escalation_left_from_before_a_restart_closes_once_healthy(
    harness: Harness,
) -> None:
    """Start-up keeps acknowledged escalations (someone is on it); a component then seen
    healthy, with no incident of ours, has nothing left to escalate: it must not stay
    'acknowledged' on the page for ever."""
    now = harness.clock.now()
    for component in ("mqtt", "bridge"):
        await harness.executions.record_failure(
            f"fail-{component}", component, "ERR-X", "high", message="x", detected_at=now
        )
        await harness.incidents.open(
            f"inc-{component}", component, "ERR-X", f"fail-{component}", detail="x", now=now
        )
    repo = EscalationRepository(harness.db, harness.audit)
    kept = await repo.raise_("inc-mqtt", "mqtt", "high", "broker down", now=now)
    assert await repo.acknowledge(kept, "alice", harness.clock.now())
    other = await repo.raise_("inc-bridge", "bridge", "high", "bus down", now=now)
    assert await repo.acknowledge(other, "bob", harness.clock.now())

    harness.monitor.report("mqtt", True, "first check after the restart")

    async def closed() -> bool:
        row = await repo.get(kept)
        return row is not None and row["closed_at"] is not None

    await eventually(harness.clock, closed)
    still = await repo.get(other)  # another component's escalation is untouched
    assert still is not None and still["closed_at"] is None
    assert await harness.statuses() == []  # nothing was run for a healthy component
