"""An execution observer that hands each finished execution to the learning loop.

Observers must not block, so it only queues the id; ``loops.learn_from_executions``
counts it. What is still queued at a stop is counted at the next start
(``LearningService.catch_up``): the store's ``learned`` flag, not this queue,
is the record of what was counted.
"""

from __future__ import annotations

import asyncio

from graylogic_supervisor.engine.action import FailureInfo
from graylogic_supervisor.engine.execution import ExecutionOutcome
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.executions import StepEnd


class FinishedExecutions:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        """Only finished executions are counted."""

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        """Only finished executions are counted."""

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        """Only finished executions are counted."""

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        self.queue.put_nowait(outcome.execution_id)
