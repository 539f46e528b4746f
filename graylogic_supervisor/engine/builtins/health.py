"""Wait until a component is healthy, probing actively rather than waiting for events."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult
from graylogic_supervisor.health.monitor import HealthMonitor


class WaitParams(ActionParams):
    first_interval_s: float = Field(0.005, gt=0)
    max_interval_s: float = Field(1.0, gt=0)


class WaitForHealth:
    """Probes the target component until it is healthy or the step's time is up.

    A probe that could not tell keeps the component's last health (unhealthy,
    during a recovery), so the wait goes on; the failure says if that was why.
    """

    name: ClassVar[str] = "wait_for_health"
    kind: ClassVar[ActionKind] = ActionKind.VERIFY
    params_model: ClassVar[type[BaseModel]] = WaitParams
    needs_target: ClassVar[bool] = True

    def __init__(self, health: HealthMonitor) -> None:
        self._health = health

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, WaitParams)
        component = ctx.target
        if component is None or component not in self._health.components:
            return StepResult.failed(f"unknown component {component!r}")
        pause = params.first_interval_s
        probes = 0
        while True:
            probes += 1
            healthy, detail = await self._health.probe(component)
            if healthy:
                return StepResult.ok(f"{component} healthy: {detail}", probes=probes)
            remaining = ctx.deadline - ctx.clock.monotonic()
            if remaining <= pause:
                if self._health.blind(component) is not None:  # the last check could not tell
                    return StepResult.failed(
                        f"could not tell whether {component} is healthy: {detail}",
                        probes=probes,
                        could_not_tell=True,
                    )
                return StepResult.failed(f"{component} still unhealthy: {detail}", probes=probes)
            await ctx.clock.sleep(pause)
            pause = min(pause * 2, params.max_interval_s)
