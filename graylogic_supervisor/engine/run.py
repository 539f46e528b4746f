"""One execution while it runs: what it runs for, where it stands, how its steps are recorded.

Every step row of a run is written through ``Run.step``, an async context manager:
entering it writes the step's ``running`` row (committed before the body, so before
any action runs), and leaving it records how the step ended, or, when the body
raised, that it was interrupted (cancelled) or failed with an error, and re-raises.

One commit per step boundary: a step's end is not written on its own but with the
run's next record (the next step's start, an undo's start or the execution's end),
in one transaction. The run writes whatever is left before it waits for anything
else (a retry's pause, a pause by a person: ``flush``), and at once when other
steps run beside it (a parallel group, a wave of ``needs:``), so a step's end is
never left unwritten while the run waits. The observer hears of a step's end only
once it is committed, and of the execution's start once its row is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import pairwise

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome, FailedStep
from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.engine.control import ExecutionControls, ExecutionHandle
from graylogic_supervisor.engine.execution import ExecutionObserver, RunState
from graylogic_supervisor.playbooks.model import NEXT, Playbook, Step
from graylogic_supervisor.store.executions import (
    ExecutionEnd,
    ExecutionFinish,
    ExecutionRepository,
    ExecutionStart,
    StepEnd,
    StepFinish,
    StepStart,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRow:
    """What a step's row says as it starts."""

    step_id: str
    name: str
    action: str
    target: str | None
    attempt: int = 1

    @classmethod
    def of(cls, step: Step, *, target: str | None = None, attempt: int = 1) -> StepRow:
        """A playbook step's row (``target`` as filled in, else the step's own)."""
        return cls(step.id, step.name, step.action, target or step.target, attempt)


class StepRecording:
    """One step row while its step runs; the body says how the step ended (``ends``)."""

    def __init__(self, row_id: int, began: float) -> None:
        self.row_id = row_id
        self.began = began  # on the clock's monotonic scale
        self.end: StepEnd | None = None

    def ends(self, end: StepEnd) -> None:
        self.end = end


