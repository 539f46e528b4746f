"""Runs one playbook version for one failure, recording every step as it happens.

Each attempt of each step is a row written when it starts and updated when it
ends, through ``Run.step`` (``run.py``): one commit per step boundary. The
playbook's deadline bounds every step's timeout. The run ends as
``resolved`` (a transition to ``done``), ``escalated`` (a transition to
``escalate`` or a loop bound reached), ``failed`` (the playbook's deadline
passed) or, when it is cancelled, ``interrupted``.

What one run holds and how its steps are recorded is ``run.py``; one step, its
attempts, retries and conditions, is ``steps.py``; calling the action
(``action_call.py``), parallel groups (``parallel.py``) and undoing completed
steps (``compensation.py``) live beside them. What stays here is the walk itself
(by transitions or by ``needs:``), the run's start, resumption and its end.

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
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome, FailedStep
from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.engine.action import ActionRegistry, StepContext
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.compensation import compensate
from graylogic_supervisor.engine.control import ExecutionControls, PriorityGate
from graylogic_supervisor.engine.execution import (
    Attempt,
    Credit,
    Ending,
    ExecutionObserver,
    RunState,
)
from graylogic_supervisor.engine.parallel import run_group
from graylogic_supervisor.engine.run import Run
from graylogic_supervisor.engine.steps import StepRunner
from graylogic_supervisor.playbooks.expression_context import ResourceFigures
from graylogic_supervisor.playbooks.model import DONE, ESCALATE, Playbook, Step, skip_target
from graylogic_supervisor.store.executions import ExecutionEnd, ExecutionRepository, ExecutionStart
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
        self._ids = rng  # a simulation's seeded ids; None: the system's randomness
        self._controls = controls
        self._gate = gate
        self._caller = ActionCaller(clock, controls)
        self._steps = StepRunner(
            clock, self._caller, rng=rng or random.Random(), resources=resources
        )

    async def run(
        self,
        playbook: Playbook,
        failure: FailureInfo,
        incident_id: str | None = None,
        kind: str = "playbook",
        *,
        priority: int = 2,
        acting: Callable[[], None] | None = None,
    ) -> ExecutionOutcome:
        """Run one playbook for one failure; ``priority`` (0 most urgent) orders waiting runs;
        ``acting`` is called once the first action is about to run."""
        with recording_for(failure.component):
            if self._gate is None:
                return await self._run(
                    playbook, failure, incident_id=incident_id, kind=kind, acting=acting
                )
            async with self._gate.slot(priority):
                return await self._run(
                    playbook, failure, incident_id=incident_id, kind=kind, acting=acting
                )

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
        acting: Callable[[], None] | None = None,
    ) -> ExecutionOutcome:
        clock = self._clock
        execution_id = new_id("exec", clock.now(), self._ids)
        state = RunState()
        state.parameters = {**playbook.parameters, **(parameters or {})}
        run = self._new_run(
            execution_id, playbook, failure, state=state, started=clock.monotonic(), acting=acting
        )
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
        acting: Callable[[], None] | None = None,
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
            acting=acting,
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
            if step.when is not None and not await self._steps.holds(run, step):
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
                    await self._steps.skip(run, step, why, transition=None)
                    outcomes[step.id] = StepOutcome.SKIPPED
                elif step.when is not None and not await self._steps.holds(run, step):
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
                return self._steps.run_step(
                    run, branch, self._registry.get(branch.action), join_of=step.id
                )

            return await run_group(run, step, run_branch, self._registry)
        action = self._registry.get(step.action)
        attempt = await self._steps.run_step(run, step, action)
        if attempt.succeeded:
            run.completed.append(step)
            if action.kind is ActionKind.FIX and attempt.result is not None:
                attempt.fix = (step, attempt.result)
            attempt.healthy = action.kind is ActionKind.VERIFY
        return attempt
