"""One step of a run: its attempts and retries, and the rows of steps that do not run.

A step's target and params are filled in (``{…}`` placeholders) and validated once;
each attempt is a row of its own (``Run.step``), its action called under the step's
timeout cut to the playbook's deadline, its outcome judged by ``success_when:``, and
its row says where the run went next. A step whose ``when:`` does not hold, or whose
needs did not succeed, is skipped on the record; one that cannot be filled in is an
error on the record.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import Action, StepContext, StepResult
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.execution import Attempt, Ending, retry_pause
from graylogic_supervisor.engine.run import Run, StepRow
from graylogic_supervisor.playbooks.expression_context import (
    ExpressionContext,
    ResourceFigures,
    StepRecord,
    expression_context,
)
from graylogic_supervisor.playbooks.expressions import ExpressionError
from graylogic_supervisor.playbooks.model import Step, skip_target
from graylogic_supervisor.playbooks.templates import compile_template
from graylogic_supervisor.store.executions import StepEnd


@dataclass(frozen=True)
class _Call:
    """One attempt's call of its action: filled-in target and params, number, timeout."""

    target: str | None
    params: BaseModel
    number: int  # the attempt's number within its step, from 1
    timeout_s: float
    cut_by_deadline: bool  # the playbook's deadline, not the step's own timeout, set it


