"""The recovery policy's give-up state across restarts: written as it changes, rebuilt at start.

A supervisor restarted (by its watchdog, by a crash, by a person) must deny what
the one before it would have denied; otherwise every restart would hand a
failing component a fresh budget and a closed breaker. At start-up the policy
gets back, from the store:

- each component's attempts within the attempt window (allowed evaluations,
  after its last re-arm);
- its breaker, when it opened, the cooldown it reached, its failed trials and
  its last failure signature (``recovery_state``, written as they change);
- the termination window's finished executions, counted by the policy's own
  rule (``termination_count``).

The store keeps wall-clock times and the policy reasons on the monotonic clock:
a stored moment ``w`` becomes ``monotonic() - (now() - w)``, so the time the
daemon was down counts toward every cooldown and window, as it would have.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from graylogic_supervisor.breaker import BreakerState
from graylogic_supervisor.clock import Clock
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.store.recovery_state import RecoveryStateRepository, StoredRecovery
from graylogic_supervisor.supervisor.policy import (
    ComponentRecord,
    RecoveryPolicy,
    Signature,
    termination_count,
)

logger = logging.getLogger(__name__)


class ClockMap:
    """Moments between the store's wall clock and the policy's monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self._now = clock.now()
        self._monotonic = clock.monotonic()

    def to_monotonic(self, moment: datetime) -> float:
        ago = max((self._now - moment).total_seconds(), 0.0)  # a future moment: now
        return self._monotonic - ago

    def to_wall(self, monotonic: float) -> datetime:
        return self._now - timedelta(seconds=self._monotonic - monotonic)


@dataclass(frozen=True)
class Rebuilt:
    components: int  # with a stored breaker or signature
    attempts: int  # within the attempt window
    finished: int  # executions counted in the termination window
    terminated: int


async def rebuild_policy(
    policy: RecoveryPolicy,
    state: RecoveryStateRepository,
    incidents: IncidentRepository,
    executions: ExecutionRepository,
    *,
    clock: Clock,
) -> Rebuilt:
    """Put back what the store knows into a policy that has decided nothing yet."""
    settings = policy.settings
    times = ClockMap(clock)
    now = clock.now()
    attempts: defaultdict[str, list[float]] = defaultdict(list)
    since = now - timedelta(seconds=settings.attempt_window_s)
    for component, moment in await incidents.allowed_since(since):
        attempts[component].append(times.to_monotonic(moment))
    stored = {row.component: row for row in await state.load()}
    for component, row in stored.items():
        policy.restore(_record(row, times), attempts.get(component, ()))
    for component, moments in attempts.items():
        if component not in stored:
            policy.restore_attempts(component, moments)
    finished = []
    since = now - timedelta(seconds=settings.termination_window_s)
    for moment, status, failed_outcome in await executions.finished_since(since):
        terminated = termination_count(status, failed_outcome)
        if terminated is not None:
            finished.append((times.to_monotonic(moment), terminated))
    policy.restore_finished(finished)
    policy.take_changed()  # what was just read back needs no writing
    reading = policy.termination()
    rebuilt = Rebuilt(
        len(stored),
        sum(len(policy_attempts) for policy_attempts in attempts.values()),
        reading.finished,
        reading.terminated,
    )
    logger.info(
        "recovery policy rebuilt from the store: %d component(s) with a breaker or signature,"
        " %d attempt(s) in the window, %d finished execution(s) (%d terminated) in the"
        " termination window",
        rebuilt.components,
        rebuilt.attempts,
        rebuilt.finished,
        rebuilt.terminated,
    )
    return rebuilt


def _record(row: StoredRecovery, times: ClockMap) -> ComponentRecord:
    return ComponentRecord(
        row.component,
        BreakerState(row.breaker),
        None if row.opened_at is None else times.to_monotonic(row.opened_at),
        row.open_for_s,
        row.failed_trials,
        None if row.signature is None else Signature(*row.signature),
        None if row.rearmed_at is None else times.to_monotonic(row.rearmed_at),
    )


class PolicyJournal:
    """Writes each change of the policy's records; a failed write is tried again next time."""

    def __init__(
        self, policy: RecoveryPolicy, state: RecoveryStateRepository, clock: Clock
    ) -> None:
        self._policy = policy
        self._state = state
        self._clock = clock
        self._failing: str | None = None  # the last error, logged once

    async def save(self) -> None:
        """Never raises a store error: recovery must not wait on its own bookkeeping."""
        records = self._policy.take_changed()
        if not records:
            return
        times = ClockMap(self._clock)
        rows = [
            StoredRecovery(
                record.component,
                str(record.breaker),
                None if record.opened_at is None else times.to_wall(record.opened_at),
                record.open_for,
                record.failed_trials,
                None
                if record.signature is None
                else (
                    record.signature.action,
                    record.signature.outcome,
                    record.signature.step_id,
                    record.signature.error_id,
                ),
                None if record.rearmed_at is None else times.to_wall(record.rearmed_at),
            )
            for record in records
        ]
        try:
            await self._state.save(rows, self._clock.now())
        except StoreError as exc:
            self._policy.mark_unsaved(record.component for record in records)
            if str(exc) != self._failing:
                logger.error(
                    "the recovery policy's state could not be written (kept in memory,"
                    " written with the next change): %s",
                    exc,
                )
            self._failing = str(exc)
            return
        if self._failing is not None:
            logger.info("the recovery policy's state is written again")
            self._failing = None
