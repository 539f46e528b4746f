"""The queue of finished executions for the learning loop, in the order they were judged.

An execution is queued once the supervisor has written its verdict (the fresh probe
after the run, ``executions.healthy_after``): learning counts a run a success only
on health, so it must not count it before the verdict. ``loops.learn_from_executions``
counts what is queued. What is still queued at a stop, and runs nobody judges (a
playbook another one calls), are counted by ``LearningService.catch_up`` at the next
start or analysis: the store's ``learned`` flag, not this queue, is the record of
what was counted.
"""

from __future__ import annotations

import asyncio


class FinishedExecutions:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def judged(self, execution_id: str) -> None:
        """The execution has ended and its verdict is written: count it."""
        self.queue.put_nowait(execution_id)
