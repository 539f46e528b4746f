"""The bounded ring of what happened lately, captured with every failure.

"The broker restarted two minutes before the bridge failed" is the kind of
context that tells two similar-looking failures apart.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.memory import RecentEvent
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.executions import StepEnd

EventKind = Literal["health", "execution", "config", "user"]


class EventRing:
    def __init__(self, clock: Clock, size: int = 50) -> None:
        self._clock = clock
        self._events: deque[RecentEvent] = deque(maxlen=size)

    def add(self, kind: EventKind, subject: str, detail: str) -> None:
        self._events.append(
            RecentEvent(at=self._clock.now(), kind=kind, subject=subject, detail=detail[:200])
        )

    def snapshot(self) -> list[RecentEvent]:
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)


class ExecutionEvents:
    """An execution observer that puts each run's start and end in the ring."""

    def __init__(self, ring: EventRing) -> None:
        self._ring = ring

    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        self._ring.add("execution", playbook.id, f"{execution_id} started for {failure.component}")

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        """Steps are too fine-grained to tell failures apart."""

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        """Steps are too fine-grained to tell failures apart."""

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        self._ring.add(
            "execution",
            playbook.id,
            f"{outcome.execution_id} {outcome.status} for {failure.component}",
        )
