"""Actions that tell people or wait: log, alert and sleep."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult

logger = logging.getLogger(__name__)


class AlertSink(Protocol):
    """Where alerts go (the MQTT alert topic); must not block."""

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None: ...


class LogParams(ActionParams):
    message: str = Field(min_length=1)
    level: Literal["info", "warning", "error"] = "info"


class Log:
    name: ClassVar[str] = "log"
    kind: ClassVar[ActionKind] = ActionKind.NOTIFY
    params_model: ClassVar[type[BaseModel]] = LogParams
    needs_target: ClassVar[bool] = False

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, LogParams)
        logger.log(
            logging.getLevelName(params.level.upper()),
            "%s",
            params.message,
            extra={"playbook": ctx.playbook_id, "error_id": ctx.failure.error_id},
        )
        return StepResult.ok(f"logged: {params.message}")


class AlertParams(ActionParams):
    message: str = Field(min_length=1)
    severity: Literal["critical", "high", "medium", "low"] = "high"


class Alert:
    """Publishes on the alert topic (queued while the broker is down)."""

    name: ClassVar[str] = "alert"
    kind: ClassVar[ActionKind] = ActionKind.NOTIFY
    params_model: ClassVar[type[BaseModel]] = AlertParams
    needs_target: ClassVar[bool] = False

    def __init__(self, sink: AlertSink) -> None:
        self._sink = sink

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, AlertParams)
        self._sink.alert(
            params.severity,
            params.message,
            {
                "execution_id": ctx.execution_id,
                "playbook": ctx.playbook_id,
                "component": ctx.failure.component,
                "error_id": ctx.failure.error_id,
            },
        )
        return StepResult.ok(f"alert sent ({params.severity}): {params.message}")


class SleepParams(ActionParams):
    seconds: float = Field(gt=0, le=3600)


class Sleep:
    """Waits, e.g. to let a bus settle before the next check."""

    name: ClassVar[str] = "sleep"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = SleepParams
    needs_target: ClassVar[bool] = False

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, SleepParams)
        await ctx.clock.sleep(params.seconds)
        return StepResult.ok(f"waited {params.seconds:g} s")
