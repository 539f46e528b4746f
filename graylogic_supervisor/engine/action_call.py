"""Calling one action: its timeout, a person's override racing it, and its errors as outcomes.

An action's exception never reaches the runner: a ``SupervisorError`` is a
``failure``, anything else a logged ``error``, so a bug in one action fails its
step and never the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import Action, StepContext, StepResult
from graylogic_supervisor.engine.control import ExecutionControls, ExecutionHandle, Override
from graylogic_supervisor.errors import SupervisorError

logger = logging.getLogger(__name__)


class ActionCaller:
    def __init__(self, clock: Clock, controls: ExecutionControls | None) -> None:
        self._clock = clock
        self._controls = controls

    async def call(
        self, ctx: StepContext, action: Action, timeout_s: float
    ) -> tuple[StepOutcome, StepResult | None, str | None]:
        """Run an action: (outcome, its result if it gave one, the error).

        A person's override of this step, if one comes, ends the action at once.
        """
        handle = self._controls.handle(ctx.execution_id) if self._controls else None
        try:
            if handle is None:
                result = await self._clock.wait_for(action.run(ctx), timeout_s)
            else:
                overridden = await self._race_override(ctx, action, timeout_s, handle)
                if isinstance(overridden, Override):
                    text = f"overridden by {overridden.by}: {overridden.reason}"
                    outcome = StepOutcome(overridden.outcome)
                    success = outcome is StepOutcome.SUCCESS
                    return outcome, StepResult(success, text), None if success else text
                result = overridden
        except TimeoutError:
            return StepOutcome.TIMEOUT, None, f"no answer within {timeout_s:g} s"
        except SupervisorError as exc:
            return StepOutcome.FAILURE, None, str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an action's bug must not take the supervisor down
            logger.exception(
                "action %s raised in step %s",
                action.name,
                ctx.step_id,
                extra={"playbook": ctx.playbook_id, "error_id": ctx.failure.error_id},
            )
            return StepOutcome.ERROR, None, f"{type(exc).__name__}: {exc}"
        outcome = StepOutcome.SUCCESS if result.success else StepOutcome.FAILURE
        return outcome, result, result.error

    async def _race_override(
        self, ctx: StepContext, action: Action, timeout_s: float, handle: ExecutionHandle
    ) -> StepResult | Override:
        decision = handle.override_for(ctx.step_id)
        work = asyncio.ensure_future(self._clock.wait_for(action.run(ctx), timeout_s))
        either: set[asyncio.Future[Any]] = {work, decision}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        if decision.done():
            handle.overrides.pop(ctx.step_id, None)  # used: a later visit starts afresh
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            return decision.result()
        handle.overrides.pop(ctx.step_id, None)
        return work.result()
