"""When to try again and when to stop: one state machine per component, plus a system gate.

Other supervisors get this wrong in known ways: Monit's restart counter never
resets after a recovery and its give-up state never re-arms; supervisord
retries for ever once a process outlived ``startsecs``; systemd's start-rate
limit cannot fire once its restart backoff reaches its cap. The rules here,
each with what it does when it cannot compute:

1. **Attempt budget.** At most ``max_attempts`` executions per component within
   ``attempt_window_s``. Attempts age out of the window, so the budget recovers
   by itself. (Empty window: nothing to count, the attempt is allowed.)
2. **Breaker.** Exhausting the budget, or the same failure signature twice in a
   row, opens the component's breaker: no attempt for ``open_cooldown_s``. Then
   one trial attempt (half-open). A trial that works closes the breaker; one
   that fails opens it again for twice as long, up to ``max_open_cooldown_s``.
   The cooldown it reached is kept until the component re-arms (rule 3), so a
   component that works only briefly after each trial backs off further each
   time instead of starting again from ``open_cooldown_s``; except an essential
   (the broker: the whole building waits on it), whose successful trial brings
   its next cooldown back to ``open_cooldown_s`` (a person has been paged by then).
3. **Re-arm after success.** A successful recovery does not wipe the slate: the
   attempts stay counted until the component has stayed healthy for
   ``rearm_after_s``. Only then do budget, signature and breaker reset. (A
   component never seen healthy again never re-arms; a human fixing it does
   re-arm it, by the same rule.)
4. **Same signature twice.** A signature is the failing step's action, its
   outcome and the step (with the error id). Two consecutive unsuccessful
   executions with the same one are not going to go differently a third time.
   (An execution without a failing step, e.g. interrupted, has no signature and
   breaks no streak.)
5. **Termination rate.** System-wide, over ``termination_window_s``: the share
   of finished executions that ended escalated or failed. At
   ``termination_rate_limit`` (10%) or more no new automatic recovery starts; at
   ``termination_rate_alert`` (8%) an alert goes out. With fewer than
   ``termination_min_sample`` executions in the window the rate is not
   meaningful (one escalation on a quiet site would read 100%): the gate allows
   and says so in its reason.

   *What counts* (``termination_count``): ``resolved`` counts as finished,
   ``escalated`` and ``failed`` as terminated, unless the failing step's outcome
   was ``error`` (the supervisor could not run the step: an action that raised,
   its own resources exhausted, a step it could not fill in: nothing was learnt
   about the component). ``interrupted`` never counts (the supervisor stopped or
   crashed during the run, or a shutdown or a person cancelled it), and an
   execution whose records could not be written never reaches an end at all.
   The gate judges automation by what it did to components, never by the
   supervisor's own impairment.

   *Essentials are never shut out.* While the gate is closed a component in
   ``essentials`` still gets the breaker's trial cadence: every attempt is a
   trial (``essential_trial``), the budget and an open breaker still apply, and
   a failed trial opens its breaker for ``open_cooldown_s``, doubling up to
   ``max_open_cooldown_s``. Other components stay held.

6. **Safe mode.** ``safe_mode_failures`` *distinct components* with an incident
   opened within ``safe_mode_window_s`` say something bigger is wrong (a power
   dip, a switch gone): automatic recovery stops except for the ``essentials``,
   and only a person leaves safe mode. The same component failing again and
   again is that component's problem, which its own budget, breaker and
   flapping rule handle: one bridge (or anyone faking its heartbeat) cannot put
   the site in safe mode. (Fewer components than the threshold: nothing to
   decide.)
7. **Flapping.** A component whose health really changed (healthy to unhealthy
   or back; its first reading after start-up is no change) ``flap_changes``
   times within ``flap_window_s`` is held for ``stabilisation_s`` before a run
   may start, instead of starting a run on every dip.
8. **Critical patterns.** A failure that matches a configured pattern (error
   id and/or a regular expression on its message) is never handled
   automatically: it goes straight to a human.

**Restarts.** Budget, breaker, signature and the termination window are state a
restarted supervisor must not forget (a daemon restarted by its watchdog would
otherwise start with a clean slate every time). ``record(component)`` gives
what the store keeps of a component, ``restore`` and ``restore_finished`` put
it back at start-up (``supervisor/rebuild.py`` reads the store).

Nothing here does I/O: the supervisor records every evaluation it asks for,
and reads safe mode and maintenance windows from the store before asking.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from graylogic_supervisor.breaker import BreakerState as Breaker
from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import CriticalPattern, PolicyConfig
from graylogic_supervisor.playbooks.regexguard import MAX_MATCH_TEXT

# Executions that end so count toward the termination rate (True: terminated).
COUNTED_STATUSES = {"resolved": False, "escalated": True, "failed": True}
# A failing step with this outcome says the supervisor could not run it (rule 5).
IMPAIRED_STEP_OUTCOMES = frozenset({"error"})


def termination_count(status: str, failed_step_outcome: str | None) -> bool | None:
    """How an execution counts toward the termination rate: True terminated, False
    finished well, None not at all (the supervisor stopped or was itself impaired)."""
    terminated = COUNTED_STATUSES.get(status)
    if terminated and failed_step_outcome in IMPAIRED_STEP_OUTCOMES:
        return None
    return terminated


class Reason(StrEnum):
    """Why an attempt was allowed or denied; the label of the viability metric."""

    WITHIN_BUDGET = "within_budget"
    TRIAL_ATTEMPT = "trial_attempt"
    ESSENTIAL_TRIAL = "essential_trial"  # a trial of an essential under the termination gate
    ATTEMPT_BUDGET = "attempt_budget"
    BREAKER_OPEN = "breaker_open"
    REPEATED_SIGNATURE = "repeated_signature"
    TERMINATION_RATE = "termination_rate"
    SAFE_MODE = "safe_mode"
    MAINTENANCE = "maintenance"
    FLAPPING = "flapping"
    CRITICAL_PATTERN = "critical_pattern"


@dataclass(frozen=True)
class Signature:
    """What failed: the same one twice means trying again is futile."""

    action: str
    outcome: str
    step_id: str
    error_id: str

    def __str__(self) -> str:
        return f"{self.action}/{self.outcome} at {self.step_id} ({self.error_id})"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: Reason
    detail: str
    attempts_in_window: int
    max_attempts: int
    termination_rate: float | None
    breaker: Breaker


@dataclass(frozen=True)
class TerminationReading:
    rate: float | None  # None: too few executions in the window to mean anything
    finished: int
    terminated: int


@dataclass(frozen=True)
class ComponentRecord:
    """What must survive a restart of one component's give-up state (times monotonic)."""

    component: str
    breaker: Breaker
    opened_at: float | None  # when the breaker last opened
    open_for: float  # the cooldown it reached (0: never opened since re-armed)
    failed_trials: int  # trials that failed since it last re-armed
    signature: Signature | None  # the last unsuccessful execution's, for rule 4
    rearmed_at: float | None  # attempts before this do not count


