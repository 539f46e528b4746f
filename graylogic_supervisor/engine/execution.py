"""What an execution is made of while it runs and when it ends: the runner's data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from graylogic_supervisor.backoff import backoff_delay
from graylogic_supervisor.engine.action import FailureInfo, StepResult
from graylogic_supervisor.engine.expression_context import StepRecord
from graylogic_supervisor.playbooks.model import Playbook, RetryPolicy, Step
from graylogic_supervisor.store.executions import StepEnd


@dataclass(frozen=True)
class FailedStep:
    """The step an unsuccessful execution ended on: the basis of its failure signature."""

    step_id: str
    action: str
    outcome: str  # failure | timeout | error


@dataclass(frozen=True)
class ExecutionOutcome:
    execution_id: str
    status: str
    resolved_by: str | None
    duration_seconds: float
    detail: str
    failed_step: FailedStep | None = None


class ExecutionObserver(Protocol):
    """Told of progress as it happens (MQTT status); must not block."""

    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None: ...

    def step_started(
        self, execution_id: str, playbook: Playbook, step: Step, attempt: int
    ) -> None: ...

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None: ...

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None: ...


def skip_target(playbook: Playbook, step: Step) -> str:
    """Where a skipped step leads: the next step in order (the last one: its on_success)."""
    if playbook.uses_needs:
        return "needs"  # the graph decides, not the order
    index = playbook.steps.index(step)
    if index + 1 < len(playbook.steps):
        return playbook.steps[index + 1].id
    return playbook.resolve_transition(step, step.on_success)


class RunState:
    """One execution's step numbers (1, 2, 3 …, shared by steps, retries and undos) and
    what each step came to, as conditions and templates see it (``steps.<id>``)."""

    def __init__(self) -> None:
        self.value = 0
        self.records: dict[str, StepRecord] = {}
        # the playbook's parameters, as a caller set them: ``params.<name>`` in expressions
        self.parameters: dict[str, Any] = {}

    def next(self) -> int:
        self.value += 1
        return self.value


@dataclass
class Attempt:
    """What one step (all its attempts, or a group's branches) came to."""

    outcome: str
    result: StepResult | None
    fix: tuple[Step, StepResult] | None = None  # a successful fix-kind step within it
    failed_step: Step | None = None  # a group's branch that failed it


def retry_pause(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    return backoff_delay(
        policy.backoff_seconds,
        policy.multiplier,
        policy.max_backoff_seconds,
        policy.jitter,
        retry_number,
        rng,
    )


# What a branch came to when it was cancelled before finishing (a join ``any`` won).
NOT_RUN = Attempt("cancelled", None)
