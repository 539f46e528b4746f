"""Service actions: check, start, restart and stop a configured service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import NoParams, StepContext, StepResult
from graylogic_supervisor.services.manager import ServiceManager


class _ServiceAction:
    params_model: ClassVar[type[BaseModel]] = NoParams
    needs_target: ClassVar[bool] = True

    def __init__(self, services: ServiceManager) -> None:
        self._services = services

    @staticmethod
    def _target(ctx: StepContext) -> str:
        assert ctx.target is not None  # validation guarantees it (needs_target)
        return ctx.target


class CheckService(_ServiceAction):
    """Succeeds when the service is running."""

    name: ClassVar[str] = "check_service"
    kind: ClassVar[ActionKind] = ActionKind.CHECK

    async def run(self, ctx: StepContext) -> StepResult:
        status = await self._services.status(self._target(ctx))
        output = {"running": status.running, "pid": status.pid, "detail": status.detail}
        if status.running:
            return StepResult.ok(f"service {status.name} running (pid {status.pid})", **output)
        return StepResult.failed(f"service {status.name} not running: {status.detail}", **output)


class StartService(_ServiceAction):
    name: ClassVar[str] = "start_service"
    kind: ClassVar[ActionKind] = ActionKind.FIX

    async def run(self, ctx: StepContext) -> StepResult:
        status = await self._services.start(self._target(ctx))
        return StepResult.ok(f"service {status.name} started (pid {status.pid})", pid=status.pid)


class RestartService(_ServiceAction):
    name: ClassVar[str] = "restart_service"
    kind: ClassVar[ActionKind] = ActionKind.FIX

    async def run(self, ctx: StepContext) -> StepResult:
        status = await self._services.restart(self._target(ctx))
        return StepResult.ok(f"service {status.name} restarted (pid {status.pid})", pid=status.pid)


class StopService(_ServiceAction):
    name: ClassVar[str] = "stop_service"
    kind: ClassVar[ActionKind] = ActionKind.FIX

    async def run(self, ctx: StepContext) -> StepResult:
        status = await self._services.stop(self._target(ctx))
        return StepResult.ok(f"service {status.name} stopped: {status.detail}")
