"""A token bucket on the injected clock: so many events a second, with a short burst."""

from __future__ import annotations

from graylogic_supervisor.clock import Clock


class TokenBucket:
    def __init__(self, clock: Clock, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._clock = clock
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at = clock.monotonic()

    def take(self) -> bool:
        """One event now: True if within the rate, False if it is one too many."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
