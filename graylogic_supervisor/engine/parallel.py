"""Parallel groups: branches at once, each a step row of its own, joined by ``all`` or ``any``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.execution import NOT_RUN, Attempt, RunState
from graylogic_supervisor.playbooks.model import PARALLEL, Playbook, Step
from graylogic_supervisor.store.executions import ExecutionRepository, StepEnd

BranchRunner = Callable[[Step], Coroutine[Any, Any, Attempt]]  # one branch, as a step of the group


async def run_group(
    executions: ExecutionRepository,
    registry: ActionRegistry,
    clock: Clock,
    run_branch: BranchRunner,
    execution_id: str,
    playbook: Playbook,
    group: Step,
    seq: RunState,
    completed: list[Step],
) -> Attempt:
    """Run a group's branches at once, each a step row ``group.branch`` of its own.

    ``all`` succeeds when every branch did; ``any`` as soon as one did, and the
    others are cancelled (their rows say ``interrupted``). The group has a row
    too, with the join's outcome and the group's transition.
    """
    assert group.parallel is not None
    row_id = await executions.start_step(
        execution_id, seq.next(), group.id, group.name, PARALLEL, None, 1, clock.now()
    )
    began = clock.monotonic()
    branches = [
        branch.model_copy(update={"id": f"{group.id}.{branch.id}"})
        for branch in group.parallel.branches
    ]
    tasks = {
        asyncio.create_task(
            run_branch(branch),
            name=f"{execution_id}:{branch.id}",
        ): branch
        for branch in branches
    }
    results: dict[str, Attempt] = {}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[tasks[task].id] = task.result()
            if group.parallel.join == "any" and any(
                r.outcome == "success" for r in results.values()
            ):
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    succeeded_branches = [b for b in branches if results.get(b.id, NOT_RUN).outcome == "success"]
    completed.extend(succeeded_branches)
    if group.parallel.join == "all":
        succeeded = len(succeeded_branches) == len(branches)
    else:
        succeeded = bool(succeeded_branches)
    failed = next(
        (b for b in branches if results.get(b.id, NOT_RUN).outcome not in ("success", "cancelled")),
        None,
    )
    deadline_hit = any(r.outcome == "deadline" for r in results.values())
    outcome = (
        "deadline" if deadline_hit and not succeeded else ("success" if succeeded else "failure")
    )
    summary = (
        f"{len(succeeded_branches)} of {len(branches)} branches succeeded"
        f" (join {group.parallel.join})"
    )
    fix = next(
        (
            (b, result)
            for b in succeeded_branches
            if (result := results[b.id].result) is not None
            and registry.get(b.action).kind is ActionKind.FIX
        ),
        None,
    )
    healthy = any(registry.get(b.action).kind is ActionKind.VERIFY for b in succeeded_branches)
    if outcome == "deadline":
        transition = "failed"
    else:
        transition = playbook.resolve_transition(
            group, group.on_success if succeeded else group.on_failure
        )
    await executions.finish_step(
        row_id,
        clock.now(),
        clock.monotonic() - began,
        StepEnd(
            outcome="success" if succeeded else ("timeout" if outcome == "deadline" else "failure"),
            result=summary,
            output={b.id: results.get(b.id, NOT_RUN).outcome for b in branches},
            error=None if succeeded else summary,
            transitioned_to=transition,
        ),
    )
    return Attempt(outcome, None, fix, failed, healthy)
