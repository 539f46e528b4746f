"""Undoing a run's completed steps when it fails, escalates, times out or is cancelled."""

from __future__ import annotations

import logging

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import ActionRegistry, StepContext
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.run import Run, StepRow
from graylogic_supervisor.store.executions import StepEnd

logger = logging.getLogger(__name__)


async def compensate(
    run: Run, registry: ActionRegistry, caller: ActionCaller, clock: Clock
) -> None:
    """Undo the run's completed steps, newest first; each undo is a recorded step of its own.

    An undo that fails is recorded and the others still run: leaving the
    rest undone would only add to the mess a human is about to walk into.
    """
    undo_steps = [step for step in reversed(run.completed) if step.compensate is not None]
    for position, step in enumerate(undo_steps):
        undo = step.compensate
        assert undo is not None
        step_id = f"{step.id}:compensate"
        row = StepRow(step_id, f"Undo: {step.name}", undo.action, undo.target)
        async with run.step(row) as recording:
            action = registry.get(undo.action)
            ctx = StepContext(
                execution_id=run.execution_id,
                playbook_id=run.playbook.id,
                step_id=step_id,
                target=undo.target,
                params=action.params_model.model_validate(undo.params),
                failure=run.failure,
                clock=clock,
                deadline=clock.monotonic() + undo.timeout_seconds,
            )
            outcome, result, error = await caller.call(ctx, action, undo.timeout_seconds)
            following = undo_steps[position + 1] if position + 1 < len(undo_steps) else None
            recording.ends(
                StepEnd(
                    outcome=outcome,
                    result=result.result if result is not None else None,
                    output=result.output if result is not None else {},
                    error=error,
                    transitioned_to=f"{following.id}:compensate" if following else None,
                )
            )
        log = logger.info if outcome is StepOutcome.SUCCESS else logger.error
        log(
            "%s: undo of %s %s (%s)",
            run.execution_id,
            step.id,
            outcome,
            error or (result.result if result else ""),
            extra=run.log_extra,
        )
