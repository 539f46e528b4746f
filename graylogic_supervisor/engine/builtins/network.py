"""Network checks: a TCP connect, and a full MQTT round trip."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, NoParams, StepContext, StepResult
from graylogic_supervisor.impairment import CouldNotTell
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from graylogic_supervisor.services.manager import port_accepts


class PortParams(ActionParams):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class CheckPort:
    """Succeeds when host:port accepts a TCP connection."""

    name: ClassVar[str] = "check_port"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = PortParams
    needs_target: ClassVar[bool] = False

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, PortParams)
        budget = max(ctx.deadline - ctx.clock.monotonic(), 0.01)
        if await port_accepts(params.host, params.port, timeout_s=budget):
            return StepResult.ok(f"port {params.port} open", host=params.host, port=params.port)
        return StepResult.failed(
            f"port {params.port} on {params.host} not accepting", host=params.host, port=params.port
        )


# Between tries of a round trip that could not tell (our side failed): short, since
# such a spell (a burst of work on the loop, fds briefly gone) usually passes quickly.
COULD_NOT_TELL_PAUSE_S = 0.1


class CheckMqtt:
    """Connect, publish and receive a probe on the supervised broker; reports latency.

    A round trip that could not tell (no file descriptor, a busy loop) is not
    the broker failing: it is tried again within the step's time, and if it
    never could tell, the step fails saying so (``could_not_tell`` in its output).
    """

    name: ClassVar[str] = "check_mqtt"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = NoParams
    needs_target: ClassVar[bool] = False

    def __init__(self, target: ProbeTarget) -> None:
        self._target = target

    async def run(self, ctx: StepContext) -> StepResult:
        while True:
            budget = max(ctx.deadline - ctx.clock.monotonic(), 0.01)
            try:
                result = await probe_broker(self._target, timeout_s=budget)
            except ProbeError as exc:
                return StepResult.failed(str(exc))
            except CouldNotTell as exc:
                if ctx.deadline - ctx.clock.monotonic() <= COULD_NOT_TELL_PAUSE_S:
                    return StepResult.failed(
                        f"could not tell whether the broker answers: {exc}", could_not_tell=True
                    )
                await ctx.clock.sleep(COULD_NOT_TELL_PAUSE_S)
                continue
            break
        return StepResult.ok(
            f"MQTT round trip {result.round_trip_s * 1000:.1f} ms"
            f" (connect {result.connect_s * 1000:.1f} ms)",
            connect_ms=round(result.connect_s * 1000, 3),
            round_trip_ms=round(result.round_trip_s * 1000, 3),
        )