class StepRunner:
    def __init__(
        self,
        clock: Clock,
        caller: ActionCaller,
        *,
        rng: random.Random,
        resources: Callable[[], ResourceFigures] | None = None,
    ) -> None:
        """``resources`` reads the host's figures for conditions that use ``resources.…``."""
        self._clock = clock
        self._caller = caller
        self._rng = rng
        self._resources = resources

    async def run_step(
        self, run: Run, step: Step, action: Action, *, join_of: str | None = None
    ) -> Attempt:
        """Run a step and its retries; returns what it came to.

        ``join_of`` names the group when the step is one of its branches.
        """
        clock = self._clock
        attempts = step.retry.attempts if step.retry else 1
        try:
            target, raw_params = self._render(run, step)
            params = action.params_model.model_validate(raw_params)
        except (ExpressionError, ValidationError) as exc:
            return await self._refuse(run, step, exc, join_of=join_of)
        attempt = Attempt(StepOutcome.FAILURE, None)
        for number in range(1, attempts + 1):
            if number > 1:
                pause = retry_pause(step.retry, number - 1, self._rng) if step.retry else 0.0
                if clock.monotonic() + pause >= run.deadline:
                    return Attempt(Ending.DEADLINE, attempt.result)
                if pause > 0:
                    await run.flush()  # the failed attempt's end is written before the pause
                await clock.sleep(pause)
            remaining = run.deadline - clock.monotonic()
            if remaining <= 0:
                return Attempt(Ending.DEADLINE, attempt.result)
            timeout = min(step.timeout_seconds, remaining)
            call = _Call(target, params, number, timeout, timeout < step.timeout_seconds)
            attempt = await self._attempt(run, step, action, call, join_of=join_of)
            if attempt.succeeded:
                return attempt
            if attempt.outcome is StepOutcome.TIMEOUT and call.cut_by_deadline:
                return Attempt(Ending.DEADLINE, attempt.result)
        return attempt

    async def _attempt(
        self, run: Run, step: Step, action: Action, call: _Call, *, join_of: str | None
    ) -> Attempt:
        """One attempt of a step: its row, its action under its timeout, its judgement."""
        clock = self._clock
        async with run.step(
            StepRow.of(step, target=call.target, attempt=call.number), observed=step
        ) as recording:
            ctx = StepContext(
                execution_id=run.execution_id,
                playbook_id=run.playbook.id,
                step_id=step.id,
                target=call.target,
                params=call.params,
                failure=run.failure,
                clock=clock,
                deadline=clock.monotonic() + call.timeout_s,
            )
            outcome, result, error = await self._caller.call(ctx, action, call.timeout_s)
            if result is not None and step.success_when is not None:
                duration = clock.monotonic() - recording.began
                outcome, error = self._judge(
                    run, step, result, duration=duration, number=call.number
                )
            run.state.records[step.id] = StepRecord(
                outcome=outcome,
                output=dict(result.output) if result is not None else {},
                result=result.result if result is not None else (error or ""),
                duration_s=clock.monotonic() - recording.began,
                attempts=call.number,
            )
            recording.ends(
                StepEnd(
                    outcome=outcome,
                    result=result.result if result is not None else None,
                    output=result.output if result is not None else {},
                    error=error,
                    transitioned_to=self._transition(run, step, outcome, call, join_of=join_of),
                )
            )
        return Attempt(outcome, result)

    @staticmethod
    def _transition(
        run: Run, step: Step, outcome: StepOutcome, call: _Call, *, join_of: str | None
    ) -> str | None:
        """Where an attempt's row says the run went next."""
        succeeded = outcome is StepOutcome.SUCCESS
        if outcome is StepOutcome.TIMEOUT and call.cut_by_deadline:
            return "failed"  # the playbook's own deadline ended it
        if not succeeded and step.retry is not None and call.number < step.retry.attempts:
            return f"retry:{step.id}"
        if join_of is not None:
            return f"join:{join_of}"
        if run.uses_needs:
            return None  # what needs this step follows from the graph
        return run.next_after(step, succeeded=succeeded)

    def context(self, run: Run) -> ExpressionContext:
        """What conditions and templates see; ``params`` are the playbook's parameters."""
        return expression_context(
            failure=run.failure,
            steps=run.state.records,
            params=run.state.parameters,
            now=self._clock.now().astimezone(),
            resources=self._resources() if self._resources is not None else None,
        )

    async def holds(self, run: Run, step: Step) -> bool:
        """Whether a step's ``when:`` holds; a skipped step gets its row all the same."""
        assert step.when is not None
        try:
            holds = step.when.test(self.context(run))
        except ExpressionError as exc:
            detail, holds = f"condition could not be evaluated, step skipped: {exc}", False
        else:
            detail = f"skipped: {step.when.text} is false"
        if not holds:
            await self.skip(run, step, detail, transition=skip_target(run.playbook, step))
        return holds

    async def skip(self, run: Run, step: Step, why: str, *, transition: str | None) -> None:
        async with run.step(StepRow.of(step), instant=True) as recording:
            recording.ends(StepEnd(StepOutcome.SKIPPED, why, {}, None, transition))
        run.state.records[step.id] = StepRecord(StepOutcome.SKIPPED, {}, why, 0.0, 0)

    def _render(self, run: Run, step: Step) -> tuple[str | None, dict[str, Any]]:
        """The step's target and params with their ``{…}`` placeholders filled in."""
        templated = [k for k, v in step.params.items() if isinstance(v, str) and "{" in v]
        if not templated and not (step.target and "{" in step.target):
            return step.target, dict(step.params)
        ctx = self.context(run)
        target = compile_template(step.target).render(ctx) if step.target else None
        params = dict(step.params)
        for key in templated:
            params[key] = compile_template(params[key]).render(ctx)
        return target, params

    async def _refuse(
        self, run: Run, step: Step, exc: Exception, *, join_of: str | None
    ) -> Attempt:
        """A step whose target or params cannot be filled in is an error, on the record."""
        error = f"cannot fill in the step: {exc}".replace("\n", " ")[:500]
        transition = f"join:{join_of}" if join_of else run.next_after(step, succeeded=False)
        async with run.step(StepRow.of(step), instant=True) as recording:
            recording.ends(StepEnd(StepOutcome.ERROR, None, {}, error, transition))
        run.state.records[step.id] = StepRecord(StepOutcome.ERROR, {}, error, 0.0, 1)
        return Attempt(StepOutcome.ERROR, None)

    def _judge(
        self, run: Run, step: Step, result: StepResult, *, duration: float, number: int
    ) -> tuple[StepOutcome, str | None]:
        """``success_when:`` decides the outcome from the result (seen as ``steps.<own id>``)."""
        assert step.success_when is not None
        run.state.records[step.id] = StepRecord(
            StepOutcome.SUCCESS if result.success else StepOutcome.FAILURE,
            dict(result.output),
            result.result,
            duration,
            number,
        )
        try:
            if step.success_when.test(self.context(run)):
                return StepOutcome.SUCCESS, None
        except ExpressionError as exc:
            return StepOutcome.ERROR, str(exc)
        return StepOutcome.FAILURE, f"{step.success_when.text} is false ({result.result})"