class Run:
    """One execution of one playbook version for one failure, from its start (or where a
    resumed one carries on) to its end."""

    def __init__(
        self,
        *,
        execution_id: str,
        playbook: Playbook,
        failure: FailureInfo,
        state: RunState,
        started: float,
        clock: Clock,
        executions: ExecutionRepository,
        observer: ExecutionObserver | None = None,
        controls: ExecutionControls | None = None,
        acting: Callable[[], None] | None = None,
    ) -> None:
        """``started`` is on the clock's monotonic scale (a resumed run's is in the past);
        ``acting`` is called once, when the first step's row is committed and its action
        is about to run (what the caller does beside the run can wait until then)."""
        self.execution_id = execution_id
        self.playbook = playbook
        self.failure = failure
        self.state = state
        self.started = started
        self.deadline = started + playbook.timeout_seconds
        self.completed: list[Step] = []  # succeeded, in order: what undoing goes back over
        self.uses_needs = playbook.uses_needs
        self._after = {step.id: after.id for step, after in pairwise(playbook.steps)}
        self._clock = clock
        self._executions = executions
        self._observer = observer
        self._controls = controls
        self._handle: ExecutionHandle | None = None
        self._begun: ExecutionStart | None = None
        self._unwritten: list[tuple[StepFinish, Step | None]] = []
        self._under_way = 0
        self._acting = acting

    @property
    def log_extra(self) -> dict[str, str]:
        return {"playbook": self.playbook.id, "error_id": self.failure.error_id}

    @property
    def cancelled_by(self) -> str | None:
        return self._handle.cancelled_by if self._handle is not None else None

    def next_after(self, step: Step, *, succeeded: bool) -> str:
        """Where ``step`` leads on its outcome: a step id, ``done`` or ``escalate``."""
        target = step.on_success if succeeded else step.on_failure
        if target == NEXT and step.id in self._after:
            return self._after[step.id]
        return self.playbook.resolve_transition(step, target)

    def begin(self, start: ExecutionStart) -> None:
        """The execution's row, written with the run's first record."""
        self._begun = start

    def resumed(self) -> None:
        """A run that carries on an execution already in the store."""
        if self._observer is not None:
            self._observer.execution_started(self.execution_id, self.playbook, self.failure)

    def open_controls(self) -> None:
        """From here the run can be paused, cancelled and overridden by a person."""
        if self._controls is not None:
            self._handle = self._controls.open(self.execution_id, self.deadline)

    def close_controls(self) -> None:
        if self._handle is not None and self._controls is not None:
            self._controls.close(self.execution_id)
            self._handle = None

    async def wait_while_paused(self) -> None:
        """Between steps: wait while a person has paused the run; its deadline moves on."""
        if self._handle is None or self._controls is None:
            return
        if self._handle.paused:
            await self.flush()
        self.deadline += await self._controls.wait_while_paused(self._handle)

    async def flush(self) -> None:
        """Write what is not written yet: before the run waits for anything but a step."""
        if self._begun is not None or self._unwritten:
            await self._write()

    @asynccontextmanager
    async def step(
        self, row: StepRow, *, observed: Step | None = None, instant: bool = False
    ) -> AsyncIterator[StepRecording]:
        """Record one step: its ``running`` row is committed before the body runs.

        ``observed``: the step the observer hears of (an attempt of a playbook step);
        ``instant``: a row that ends as it starts (a skipped or refused step).
        """
        clock = self._clock
        now = clock.now()
        start = StepStart(
            execution_id=self.execution_id,
            seq=self.state.next(),
            step_id=row.step_id,
            name=row.name,
            action=row.action,
            target=row.target,
            attempt=row.attempt,
            started_at=now,
        )
        row_id = await self._write(starting=start)
        assert row_id is not None
        if observed is not None and self._observer is not None:
            self._observer.step_started(self.execution_id, self.playbook, observed, row.attempt)
        if self._acting is not None:
            acting, self._acting = self._acting, None
            acting()
        self._beat()
        recording = StepRecording(row_id, clock.monotonic())
        self._under_way += 1
        try:
            yield recording
        except BaseException as exc:
            self._under_way -= 1
            if isinstance(exc, asyncio.CancelledError):
                end = StepEnd(StepOutcome.INTERRUPTED, None, {}, "cancelled", None)
            else:
                end = StepEnd(StepOutcome.ERROR, None, {}, f"{type(exc).__name__}: {exc}", None)
            duration = clock.monotonic() - recording.began
            self._unwritten.append((StepFinish(row_id, clock.now(), duration, end), None))
            await self._write()
            raise
        self._under_way -= 1
        assert recording.end is not None, "a step's body says how it ended"
        if instant:
            finish = StepFinish(row_id, now, 0.0, recording.end)
        else:
            duration = clock.monotonic() - recording.began
            finish = StepFinish(row_id, clock.now(), duration, recording.end)
        self._unwritten.append((finish, observed))
        if self._under_way:
            await self._write()  # other steps run beside this one: no boundary to share
        self._beat()

    async def finish(self, end: ExecutionEnd, failed_step: FailedStep | None) -> ExecutionOutcome:
        """The execution's end, written with the ends not written yet."""
        self.close_controls()
        clock = self._clock
        duration = clock.monotonic() - self.started
        await self._write(ended=ExecutionFinish(self.execution_id, clock.now(), duration, end))
        outcome = ExecutionOutcome(
            execution_id=self.execution_id,
            status=end.status,
            resolved_by=end.resolved_by,
            duration_seconds=duration,
            detail=end.detail,
            failed_step=failed_step,
        )
        logger.log(
            logging.INFO if end.status is ExecutionStatus.RESOLVED else logging.WARNING,
            "%s %s for %s: %s in %.3f s (%s)",
            self.playbook.id,
            self.execution_id,
            self.failure.component,
            end.status,
            duration,
            end.detail,
            extra=self.log_extra,
        )
        if self._observer is not None:
            self._observer.execution_finished(self.playbook, self.failure, outcome)
        return outcome

    async def _write(
        self, *, starting: StepStart | None = None, ended: ExecutionFinish | None = None
    ) -> int | None:
        """One boundary, one transaction: what is unwritten, then ``starting``/``ended``."""
        begun, self._begun = self._begun, None
        unwritten, self._unwritten = self._unwritten, []
        row_id = await self._executions.record_progress(
            begun=begun,
            finished=[finish for finish, _ in unwritten],
            starting=starting,
            ended=ended,
        )
        observer = self._observer
        if observer is not None:
            if begun is not None:
                observer.execution_started(self.execution_id, self.playbook, self.failure)
            for finish, step in unwritten:
                if step is not None:
                    observer.step_finished(self.execution_id, self.playbook, step, finish.end)
        return row_id

    def _beat(self) -> None:
        if self._controls is not None:
            self._controls.beat(self.execution_id)
