"""A circuit breaker: after repeated failures, stop trying for a while, then try once.

Used around the supervisor's own broker connection; the recovery policy keeps a
breaker per component with the same three states and its own rules for opening.
"""

from __future__ import annotations

from enum import StrEnum

from graylogic_supervisor.clock import Clock


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until the open time has passed
    HALF_OPEN = "half_open"  # one trial call decides


class CircuitBreaker:
    def __init__(self, clock: Clock, failure_threshold: int, open_s: float) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._clock = clock
        self._threshold = failure_threshold
        self._open_s = open_s
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.wait_s() == 0:
            self._state = BreakerState.HALF_OPEN
        return self._state

    def wait_s(self) -> float:
        """How long until a call may go through (0 unless open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(self._opened_at + self._open_s - self._clock.monotonic(), 0.0)

    def record_success(self) -> None:
        self._failures = 0
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        """A trial that fails, or the threshold reached, opens the breaker."""
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock.monotonic()

    def trial_now(self) -> None:
        """Skip the rest of the open time (there is reason to think the far end is back)."""
        if self._state is BreakerState.OPEN:
            self._state = BreakerState.HALF_OPEN
