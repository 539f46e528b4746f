"""Undoing a run's completed steps when it fails, escalates, times out or is cancelled."""

from __future__ import annotations

import logging

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import ActionRegistry, StepContext
from graylogic_supervisor.engine.action_call import ActionCaller
from graylogic_supervisor.engine.execution import RunState
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.executions import ExecutionRepository, StepEnd

logger = logging.getLogger(__name__)


async def compensate(
    executions: ExecutionRepository,
    registry: ActionRegistry,
    caller: ActionCaller,
    clock: Clock,
    execution_id: str,
    playbook: Playbook,
    failure: FailureInfo,
    completed: list[Step],
    seq: RunState,
) -> None:
    """Undo completed steps, newest first; each undo is a recorded step of its own.

    An undo that fails is recorded and the others still run: leaving the
    rest undone would only add to the mess a human is about to walk into.
    """
    undo_steps = [step for step in reversed(completed) if step.compensate is not None]
    for position, step in enumerate(undo_steps):
        undo = step.compensate
        assert undo is not None
        step_id = f"{step.id}:compensate"
        row_id = await executions.start_step(
            execution_id,
            seq.next(),
            step_id,
            f"Undo: {step.name}",
            undo.action,
            undo.target,
            1,
            clock.now(),
        )
        action = registry.get(undo.action)
        ctx = StepContext(
            execution_id=execution_id,
            playbook_id=playbook.id,
            step_id=step_id,
            target=undo.target,
            params=action.params_model.model_validate(undo.params),
            failure=failure,
            clock=clock,
            deadline=clock.monotonic() + undo.timeout_seconds,
        )
        began = clock.monotonic()
        outcome, result, error = await caller.call(ctx, action, undo.timeout_seconds)
        following = undo_steps[position + 1] if position + 1 < len(undo_steps) else None
        await executions.finish_step(
            row_id,
            clock.now(),
            clock.monotonic() - began,
            StepEnd(
                outcome=outcome,
                result=result.result if result is not None else None,
                output=result.output if result is not None else {},
                error=error,
                transitioned_to=f"{following.id}:compensate" if following else None,
            ),
        )
        log = logger.info if outcome == "success" else logger.error
        log(
            "%s: undo of %s %s (%s)",
            execution_id,
            step.id,
            outcome,
            error or (result.result if result else ""),
            extra={"playbook": playbook.id, "error_id": failure.error_id},
        )
