"""Runs one playbook version for one failure, recording every step as it happens.

Each attempt of each step is a row written when it starts and updated when it
ends, through ``Run.step`` (``run.py``): one commit per step boundary. The
playbook's deadline bounds every step's timeout. The run ends as
``resolved`` (a transition to ``done``), ``escalated`` (a transition to
``escalate`` or a loop bound reached), ``failed`` (the playbook's deadline
passed) or, when it is cancelled, ``interrupted``.

What one run holds and how its steps are recorded is ``run.py``; what a step
does around its run lives beside this module: calling the action
(``action_call.py``), parallel groups (``parallel.py``) and undoing completed
steps (``compensation.py``). What stays here is the walk itself (by transitions
or by ``needs:``), attempts and retries, conditions and resumption: one state
machine, longer than our usual module, because its parts read best side by side.

A run's writes are its component's records (``recording_for``): when that
component is essential, the store holds them rather than make the run wait
for space or for another process's lock (``store/hold.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome, FailedStep
from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.engine.action import Action, ActionRegistry, StepContext, StepResult
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.compensation import compensate
from graylogic_supervisor.engine.control import ExecutionControls, PriorityGate
from graylogic_supervisor.engine.execution import (
    Attempt,
    Credit,
    Ending,
    ExecutionObserver,
    RunState,
    retry_pause,
    seen_as,
)
from graylogic_supervisor.engine.parallel import run_group
from graylogic_supervisor.engine.run import Run, StepRow
from graylogic_supervisor.playbooks.expression_context import (
    ExpressionContext,
    ResourceFigures,
    StepRecord,
    expression_context,
)
from graylogic_supervisor.playbooks.expressions import ExpressionError
from graylogic_supervisor.playbooks.model import (
    DONE,
    ESCALATE,
    Playbook,
    Step,
    skip_target,
)
from graylogic_supervisor.playbooks.templates import compile_template
from graylogic_supervisor.store.executions import (
    ExecutionEnd,
    ExecutionRepository,
    ExecutionStart,
    StepEnd,
)
from graylogic_supervisor.store.hold import recording_for
from graylogic_supervisor.store.ids import new_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Call:
    """One attempt's call of its action: filled-in target and params, number, timeout."""

    target: str | None
    params: BaseModel
    number: int  # the attempt's number within its step, from 1
    timeout_s: float
    cut_by_deadline: bool  # the playbook's deadline, not the step's own timeout, set it


