"""Runs one playbook version for one failure, recording every step as it happens.

Each attempt of each step is a row written when it starts and updated when it
ends. The playbook's deadline bounds every step's timeout. The run ends as
``resolved`` (a transition to ``done``), ``escalated`` (a transition to
``escalate`` or a loop bound reached), ``failed`` (the playbook's deadline
passed) or, when it is cancelled, ``interrupted``.

What a step does around its run lives beside this module: calling the action
(``action_call.py``), parallel groups (``parallel.py``) and undoing completed
steps (``compensation.py``). What stays here is the walk itself (by transitions
or by ``needs:``), attempts and retries, conditions, resumption and the run's
end: one state machine, longer than our usual module, because its parts share
the run's state and read best side by side.

A run's writes are its component's records (``recording_for``): when that
component is essential, the store holds them rather than make the run wait
for space or for another process's lock (``store/hold.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome, FailedStep
from graylogic_supervisor.engine.action import Action, ActionRegistry, StepContext, StepResult
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.compensation import compensate
from graylogic_supervisor.engine.control import (
    ExecutionControls,
    ExecutionHandle,
    PriorityGate,
)
from graylogic_supervisor.engine.execution import (
    Attempt,
    Credit,
    ExecutionObserver,
    RunState,
    retry_pause,
)
from graylogic_supervisor.engine.parallel import run_group
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
from graylogic_supervisor.store.executions import ExecutionEnd, ExecutionRepository, StepEnd
from graylogic_supervisor.store.hold import recording_for
from graylogic_supervisor.store.ids import new_id

logger = logging.getLogger(__name__)


class Runner:
    def __init__(
        self,
        registry: ActionRegistry,
        executions: ExecutionRepository,
        clock: Clock,
        observer: ExecutionObserver | None = None,
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
        priority: int = 2,
    ) -> ExecutionOutcome:
        """Run one playbook for one failure; ``priority`` (0 most urgent) orders waiting runs."""
        with recording_for(failure.component):
            if self._gate is None:
                return await self._run(playbook, failure, incident_id, kind)
            async with self._gate.slot(priority):
                return await self._run(playbook, failure, incident_id, kind)

    async def _run(
        self,
        playbook: Playbook,
        failure: FailureInfo,
        incident_id: str | None,
        kind: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> ExecutionOutcome:
        clock = self._clock
        execution_id = new_id("exec", clock.now(), self._ids)
        started = clock.monotonic()
        log_extra = {"playbook": playbook.id, "error_id": failure.error_id}
        await self._executions.start_execution(
            execution_id,
            playbook.id,
            playbook.version,
            failure.failure_id,
            failure.error_id,
            failure.component,
            clock.now(),
            incident_id,
            kind,
        )
        if self._observer is not None:
            self._observer.execution_started(execution_id, playbook, failure)
        logger.info(
            "running %s %s for %s (%s)",
            playbook.id,
            playbook.version,
            failure.component,
            execution_id,
            extra=log_extra,
        )
        state = RunState()
        state.parameters = {**playbook.parameters, **(parameters or {})}
        return await self._drive(
            execution_id, playbook, failure, playbook.steps[0], state, [], started
        )

    async def run_nested(
        self, playbook: Playbook, ctx: StepContext, parameters: Mapping[str, Any]
    ) -> ExecutionOutcome:
        """A playbook a step calls: same failure, no slot of its own (its parent holds one)."""
        return await self._run(playbook, ctx.failure, None, "playbook", parameters)

    async def resume(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        from_step: str,
        elapsed_s: float,
        rows: Sequence[Mapping[str, Any]],
    ) -> ExecutionOutcome:
        """Carry on an execution a stopped supervisor left at ``from_step``.

        The store's rows are the checkpoint: the step numbers go on from them, and
        what earlier steps came to (for conditions and for undoing) is read back
        from them. The playbook's deadline counts the time already spent.
        """
        state = RunState()
        state.parameters = dict(playbook.parameters)
        completed: list[Step] = []
        for row in rows:
            state.value = max(state.value, int(row["seq"]))
            step_id = str(row["step_id"])
            if ":" in step_id or row["outcome"] in ("running", "interrupted"):
                continue
            output = json.loads(row["output"]) if row["output"] else {}
            state.records[step_id] = StepRecord(
                row["outcome"],
                output,
                row["result"] or row["error"] or "",
                float(row["duration_seconds"] or 0.0),
                int(row["attempt"]),
            )
            if row["outcome"] == "success":
                with contextlib.suppress(KeyError):
                    completed.append(playbook.step(step_id))
        logger.warning(
            "resuming %s of %s at step %s (it is idempotent)",
            execution_id,
            playbook.id,
            from_step,
            extra={"playbook": playbook.id, "error_id": failure.error_id},
        )
        if self._observer is not None:
            self._observer.execution_started(execution_id, playbook, failure)
        started = self._clock.monotonic() - elapsed_s
        with recording_for(failure.component):
            return await self._drive(
                execution_id, playbook, failure, playbook.step(from_step), state, completed, started
            )

    async def _drive(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        step: Step,
        seq: RunState,
        completed: list[Step],
        started: float,
    ) -> ExecutionOutcome:
        """The run itself, from ``step``: transitions, retries, groups, undoing, the end."""
        deadline = started + playbook.timeout_seconds
        handle = self._controls.open(execution_id, deadline) if self._controls is not None else None

        walk = self._walk_needs if playbook.uses_needs else self._walk_transitions
        try:
            end, last_failed = await walk(
                execution_id, playbook, failure, step, seq, completed, deadline, handle
            )
        except asyncio.CancelledError:
            # Undo what was done before giving in to the cancel (bounded by each undo's
            # timeout; a second cancel, at shutdown's end, still wins).
            await self._undo(execution_id, playbook, failure, completed, seq)
            if handle is not None and self._controls is not None:
                self._controls.close(execution_id)
            await self._finish(
                execution_id,
                playbook,
                failure,
                started,
                ExecutionEnd(
                    "interrupted",
                    None,
                    None,
                    None,
                    f"cancelled by {handle.cancelled_by}"
                    if handle is not None and handle.cancelled_by
                    else "cancelled while running (supervisor stopping)",
                ),
            )
            raise
        if end.status != "resolved":
            await self._undo(execution_id, playbook, failure, completed, seq)
        failed_step = None if end.status == "resolved" else last_failed
        if handle is not None and self._controls is not None:
            self._controls.close(execution_id)
        return await self._finish(execution_id, playbook, failure, started, end, failed_step)

    async def _walk_transitions(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        step: Step,
        seq: RunState,
        completed: list[Step],
        deadline: float,
        handle: ExecutionHandle | None,
    ) -> tuple[ExecutionEnd, FailedStep | None]:
        """Step by step along the transitions, until done, escalate or the deadline."""
        visits: Counter[str] = Counter()
        credit = Credit()
        last_failed: FailedStep | None = None
        end: ExecutionEnd
        while True:
            if handle is not None and self._controls is not None:
                deadline += await self._controls.wait_while_paused(handle)
            visits[step.id] += 1
            if step.when is not None and not await self._holds(
                execution_id, playbook, step, seq, self._context(failure, seq)
            ):
                attempt, target = Attempt("skipped", None), skip_target(playbook, step)
            else:
                if step.max_visits is not None and visits[step.id] > step.max_visits:
                    end = ExecutionEnd(
                        "escalated",
                        None,
                        None,
                        False,
                        f"loop bound reached: step {step.id} would run"
                        f" more than {step.max_visits} times",
                    )
                    break
                attempt = await self._run_one(
                    execution_id, playbook, failure, step, seq, completed, deadline
                )
                if attempt.outcome != "success":
                    outcome = "timeout" if attempt.outcome == "deadline" else attempt.outcome
                    failed = attempt.failed_step or step
                    last_failed = FailedStep(failed.id, failed.action, outcome)
                if attempt.outcome == "deadline":
                    end = ExecutionEnd(
                        "failed",
                        None,
                        None,
                        False,
                        f"playbook timeout of {playbook.timeout_seconds:g} s"
                        f" reached in step {step.id}",
                    )
                    break
                succeeded = attempt.outcome == "success"
                credit.saw(attempt)
                target = playbook.resolve_transition(
                    step, step.on_success if succeeded else step.on_failure
                )
            if target == DONE:
                fixer, fix_result = credit.fixer or (step, attempt.result)
                what = f"{fixer.action} {fixer.target or ''}".strip()
                if fix_result is not None:
                    what += f": {fix_result.result}"
                end = ExecutionEnd(
                    "resolved", fixer.id, what, True, f"resolved after step {step.id}"
                )
                break
            if target == ESCALATE:
                end = ExecutionEnd(
                    "escalated",
                    None,
                    None,
                    False,
                    f"step {step.id} escalated ({attempt.outcome})",
                )
                break
            step = playbook.step(target)
        return end, last_failed

    async def _walk_needs(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        first: Step,
        seq: RunState,
        completed: list[Step],
        deadline: float,
        handle: ExecutionHandle | None,
    ) -> tuple[ExecutionEnd, FailedStep | None]:
        """Steps in waves by what they need; a wave's steps run at once.

        A step runs once every step it needs succeeded; if one did not, it is
        skipped and says which. The run resolves when no step failed.
        """
        outcomes = dict.fromkeys(
            (r for r in seq.records if seq.records[r].outcome in ("success", "skipped")),
            "success",
        )  # a resumed run keeps what already succeeded
        pending = [s for s in playbook.steps if s.id not in outcomes]
        credit = Credit()
        last_failed: FailedStep | None = None
        while pending:
            if handle is not None and self._controls is not None:
                deadline += await self._controls.wait_while_paused(handle)
            ready = [s for s in pending if all(n in outcomes for n in s.needs)]
            pending = [s for s in pending if s not in ready]
            wave: list[Step] = []
            for step in ready:
                unmet = [n for n in step.needs if outcomes[n] != "success"]
                if unmet:
                    await self._skip(
                        execution_id,
                        step,
                        seq,
                        f"skipped: needs {', '.join(unmet)}, which did not succeed",
                    )
                    outcomes[step.id] = "skipped"
                elif step.when is not None and not await self._holds(
                    execution_id, playbook, step, seq, self._context(failure, seq)
                ):
                    outcomes[step.id] = "success"  # a condition that does not hold blocks nothing
                else:
                    wave.append(step)
            attempts = await asyncio.gather(
                *(
                    self._run_one(execution_id, playbook, failure, s, seq, completed, deadline)
                    for s in wave
                )
            )
            for step, attempt in zip(wave, attempts, strict=True):
                outcomes[step.id] = attempt.outcome
                credit.saw(attempt)
                if attempt.outcome != "success":
                    failed = attempt.failed_step or step
                    outcome = "timeout" if attempt.outcome == "deadline" else attempt.outcome
                    last_failed = FailedStep(failed.id, failed.action, outcome)
            if any(a.outcome == "deadline" for a in attempts):
                detail = f"playbook timeout of {playbook.timeout_seconds:g} s reached"
                return ExecutionEnd("failed", None, None, False, detail), last_failed
        failed_steps = [i for i, o in outcomes.items() if o not in ("success",)]
        if failed_steps:
            detail = f"steps did not succeed: {', '.join(failed_steps)}"
            return ExecutionEnd("escalated", None, None, False, detail), last_failed
        fixer, fix_result = credit.fixer or (playbook.steps[-1], None)
        what = f"{fixer.action} {fixer.target or ''}".strip()
        if fix_result is not None:
            what += f": {fix_result.result}"
        return ExecutionEnd("resolved", fixer.id, what, True, "every step succeeded"), None

    async def _undo(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        completed: list[Step],
        seq: RunState,
    ) -> None:
        await compensate(
            self._executions,
            self._registry,
            self._caller,
            self._clock,
            execution_id,
            playbook,
            failure,
            completed,
            seq,
        )

    async def _run_one(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        step: Step,
        seq: RunState,
        completed: list[Step],
        deadline: float,
    ) -> Attempt:
        """A step or a group; a successful step joins ``completed`` (for undoing later)
        and, when its action is a fix, is the candidate for what fixed the failure (a
        successful verification after it makes it so: ``Credit``)."""
        if step.parallel is not None:

            def run_branch(branch: Step) -> Coroutine[Any, Any, Attempt]:
                return self._run_step(
                    execution_id,
                    playbook,
                    branch,
                    self._registry.get(branch.action),
                    failure,
                    seq,
                    deadline,
                    join_of=step.id,
                )

            return await run_group(
                self._executions,
                self._registry,
                self._clock,
                run_branch,
                execution_id,
                playbook,
                step,
                seq,
                completed,
            )
        action = self._registry.get(step.action)
        attempt = await self._run_step(
            execution_id, playbook, step, action, failure, seq, deadline, join_of=None
        )
        if attempt.outcome == "success":
            completed.append(step)
            if action.kind is ActionKind.FIX and attempt.result is not None:
                attempt.fix = (step, attempt.result)
            attempt.healthy = action.kind is ActionKind.VERIFY
        return attempt

    async def _skip(self, execution_id: str, step: Step, state: RunState, why: str) -> None:
        now = self._clock.now()
        row_id = await self._executions.start_step(
            execution_id, state.next(), step.id, step.name, step.action, step.target, 1, now
        )
        await self._executions.finish_step(
            row_id, now, 0.0, StepEnd("skipped", why, {}, None, None)
        )
        state.records[step.id] = StepRecord("skipped", {}, why, 0.0, 0)

    async def _finish(
        self,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        started: float,
        end: ExecutionEnd,
        failed_step: FailedStep | None = None,
    ) -> ExecutionOutcome:
        duration = self._clock.monotonic() - started
        await self._executions.finish_execution(execution_id, self._clock.now(), duration, end)
        outcome = ExecutionOutcome(
            execution_id, end.status, end.resolved_by, duration, end.detail, failed_step
        )
        logger.log(
            logging.INFO if end.status == "resolved" else logging.WARNING,
            "%s %s for %s: %s in %.3f s (%s)",
            playbook.id,
            execution_id,
            failure.component,
            end.status,
            duration,
            end.detail,
            extra={"playbook": playbook.id, "error_id": failure.error_id},
        )
        if self._observer is not None:
            self._observer.execution_finished(playbook, failure, outcome)
        return outcome

    async def _run_step(
        self,
        execution_id: str,
        playbook: Playbook,
        step: Step,
        action: Action,
        failure: FailureInfo,
        seq: RunState,
        deadline: float,
        join_of: str | None = None,
    ) -> Attempt:
        """Run a step and its retries; returns what it came to.

        ``join_of`` names the group when the step is one of its branches.
        """
        attempts = step.retry.attempts if step.retry else 1
        try:
            target, raw_params = self._render(step, failure, seq)
            params = action.params_model.model_validate(raw_params)
        except (ExpressionError, ValidationError) as exc:
            return await self._refuse(execution_id, playbook, step, seq, join_of, exc)
        attempt = Attempt("failure", None)
        for number in range(1, attempts + 1):
            if number > 1:
                pause = retry_pause(step.retry, number - 1, self._rng) if step.retry else 0.0
                if self._clock.monotonic() + pause >= deadline:
                    return Attempt("deadline", attempt.result)
                await self._clock.sleep(pause)
            number_in_run = seq.next()
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return Attempt("deadline", attempt.result)
            timeout = min(step.timeout_seconds, remaining)
            cut_by_deadline = timeout < step.timeout_seconds
            ctx = StepContext(
                execution_id=execution_id,
                playbook_id=playbook.id,
                step_id=step.id,
                target=target,
                params=params,
                failure=failure,
                clock=self._clock,
                deadline=self._clock.monotonic() + timeout,
            )
            attempt = await self._attempt(
                ctx,
                playbook,
                step,
                action,
                number_in_run,
                number,
                timeout,
                cut_by_deadline,
                join_of,
                seq,
            )
            if attempt.outcome == "success":
                return attempt
            if attempt.outcome == "timeout" and cut_by_deadline:
                return Attempt("deadline", attempt.result)
        return attempt

    async def _attempt(
        self,
        ctx: StepContext,
        playbook: Playbook,
        step: Step,
        action: Action,
        seq: int,
        number: int,
        timeout_s: float,
        cut_by_deadline: bool,
        join_of: str | None,
        state: RunState,
    ) -> Attempt:
        clock = self._clock
        row_id = await self._executions.start_step(
            ctx.execution_id, seq, step.id, step.name, step.action, ctx.target, number, clock.now()
        )
        if self._observer is not None:
            self._observer.step_started(ctx.execution_id, playbook, step, number)
        if self._controls is not None:
            self._controls.beat(ctx.execution_id)
        began = clock.monotonic()
        try:
            outcome, result, error = await self._caller.call(ctx, action, timeout_s)
        except asyncio.CancelledError:
            await self._executions.finish_step(
                row_id,
                clock.now(),
                clock.monotonic() - began,
                StepEnd("interrupted", None, {}, "cancelled", None),
            )
            raise
        if result is not None and step.success_when is not None:
            outcome, error = self._judge(
                step, ctx.failure, state, result, clock.monotonic() - began, number
            )
        state.records[step.id] = StepRecord(
            outcome=outcome,  # type: ignore[arg-type]  # one of the step outcomes
            output=dict(result.output) if result is not None else {},
            result=result.result if result is not None else (error or ""),
            duration_s=clock.monotonic() - began,
            attempts=number,
        )
        succeeded = outcome == "success"
        if join_of is not None:
            transition: str | None = f"join:{join_of}"
        elif playbook.uses_needs:
            transition = None  # what needs this step follows from the graph
        else:
            transition = playbook.resolve_transition(
                step, step.on_success if succeeded else step.on_failure
            )
        if outcome == "timeout" and cut_by_deadline:
            transition = "failed"  # the playbook's own deadline ended it
        elif not succeeded and step.retry is not None and number < step.retry.attempts:
            transition = f"retry:{step.id}"
        end = StepEnd(
            outcome=outcome,
            result=result.result if result is not None else None,
            output=result.output if result is not None else {},
            error=error,
            transitioned_to=transition,
        )
        await self._executions.finish_step(row_id, clock.now(), clock.monotonic() - began, end)
        if self._observer is not None:
            self._observer.step_finished(ctx.execution_id, playbook, step, end)
        if self._controls is not None:
            self._controls.beat(ctx.execution_id)
        return Attempt(outcome, result)

    def _context(self, failure: FailureInfo, state: RunState) -> ExpressionContext:
        """What conditions and templates see; ``params`` are the playbook's parameters."""
        return expression_context(
            failure=failure,
            steps=state.records,
            params=state.parameters,
            now=self._clock.now().astimezone(),
            resources=self._resources() if self._resources is not None else None,
        )

    async def _holds(
        self,
        execution_id: str,
        playbook: Playbook,
        step: Step,
        state: RunState,
        ctx: ExpressionContext,
    ) -> bool:
        """Whether a step's ``when:`` holds; a skipped step gets its row all the same."""
        assert step.when is not None
        try:
            holds = step.when.test(ctx)
        except ExpressionError as exc:
            detail, holds = f"condition could not be evaluated, step skipped: {exc}", False
        else:
            detail = f"skipped: {step.when.text} is false"
        if holds:
            return True
        now = self._clock.now()
        row_id = await self._executions.start_step(
            execution_id, state.next(), step.id, step.name, step.action, step.target, 1, now
        )
        await self._executions.finish_step(
            row_id,
            now,
            0.0,
            StepEnd("skipped", detail, {}, None, skip_target(playbook, step)),
        )
        state.records[step.id] = StepRecord("skipped", {}, detail, 0.0, 0)
        return False

    def _render(
        self, step: Step, failure: FailureInfo, state: RunState
    ) -> tuple[str | None, dict[str, Any]]:
        """The step's target and params with their ``{…}`` placeholders filled in."""
        templated = [k for k, v in step.params.items() if isinstance(v, str) and "{" in v]
        if not templated and not (step.target and "{" in step.target):
            return step.target, dict(step.params)
        ctx = self._context(failure, state)
        target = compile_template(step.target).render(ctx) if step.target else None
        params = dict(step.params)
        for key in templated:
            params[key] = compile_template(params[key]).render(ctx)
        return target, params

    async def _refuse(
        self,
        execution_id: str,
        playbook: Playbook,
        step: Step,
        state: RunState,
        join_of: str | None,
        exc: Exception,
    ) -> Attempt:
        """A step whose target or params cannot be filled in is an error, on the record."""
        now = self._clock.now()
        error = f"cannot fill in the step: {exc}".replace("\n", " ")[:500]
        row_id = await self._executions.start_step(
            execution_id, state.next(), step.id, step.name, step.action, step.target, 1, now
        )
        transition = (
            f"join:{join_of}" if join_of else playbook.resolve_transition(step, step.on_failure)
        )
        await self._executions.finish_step(
            row_id, now, 0.0, StepEnd("error", None, {}, error, transition)
        )
        state.records[step.id] = StepRecord("error", {}, error, 0.0, 1)
        return Attempt("error", None)

    def _judge(
        self,
        step: Step,
        failure: FailureInfo,
        state: RunState,
        result: StepResult,
        duration: float,
        number: int,
    ) -> tuple[str, str | None]:
        """``success_when:`` decides the outcome from the result (seen as ``steps.<own id>``)."""
        assert step.success_when is not None
        state.records[step.id] = StepRecord(
            "success" if result.success else "failure",
            dict(result.output),
            result.result,
            duration,
            number,
        )
        try:
            if step.success_when.test(self._context(failure, state)):
                return "success", None
        except ExpressionError as exc:
            return "error", str(exc)
        return "failure", f"{step.success_when.text} is false ({result.result})"