@dataclass
class _ComponentState:
    attempts: deque[float] = field(default_factory=deque)
    breaker: Breaker = Breaker.CLOSED
    opened_at: float | None = None
    open_for: float = 0.0
    failed_trials: int = 0
    last_signature: Signature | None = None
    rearmed_at: float | None = None
    healthy: bool | None = None  # last reading; None: none yet
    healthy_since: float | None = None
    changes: deque[float] = field(default_factory=deque)
    held_until: float = 0.0


def _compiled(
    patterns: Iterable[CriticalPattern],
) -> list[tuple[str | None, re.Pattern[str] | None, str]]:
    """Each critical pattern as (error id, compiled message pattern, why)."""
    return [(p.error_id, re.compile(p.message) if p.message else None, p.reason) for p in patterns]


class RecoveryPolicy:
    """The give-up rules above, with the ``policy`` section of the config as it is."""

    def __init__(self, settings: PolicyConfig, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._components: dict[str, _ComponentState] = {}
        self._finished: deque[tuple[float, bool]] = deque()  # (when, terminated)
        self._failures: deque[tuple[float, str]] = deque()  # incidents opened, for safe mode
        self._changed: set[str] = set()  # components whose record changed since taken
        self._critical = _compiled(settings.critical_patterns)

    @property
    def settings(self) -> PolicyConfig:
        return self._settings

    def update_settings(self, settings: PolicyConfig) -> None:
        """A reload: new thresholds apply from the next decision; history is kept."""
        self._settings = settings
        self._critical = _compiled(settings.critical_patterns)

    def _state(self, component: str) -> _ComponentState:
        return self._components.setdefault(component, _ComponentState())

    def breaker(self, component: str) -> Breaker:
        return self._state(component).breaker

    def reopens_in(self, component: str) -> float:
        """Seconds until an open breaker allows its trial attempt (0 when not open)."""
        state = self._state(component)
        if state.breaker is not Breaker.OPEN or state.opened_at is None:
            return 0.0
        return max(state.opened_at + state.open_for - self._clock.monotonic(), 0.0)

    # -- what survives a restart -------------------------------------------------

    def record(self, component: str) -> ComponentRecord:
        state = self._state(component)
        return ComponentRecord(
            component,
            state.breaker,
            state.opened_at,
            state.open_for,
            state.failed_trials,
            state.last_signature,
            state.rearmed_at,
        )

    def take_changed(self) -> list[ComponentRecord]:
        """The records changed since the last call, to be written to the store."""
        changed = [self.record(component) for component in sorted(self._changed)]
        self._changed.clear()
        return changed

    def mark_unsaved(self, components: Iterable[str]) -> None:
        """Records that could not be written: taken again next time."""
        self._changed.update(components)

    def restore(self, record: ComponentRecord, attempts: Iterable[float]) -> None:
        """At start-up, before any decision: a component's state as the store kept it.

        ``attempts`` are the times of its allowed evaluations; those before its
        last re-arm or outside the window are dropped here.
        """
        state = self._state(record.component)
        state.breaker = record.breaker
        state.opened_at = record.opened_at
        state.open_for = record.open_for
        state.failed_trials = record.failed_trials
        state.last_signature = record.signature
        state.rearmed_at = record.rearmed_at
        oldest = self._clock.monotonic() - self._settings.attempt_window_s
        if record.rearmed_at is not None:
            oldest = max(oldest, record.rearmed_at)
        state.attempts = deque(sorted(t for t in attempts if t >= oldest))

    def restore_attempts(self, component: str, attempts: Iterable[float]) -> None:
        """Attempts of a component with no record (never opened, never failed)."""
        self.restore(self.record(component), attempts)

    def restore_finished(self, finished: Iterable[tuple[float, bool]]) -> None:
        """At start-up: the termination window's executions, (when, terminated)."""
        oldest = self._clock.monotonic() - self._settings.termination_window_s
        self._finished = deque(sorted(item for item in finished if item[0] >= oldest))

    # -- health, for re-arming and flapping ---------------------------------------

    def health_changed(self, component: str, healthy: bool) -> None:
        """Told of every health change, so a long-enough healthy spell re-arms.

        Only a real transition (healthy to unhealthy or back) counts toward
        flapping; the first reading after start-up, or a repeat, does not.
        """
        state = self._state(component)
        now = self._clock.monotonic()
        if state.healthy is not None and state.healthy != healthy:
            state.changes.append(now)
        state.healthy = healthy
        self._prune(state.changes, now - self._settings.flap_window_s)
        if healthy:
            if state.healthy_since is None:
                state.healthy_since = now
            return
        self._rearm_if_due(state, component, now)
        state.healthy_since = None

    def _rearm_if_due(self, state: _ComponentState, component: str, now: float) -> None:
        if state.healthy_since is None:
            return
        if now - state.healthy_since < self._settings.rearm_after_s:
            return
        if (
            state.attempts
            or state.last_signature is not None
            or state.breaker is not Breaker.CLOSED
            or state.open_for
        ):
            state.rearmed_at = now
            self._changed.add(component)
        state.attempts.clear()
        state.last_signature = None
        state.breaker = Breaker.CLOSED
        state.open_for = 0.0
        state.failed_trials = 0

    # -- decisions -------------------------------------------------------------

    def evaluate(self, component: str, max_attempts: int) -> Verdict:
        """May a recovery execution of ``component`` start now? Counts it if so."""
        settings = self._settings
        state = self._state(component)
        now = self._clock.monotonic()
        self._rearm_if_due(state, component, now)
        self._prune(state.attempts, now - settings.attempt_window_s)
        used = len(state.attempts)
        reading = self.termination()

        def verdict(allowed: bool, reason: Reason, detail: str) -> Verdict:
            return Verdict(allowed, reason, detail, used, max_attempts, reading.rate, state.breaker)

        gate: str | None = None
        if reading.rate is not None and reading.rate >= settings.termination_rate_limit:
            gate = (
                f"termination rate {reading.rate:.0%} ({reading.terminated} of {reading.finished}"
                f" in the last {settings.termination_window_s:g} s)"
                f" >= {settings.termination_rate_limit:.0%}"
            )
            if not self.is_essential(component):
                return verdict(False, Reason.TERMINATION_RATE, gate)
        trial = False
        if state.breaker is Breaker.OPEN:
            remaining = self.reopens_in(component)
            if remaining > 0:
                return verdict(
                    False, Reason.BREAKER_OPEN, f"breaker open for another {remaining:.0f} s"
                )
            state.breaker = Breaker.HALF_OPEN
            self._changed.add(component)
            trial = True
        elif state.breaker is Breaker.HALF_OPEN:
            trial = True
        if not trial and used >= max_attempts:
            self._open(state, component, now)
            return verdict(
                False,
                Reason.ATTEMPT_BUDGET,
                f"{used} attempts in the last {settings.attempt_window_s:g} s"
                f" (budget {max_attempts})",
            )
        state.attempts.append(now)
        if gate is not None:
            # An essential under the gate: every attempt is a trial, so a failure
            # opens its breaker and the next one waits for the breaker's cadence.
            if state.breaker is not Breaker.HALF_OPEN:
                state.breaker = Breaker.HALF_OPEN
                self._changed.add(component)
            return verdict(
                True,
                Reason.ESSENTIAL_TRIAL,
                f"{gate}, but {component} is essential: one trial attempt,"
                " the next after the breaker's cooldown if it fails",
            )
        if trial:
            return verdict(True, Reason.TRIAL_ATTEMPT, "breaker half-open: one trial attempt")
        rate = "not enough executions" if reading.rate is None else f"{reading.rate:.0%}"
        return verdict(
            True,
            Reason.WITHIN_BUDGET,
            f"attempt {used + 1} of {max_attempts}; termination rate {rate}",
        )

    def record_outcome(
        self, component: str, succeeded: bool, signature: Signature | None
    ) -> Verdict | None:
        """After an execution; returns a denial when this outcome opened the breaker."""
        state = self._state(component)
        now = self._clock.monotonic()
        if succeeded:
            if state.last_signature is not None or state.breaker is not Breaker.CLOSED:
                self._changed.add(component)
            state.last_signature = None
            if state.breaker is Breaker.HALF_OPEN:
                state.breaker = Breaker.CLOSED  # its cooldown stays until it re-arms,
                if self.is_essential(component):  # but an essential's trial cadence stays
                    state.open_for = 0.0  # the first cooldown: the site waits on it
            return None
        if state.breaker is Breaker.HALF_OPEN:
            state.failed_trials += 1
            self._open(state, component, now)
            return self._denial(state, Reason.BREAKER_OPEN, "the trial attempt failed")
        repeated = signature is not None and signature == state.last_signature
        if signature != state.last_signature:
            self._changed.add(component)
        state.last_signature = signature
        if repeated:
            self._open(state, component, now)
            return self._denial(
                state, Reason.REPEATED_SIGNATURE, f"the same failure twice: {signature}"
            )
        return None

    def execution_finished(self, status: str, failed_step_outcome: str | None = None) -> None:
        """System-wide bookkeeping for the termination rate (what counts: rule 5)."""
        terminated = termination_count(status, failed_step_outcome)
        if terminated is not None:
            self._finished.append((self._clock.monotonic(), terminated))

    def termination(self) -> TerminationReading:
        now = self._clock.monotonic()
        while self._finished and self._finished[0][0] < now - self._settings.termination_window_s:
            self._finished.popleft()
        finished = len(self._finished)
        terminated = sum(1 for _, ended_badly in self._finished if ended_badly)
        if finished < self._settings.termination_min_sample:
            return TerminationReading(None, finished, terminated)
        return TerminationReading(terminated / finished, finished, terminated)

    def termination_alert_due(self) -> bool:
        reading = self.termination()
        return reading.rate is not None and reading.rate >= self._settings.termination_rate_alert

    # -- safe mode, flapping, critical patterns --------------------------------

    def failure_detected(self, component: str) -> bool:
        """Count a new incident; True when the distinct components failing within the
        window call for safe mode (rule 6)."""
        now = self._clock.monotonic()
        self._failures.append((now, component))
        oldest = now - self._settings.safe_mode_window_s
        while self._failures and self._failures[0][0] < oldest:
            self._failures.popleft()
        return self.failing_components() >= self._settings.safe_mode_failures

    def failing_components(self) -> int:
        """Distinct components with an incident opened within the safe-mode window."""
        return len({component for _, component in self._failures})

    def is_essential(self, component: str) -> bool:
        return component in self._settings.essentials

    def stabilisation_hold(self, component: str) -> float:
        """Seconds a flapping component must still wait before a run may start (0: none)."""
        state = self._state(component)
        now = self._clock.monotonic()
        self._prune(state.changes, now - self._settings.flap_window_s)
        if state.held_until <= now and len(state.changes) >= self._settings.flap_changes:
            state.held_until = now + self._settings.stabilisation_s
            state.changes.clear()
        return max(state.held_until - now, 0.0)

    def critical_match(self, error_id: str, message: str) -> str | None:
        """Why this failure must go to a human at once, or None."""
        for pattern_error_id, pattern, why in self._critical:
            if pattern_error_id is not None and pattern_error_id != error_id:
                continue
            if pattern is not None and not pattern.search(message[:MAX_MATCH_TEXT]):
                continue
            return why
        return None

    def held(self, reason: Reason, detail: str, component: str, max_attempts: int) -> Verdict:
        """A denial decided outside the attempt rules (safe mode, maintenance, …)."""
        state = self._state(component)
        return Verdict(
            False,
            reason,
            detail,
            len(state.attempts),
            max_attempts,
            self.termination().rate,
            state.breaker,
        )

    # -- internals ------------------------------------------------------------

    def _open(self, state: _ComponentState, component: str, now: float) -> None:
        settings = self._settings
        state.open_for = (
            settings.open_cooldown_s
            if state.open_for == 0
            else min(state.open_for * 2, settings.max_open_cooldown_s)
        )
        state.breaker = Breaker.OPEN
        state.opened_at = now
        self._changed.add(component)

    def _denial(self, state: _ComponentState, reason: Reason, detail: str) -> Verdict:
        return Verdict(
            False,
            reason,
            f"{detail}; breaker open for {state.open_for:g} s",
            len(state.attempts),
            0,
            self.termination().rate,
            state.breaker,
        )

    @staticmethod
    def _prune(times: deque[float], oldest: float) -> None:
        while times and times[0] < oldest:
            times.popleft()