class Runner:
    def __init__(
        self,
        registry: ActionRegistry,
        executions: ExecutionRepository,
        clock: Clock,
        observer: ExecutionObserver | None = None,
        *,
        rng: random.Random | None = None,
        resources: Callable[[], ResourceFigures] | None = None,
        controls: ExecutionControls | None = None,
        gate: PriorityGate | None = None,
    ) -> None:
        """``resources`` reads the host's figures for conditions that use ``resources.…``."""
        self._registry = registry
        self._executions = executions
        self._clock = clock
        self._observer = observer
        self._rng = rng or random.Random()
        self._ids = rng  # a simulation's seeded ids; None: the system's randomness
        self._resources = resources
        self._controls = controls
        self._gate = gate
        self._caller = ActionCaller(clock, controls)

    async def run(
        self,
        playbook: Playbook,
        failure: FailureInfo,
        incident_id: str | None = None,
        kind: str = "playbook",
        *,
        priority: int = 2,
    ) -> ExecutionOutcome:
        """Run one playbook for one failure; ``priority`` (0 most urgent) orders waiting runs."""
        with recording_for(failure.component):
            if self._gate is None:
                return await self._run(playbook, failure, incident_id=incident_id, kind=kind)
            async with self._gate.slot(priority):
                return await self._run(playbook, failure, incident_id=incident_id, kind=kind)

    async def run_nested(
        self, playbook: Playbook, ctx: StepContext, parameters: Mapping[str, Any]
    ) -> ExecutionOutcome:
        """A playbook a step calls: same failure, no slot of its own (its parent holds one)."""
        return await self._run(
            playbook, ctx.failure, incident_id=None, kind="playbook", parameters=parameters
        )

    async def resume(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        from_step: str,
        *,
        elapsed_s: float,
        rows: Sequence[Mapping[str, Any]],
    ) -> ExecutionOutcome:
        """Carry on an execution a stopped supervisor left at ``from_step``.

        The store's rows are the checkpoint: the step numbers go on from them, and
        what earlier steps came to (for conditions and for undoing) is read back
        from them. The playbook's deadline counts the time already spent.
        """
        state, completed = RunState.from_rows(playbook, rows)
        run = self._new_run(
            execution_id,
            playbook,
            failure,
            state=state,
            started=self._clock.monotonic() - elapsed_s,
        )
        run.completed.extend(completed)
        logger.warning(
            "resuming %s of %s at step %s (it is idempotent)",
            execution_id,
            playbook.id,
            from_step,
            extra=run.log_extra,
        )
        run.resumed()
        with recording_for(failure.component):
            return await self._drive(run, playbook.step(from_step))

    async def _run(
        self,
        playbook: Playbook,
        failure: FailureInfo,
        *,
        incident_id: str | None,
        kind: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> ExecutionOutcome:
        clock = self._clock
        execution_id = new_id("exec", clock.now(), self._ids)
        state = RunState()
        state.parameters = {**playbook.parameters, **(parameters or {})}
        run = self._new_run(execution_id, playbook, failure, state=state, started=clock.monotonic())
        run.begin(
            ExecutionStart(
                execution_id=execution_id,
                playbook_id=playbook.id,
                playbook_version=playbook.version,
                failure_id=failure.failure_id,
                error_id=failure.error_id,
                component=failure.component,
                started_at=clock.now(),
                incident_id=incident_id,
                kind=kind,
            )
        )
        logger.info(
            "running %s %s for %s (%s)",
            playbook.id,
            playbook.version,
            failure.component,
            execution_id,
            extra=run.log_extra,
        )
        return await self._drive(run, playbook.steps[0])

    def _new_run(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        *,
        state: RunState,
        started: float,
    ) -> Run:
        return Run(
            execution_id=execution_id,
            playbook=playbook,
            failure=failure,
            state=state,
            started=started,
            clock=self._clock,
            executions=self._executions,
            observer=self._observer,
            controls=self._controls,
        )

    async def _drive(self, run: Run, step: Step) -> ExecutionOutcome:
        """The run itself, from ``step``: the walk, undoing what it did unless it resolved,
        the end (undoing first when it is cancelled: a second cancel still wins)."""
        run.open_controls()
        walk = self._walk_needs if run.uses_needs else self._walk_transitions
        try:
            end, last_failed = await walk(run, step)
        except asyncio.CancelledError:
            await compensate(run, self._registry, self._caller, self._clock)
            by = run.cancelled_by
            why = f"cancelled by {by}" if by else "cancelled while running (supervisor stopping)"
            await run.finish(ExecutionEnd(ExecutionStatus.INTERRUPTED, None, None, None, why), None)
            raise
        except Exception:
            run.close_controls()
            raise
        if end.status is ExecutionStatus.RESOLVED:
            return await run.finish(end, None)
        await compensate(run, self._registry, self._caller, self._clock)
        return await run.finish(end, last_failed)

    async def _walk_transitions(
        self, run: Run, step: Step
    ) -> tuple[ExecutionEnd, FailedStep | None]:
        """Step by step along the transitions, until done, escalate or the deadline."""
        playbook = run.playbook
        visits: Counter[str] = Counter()
        credit = Credit()
        last_failed: FailedStep | None = None
        while True:
            await run.wait_while_paused()
            visits[step.id] += 1
            if step.when is not None and not await self._holds(run, step):
                attempt, target = Attempt(StepOutcome.SKIPPED, None), skip_target(playbook, step)
            else:
                if step.max_visits is not None and visits[step.id] > step.max_visits:
                    detail = (
                        f"loop bound reached: step {step.id} would run"
                        f" more than {step.max_visits} times"
                    )
                    return ExecutionEnd(ExecutionStatus.ESCALATED, None, None, False, detail), (
                        last_failed
                    )
                attempt = await self._run_one(run, step)
                if not attempt.succeeded:
                    last_failed = attempt.failed(step)
                if attempt.outcome is Ending.DEADLINE:
                    detail = (
                        f"playbook timeout of {playbook.timeout_seconds:g} s"
                        f" reached in step {step.id}"
                    )
                    return ExecutionEnd(ExecutionStatus.FAILED, None, None, False, detail), (
                        last_failed
                    )
                credit.saw(attempt)
                target = run.next_after(step, succeeded=attempt.succeeded)
            if target == DONE:
                resolved_by, what = credit.what_fixed_it((step, attempt.result))
                detail = f"resolved after step {step.id}"
                return ExecutionEnd(ExecutionStatus.RESOLVED, resolved_by, what, True, detail), None
            if target == ESCALATE:
                detail = f"step {step.id} escalated ({attempt.outcome})"
                return ExecutionEnd(ExecutionStatus.ESCALATED, None, None, False, detail), (
                    last_failed
                )
            step = playbook.step(target)

    async def _walk_needs(self, run: Run, first: Step) -> tuple[ExecutionEnd, FailedStep | None]:
        """Steps in waves by what they need; a wave's steps run at once.

        A step runs once every step it needs succeeded; if one did not, it is
        skipped and says which. The run resolves when no step failed.
        """
        playbook, records = run.playbook, run.state.records
        outcomes: dict[str, StepOutcome | Ending] = dict.fromkeys(
            (
                step_id
                for step_id, record in records.items()
                if record.outcome in (StepOutcome.SUCCESS, StepOutcome.SKIPPED)
            ),
            StepOutcome.SUCCESS,
        )  # a resumed run keeps what already succeeded
        pending = [s for s in playbook.steps if s.id not in outcomes]
        credit = Credit()
        last_failed: FailedStep | None = None
        while pending:
            await run.wait_while_paused()
            ready = [s for s in pending if all(n in outcomes for n in s.needs)]
            pending = [s for s in pending if s not in ready]
            wave: list[Step] = []
            for step in ready:
                unmet = [n for n in step.needs if outcomes[n] is not StepOutcome.SUCCESS]
                if unmet:
                    why = f"skipped: needs {', '.join(unmet)}, which did not succeed"
                    await self._skip(run, step, why, transition=None)
                    outcomes[step.id] = StepOutcome.SKIPPED
                elif step.when is not None and not await self._holds(run, step):
                    outcomes[step.id] = StepOutcome.SUCCESS  # a false condition blocks nothing
                else:
                    wave.append(step)
            attempts = await asyncio.gather(*(self._run_one(run, s) for s in wave))
            for step, attempt in zip(wave, attempts, strict=True):
                outcomes[step.id] = attempt.outcome
                credit.saw(attempt)
                if not attempt.succeeded:
                    last_failed = attempt.failed(step)
            if any(a.outcome is Ending.DEADLINE for a in attempts):
                detail = f"playbook timeout of {playbook.timeout_seconds:g} s reached"
                return ExecutionEnd(ExecutionStatus.FAILED, None, None, False, detail), last_failed
        failed_steps = [i for i, o in outcomes.items() if o is not StepOutcome.SUCCESS]
        if failed_steps:
            detail = f"steps did not succeed: {', '.join(failed_steps)}"
            return ExecutionEnd(ExecutionStatus.ESCALATED, None, None, False, detail), last_failed
        resolved_by, what = credit.what_fixed_it((playbook.steps[-1], None))
        end = ExecutionEnd(
            ExecutionStatus.RESOLVED, resolved_by, what, True, "every step succeeded"
        )
        return end, None

    async def _run_one(self, run: Run, step: Step) -> Attempt:
        """A step or a group; a successful step joins ``completed`` (for undoing later)
        and, when its action is a fix, is the candidate for what fixed the failure (a
        successful verification after it makes it so: ``Credit``)."""
        if step.parallel is not None:

            def run_branch(branch: Step) -> Coroutine[Any, Any, Attempt]:
                return self._run_step(
                    run, branch, self._registry.get(branch.action), join_of=step.id
                )

            return await run_group(run, step, run_branch, self._registry)
        action = self._registry.get(step.action)
        attempt = await self._run_step(run, step, action)
        if attempt.succeeded:
            run.completed.append(step)
            if action.kind is ActionKind.FIX and attempt.result is not None:
                attempt.fix = (step, attempt.result)
            attempt.healthy = action.kind is ActionKind.VERIFY
        return attempt

    async def _run_step(
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
                outcome=seen_as(outcome),
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

    def _context(self, run: Run) -> ExpressionContext:
        """What conditions and templates see; ``params`` are the playbook's parameters."""
        return expression_context(
            failure=run.failure,
            steps=run.state.records,
            params=run.state.parameters,
            now=self._clock.now().astimezone(),
            resources=self._resources() if self._resources is not None else None,
        )

    async def _holds(self, run: Run, step: Step) -> bool:
        """Whether a step's ``when:`` holds; a skipped step gets its row all the same."""
        assert step.when is not None
        try:
            holds = step.when.test(self._context(run))
        except ExpressionError as exc:
            detail, holds = f"condition could not be evaluated, step skipped: {exc}", False
        else:
            detail = f"skipped: {step.when.text} is false"
        if not holds:
            await self._skip(run, step, detail, transition=skip_target(run.playbook, step))
        return holds

    async def _skip(self, run: Run, step: Step, why: str, *, transition: str | None) -> None:
        async with run.step(StepRow.of(step), instant=True) as recording:
            recording.ends(StepEnd(StepOutcome.SKIPPED, why, {}, None, transition))
        run.state.records[step.id] = StepRecord("skipped", {}, why, 0.0, 0)

    def _render(self, run: Run, step: Step) -> tuple[str | None, dict[str, Any]]:
        """The step's target and params with their ``{…}`` placeholders filled in."""
        templated = [k for k, v in step.params.items() if isinstance(v, str) and "{" in v]
        if not templated and not (step.target and "{" in step.target):
            return step.target, dict(step.params)
        ctx = self._context(run)
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
        run.state.records[step.id] = StepRecord("error", {}, error, 0.0, 1)
        return Attempt(StepOutcome.ERROR, None)

    def _judge(
        self, run: Run, step: Step, result: StepResult, *, duration: float, number: int
    ) -> tuple[StepOutcome, str | None]:
        """``success_when:`` decides the outcome from the result (seen as ``steps.<own id>``)."""
        assert step.success_when is not None
        run.state.records[step.id] = StepRecord(
            "success" if result.success else "failure",
            dict(result.output),
            result.result,
            duration,
            number,
        )
        try:
            if step.success_when.test(self._context(run)):
                return StepOutcome.SUCCESS, None
        except ExpressionError as exc:
            return StepOutcome.ERROR, str(exc)
        return StepOutcome.FAILURE, f"{step.success_when.text} is false ({result.result})"
