"""From health changes to recoveries.

A component that turns unhealthy, and stays so past its grace window, becomes a
failure with its catalog error id. The failure selects the component's active
playbook, which runs and is recorded. One component is never recovered twice at
once. After an unsuccessful execution the playbook's cooldown passes before the
next attempt, and after ``max_attempts`` the supervisor stops and waits for a
human or for the component to recover by itself (which re-arms it).
"""

from __future__ import annotations

import asyncio
import logging

from graylogic_supervisor.catalog import ErrorCatalog
from graylogic_supervisor.clock import Clock
from graylogic_supervisor.engine.action import FailureInfo
from graylogic_supervisor.engine.builtins.notify import AlertSink
from graylogic_supervisor.engine.runner import ExecutionOutcome, Runner
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.versions import PlaybookVersions

logger = logging.getLogger(__name__)


class Supervisor:
    def __init__(
        self,
        monitor: HealthMonitor,
        versions: PlaybookVersions,
        executions: ExecutionRepository,
        runner: Runner,
        catalog: ErrorCatalog,
        alerts: AlertSink,
        clock: Clock,
    ) -> None:
        self._monitor = monitor
        self._versions = versions
        self._executions = executions
        self._runner = runner
        self._catalog = catalog
        self._alerts = alerts
        self._clock = clock
        self._active: set[str] = set()
        self._accepting = True
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def recovering(self) -> frozenset[str]:
        return frozenset(self._active)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                change = await self._monitor.changes.get()
                component = change.current.component
                if change.current.health is not Health.UNHEALTHY or not self._accepting:
                    continue
                if component in self._active:
                    logger.debug("%s already in recovery; not triggered again", component)
                    continue
                self._active.add(component)
                self._idle.clear()
                group.create_task(self._recover(component), name=f"recover:{component}")

    def stop_accepting(self) -> None:
        """No new recoveries from now on (shutdown has begun)."""
        self._accepting = False

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait for in-flight recoveries; False if some are still running at the timeout."""
        try:
            await self._clock.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _recover(self, component: str) -> None:
        try:
            await self._recover_until_settled(component)
        finally:
            self._active.discard(component)
            if not self._active:
                self._idle.set()

    async def _recover_until_settled(self, component: str) -> None:
        config = self._monitor.components[component]
        attempts = 0
        while self._accepting:
            if config.grace_s > 0:
                await self._clock.sleep(config.grace_s)
                await self._monitor.probe(component)
            state = self._monitor.state(component)
            if state.health is not Health.UNHEALTHY:
                if attempts == 0:
                    logger.info("%s recovered within its grace window: transient", component)
                return
            playbook = await self._select_playbook(component, state.error_id)
            if playbook is None:
                message = f"no active playbook handles {state.error_id} on {component}"
                logger.error(message, extra={"error_id": state.error_id})
                self._alerts.alert(
                    "critical", message, {"component": component, "error_id": state.error_id}
                )
                return
            attempts += 1
            outcome = await self._run_once(component, state.error_id, state.detail, playbook)
            if outcome.status == "resolved":
                if self._monitor.state(component).health is not Health.UNHEALTHY:
                    return
                logger.warning("%s unhealthy again right after %s", component, outcome.execution_id)
            else:
                self._alerts.alert(
                    self._catalog.entry(state.error_id).severity,
                    f"{playbook.id} {outcome.status} for {component}: {outcome.detail}",
                    {
                        "component": component,
                        "error_id": state.error_id,
                        "playbook": playbook.id,
                        "execution_id": outcome.execution_id,
                    },
                )
            if attempts >= playbook.limits.max_attempts:
                logger.error(
                    "%s: %d attempts of %s did not recover it; waiting for a human",
                    component,
                    attempts,
                    playbook.id,
                    extra={"playbook": playbook.id, "error_id": state.error_id},
                )
                return
            await self._clock.sleep(playbook.limits.cooldown_seconds)

    async def _run_once(
        self, component: str, error_id: str, message: str, playbook: Playbook
    ) -> ExecutionOutcome:
        now = self._clock.now()
        failure = FailureInfo(new_id("fail", now), component, error_id, message)
        await self._executions.record_failure(
            failure.failure_id,
            component,
            error_id,
            self._catalog.entry(error_id).severity,
            message,
            now,
        )
        return await self._runner.run(playbook, failure)

    async def _select_playbook(self, component: str, error_id: str) -> Playbook | None:
        candidates = [
            p
            for p in await self._versions.active_playbooks()
            if p.trigger.component == component and error_id in p.trigger.error_ids
        ]
        preferred = self._catalog.entry(error_id).playbook
        for playbook in candidates:
            if playbook.id == preferred:
                return playbook
        return candidates[0] if candidates else None
