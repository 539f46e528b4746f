"""Parallel groups: branches at once, each a step row of its own, joined by ``all`` or ``any``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.execution import NOT_RUN, Attempt, Ending
from graylogic_supervisor.engine.run import Run, StepRow
from graylogic_supervisor.playbooks.model import Step
from graylogic_supervisor.store.executions import StepEnd

BranchRunner = Callable[[Step], Coroutine[Any, Any, Attempt]]  # one branch, as a step of the group


async def run_group(
    run: Run, group: Step, run_branch: BranchRunner, registry: ActionRegistry
) -> Attempt:
    """Run a group's branches at once, each a step row ``group.branch`` of its own.

    ``all`` succeeds when every branch did; ``any`` as soon as one did, and the
    others are cancelled (their rows say ``interrupted``). The group has a row
    too, with the join's outcome and the group's transition.
    """
    parallel = group.parallel
    assert parallel is not None
    branches = [
        branch.model_copy(update={"id": f"{group.id}.{branch.id}"}) for branch in parallel.branches
    ]
    async with run.step(StepRow.of(group)) as recording:
        results = await _join(run.execution_id, branches, run_branch, join=parallel.join)
        succeeded_branches = [b for b in branches if results.get(b.id, NOT_RUN).succeeded]
        run.completed.extend(succeeded_branches)
        if parallel.join == "all":
            succeeded = len(succeeded_branches) == len(branches)
        else:
            succeeded = bool(succeeded_branches)
        failed = next(
            (
                b
                for b in branches
                if results.get(b.id, NOT_RUN).outcome not in (StepOutcome.SUCCESS, Ending.CANCELLED)
            ),
            None,
        )
        deadline_hit = any(r.outcome is Ending.DEADLINE for r in results.values())
        outcome: StepOutcome | Ending
        if succeeded:
            outcome = row_outcome = StepOutcome.SUCCESS
        elif deadline_hit:
            outcome, row_outcome = Ending.DEADLINE, StepOutcome.TIMEOUT
        else:
            outcome = row_outcome = StepOutcome.FAILURE
        summary = (
            f"{len(succeeded_branches)} of {len(branches)} branches succeeded"
            f" (join {parallel.join})"
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
        if outcome is Ending.DEADLINE:
            transition = "failed"
        else:
            transition = run.next_after(group, succeeded=succeeded)
        recording.ends(
            StepEnd(
                outcome=row_outcome,
                result=summary,
                output={b.id: results.get(b.id, NOT_RUN).outcome for b in branches},
                error=None if succeeded else summary,
                transitioned_to=transition,
            )
        )
    return Attempt(outcome, None, fix, failed, healthy)


async def _join(
    execution_id: str, branches: list[Step], run_branch: BranchRunner, *, join: str
) -> dict[str, Attempt]:
    """The branches at once, each in its own task; for ``any``, until one succeeds."""
    tasks = {
        asyncio.create_task(run_branch(branch), name=f"{execution_id}:{branch.id}"): branch
        for branch in branches
    }
    results: dict[str, Attempt] = {}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[tasks[task].id] = task.result()
            if join == "any" and any(r.succeeded for r in results.values()):
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results
