"""What an execution is made of while it runs and when it ends: the runner's data."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from graylogic_supervisor.backoff import backoff_delay
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome, FailedStep
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import StepResult
from graylogic_supervisor.playbooks.expression_context import StepRecord
from graylogic_supervisor.playbooks.model import Playbook, RetryPolicy, Step
from graylogic_supervisor.store.executions import StepEnd


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


class RunState:
    """One execution's step numbers (1, 2, 3 …, shared by steps, retries and undos) and
    what each step came to, as conditions and templates see it (``steps.<id>``)."""

    def __init__(self) -> None:
        self.value = 0
        self.records: dict[str, StepRecord] = {}
        # the playbook's parameters, as a caller set them: ``params.<name>`` in expressions
        self.parameters: dict[str, Any] = {}

    @classmethod
    def from_rows(
        cls, playbook: Playbook, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[RunState, list[Step]]:
        """A stopped execution's state, read back from its step rows (the checkpoint), and
        the steps it completed, in order (for undoing). Undo rows and the step that was
        running are not records: the step runs again."""
        state = cls()
        state.parameters = dict(playbook.parameters)
        completed: list[Step] = []
        for row in rows:
            state.value = max(state.value, int(row["seq"]))
            step_id = str(row["step_id"])
            outcome = StepOutcome(row["outcome"])
            if ":" in step_id or outcome in (StepOutcome.RUNNING, StepOutcome.INTERRUPTED):
                continue
            state.records[step_id] = StepRecord(
                outcome,
                json.loads(row["output"]) if row["output"] else {},
                row["result"] or row["error"] or "",
                float(row["duration_seconds"] or 0.0),
                int(row["attempt"]),
            )
            if outcome is StepOutcome.SUCCESS:
                with contextlib.suppress(KeyError):
                    completed.append(playbook.step(step_id))
        return state, completed

    def next(self) -> int:
        self.value += 1
        return self.value


class Ending(StrEnum):
    """What a step came to beyond the outcomes its row can say."""

    DEADLINE = "deadline"  # the playbook's deadline ended it (its row says ``timeout``)
    CANCELLED = "cancelled"  # a branch cancelled before it finished: a join ``any`` won


@dataclass
class Attempt:
    """What one step (all its attempts, or a group's branches) came to."""

    outcome: StepOutcome | Ending
    result: StepResult | None
    fix: tuple[Step, StepResult] | None = None  # a successful fix-kind step within it
    failed_step: Step | None = None  # a group's branch that failed it
    healthy: bool = False  # a verify-kind step within it succeeded: the component is healthy

    @property
    def succeeded(self) -> bool:
        return self.outcome is StepOutcome.SUCCESS

    def failed(self, step: Step) -> FailedStep:
        """The step this unsuccessful attempt of ``step`` failed on, for the run's outcome."""
        failed = self.failed_step or step
        outcome = StepOutcome.TIMEOUT if self.outcome is Ending.DEADLINE else self.outcome
        return FailedStep(failed.id, failed.action, outcome)


class Credit:
    """What fixed the failure, as far as the run has seen: a fix is credited only on health.

    Most fixes succeed whether or not they removed the fault, so the fix credited is
    the last one that succeeded before a verification found the component healthy
    (since the previous such verification); healthy with no fix before it, nothing is
    (it recovered by itself). A fix with no verification after it is credited
    provisionally: the supervisor's fresh probe after the run gives the verdict.
    """

    def __init__(self) -> None:
        self._pending: tuple[Step, StepResult] | None = None  # since the last healthy
        self._verified: tuple[Step, StepResult] | None = None

    def saw(self, attempt: Attempt) -> None:
        """One step's (or group's) outcome, in the order the run saw them."""
        if attempt.succeeded and attempt.fix is not None:
            self._pending = attempt.fix
        if attempt.healthy:
            self._verified, self._pending = self._pending, None

    @property
    def fixer(self) -> tuple[Step, StepResult] | None:
        """The fix to credit at the run's end: unverified if one came after the last
        healthy verification, else the one that verification credited (None: none)."""
        return self._pending if self._pending is not None else self._verified

    def what_fixed_it(self, last: tuple[Step, StepResult | None]) -> tuple[str, str]:
        """(the step credited, what it did): the fix credited, else ``last`` (the step that
        ended the run, and its result if it gave one)."""
        fixer, fix_result = self.fixer or last
        what = f"{fixer.action} {fixer.target or ''}".strip()
        if fix_result is not None:
            what += f": {fix_result.result}"
        return fixer.id, what


def retry_pause(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    return backoff_delay(
        initial_s=policy.backoff_seconds,
        multiplier=policy.multiplier,
        max_s=policy.max_backoff_seconds,
        jitter=policy.jitter,
        attempt=retry_number,
        rng=rng,
    )


# What a branch came to when it was cancelled before finishing (a join ``any`` won).
NOT_RUN = Attempt(Ending.CANCELLED, None)
