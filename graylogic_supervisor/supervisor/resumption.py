"""Runs a stop interrupted in an idempotent step: found at start-up, carried on from there."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.records import StepRecord
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import RecordViews

# What the row of a step to be run again says: a start-up that stops before the run
# carries on leaves it so, and the next start-up resumes from it.
RUN_AGAIN = "the supervisor stopped while this step ran; run again"


@dataclass(frozen=True)
class Resumable:
    execution_id: str
    playbook: Playbook
    failure: FailureInfo
    step_id: str
    elapsed_s: float
    rows: list[dict[str, Any]]  # the steps so far, as the runner reads them back


async def resumable_executions(
    executions: ExecutionRepository,
    views: RecordViews,
    versions: PlaybookVersions,
    clock: Clock,
) -> list[Resumable]:
    """Executions a stop interrupted in an idempotent step: they carry on from it.

    The step that was running is marked ``interrupted`` (its row stays, with why);
    the execution keeps running from that step once the daemon is up.
    """
    found = []
    for execution in await views.running_executions():
        steps = await views.steps(execution.id)
        current = stopped_step(steps)
        playbook = await versions.definition(execution.playbook_id, execution.playbook_version)
        if current is None or playbook is None or "." in current.step_id:
            continue
        try:
            step = playbook.step(current.step_id)
        except KeyError:
            continue
        if not step.idempotent:
            continue
        if current.outcome is StepOutcome.RUNNING:
            await executions.interrupt_step(current.id, clock.now(), RUN_AGAIN)
        failure_id = execution.failure_id or ""  # every playbook run has its failure
        failure = await views.failure(failure_id)
        started = datetime.fromisoformat(execution.started_at.replace("Z", "+00:00"))
        found.append(
            Resumable(
                execution_id=execution.id,
                playbook=playbook,
                failure=FailureInfo(
                    failure_id,
                    execution.component,
                    execution.error_id,
                    failure.message if failure is not None else "",
                ),
                step_id=step.id,
                elapsed_s=max((clock.now() - started).total_seconds(), 0.0),
                rows=[asdict(s) for s in steps],
            )
        )
    return found


def stopped_step(steps: list[StepRecord]) -> StepRecord | None:
    """The step a stop interrupted: the one still running, or the last row if an earlier
    start-up marked it to run again and was itself stopped before the run carried on."""
    running = next((s for s in reversed(steps) if s.outcome is StepOutcome.RUNNING), None)
    if running is not None or not steps:
        return running
    last = steps[-1]
    return last if last.outcome is StepOutcome.INTERRUPTED and last.error == RUN_AGAIN else None
