"""A step's context for running one action directly, as the runner would."""

from __future__ import annotations

from pydantic import BaseModel

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import StepContext


def step_context(
    params: BaseModel, clock: Clock, *, target: str | None = None, timeout_s: float = 10
) -> StepContext:
    return StepContext(
        "exec-1",
        "PLAY-DISK-CLEANUP-001",
        "step",
        target,
        params,
        FailureInfo("fail-1", "disk", "ERR-INFRA-DISK-001", "disk nearly full"),
        clock,
        clock.monotonic() + timeout_s,
    )
