"""The circuit breaker around the supervisor's own broker connection: every transition."""

from __future__ import annotations

import pytest

from graylogic_supervisor.breaker import BreakerState, CircuitBreaker
from tests.clocks import ManualClock


def test_closed_until_the_threshold_then_open() -> None:
    breaker = CircuitBreaker(ManualClock(), failure_threshold=3, open_s=30)
    for _ in range(2):
        breaker.record_failure()
        assert breaker.state is BreakerState.CLOSED
        assert breaker.wait_s() == 0
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.wait_s() == 30


def test_open_turns_half_open_when_its_time_is_up() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failure_threshold=1, open_s=30)
    breaker.record_failure()
    clock.advance(29.5)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.wait_s() == 0


def test_a_failed_trial_reopens_and_a_good_one_closes() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failure_threshold=5, open_s=10)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_failure()  # one failed trial is enough
    assert breaker.state is BreakerState.OPEN
    clock.advance(10)
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # the count started again


def test_trial_now_skips_the_rest_of_the_open_time() -> None:
    breaker = CircuitBreaker(ManualClock(), failure_threshold=1, open_s=60)
    breaker.record_failure()
    breaker.trial_now()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.wait_s() == 0


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(ManualClock(), failure_threshold=0, open_s=1)
