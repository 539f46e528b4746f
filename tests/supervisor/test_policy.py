"""Every transition of the give-up state machine, and what each rule does when it cannot compute."""

from __future__ import annotations

import pytest

from graylogic_supervisor.supervisor.policy import (
    Breaker,
    PolicySettings,
    Reason,
    RecoveryPolicy,
    Signature,
)
from tests.clocks import ManualClock

SETTINGS = PolicySettings(
    attempt_window_s=3600,
    rearm_after_s=300,
    open_cooldown_s=600,
    max_open_cooldown_s=1800,
    termination_window_s=3600,
    termination_min_sample=10,
)
RESTART_FAILED = Signature("restart_service", "failure", "restart", "ERR-INFRA-MQTT-001")
VERIFY_TIMEOUT = Signature("wait_for_health", "timeout", "verify", "ERR-INFRA-MQTT-001")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def policy(clock: ManualClock) -> RecoveryPolicy:
    return RecoveryPolicy(SETTINGS, clock)


def attempt(policy: RecoveryPolicy, succeeded: bool, signature: Signature | None = None) -> None:
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert verdict.allowed, verdict
    policy.record_outcome("mqtt", succeeded, signature)
    policy.execution_finished("resolved" if succeeded else "escalated")


def test_an_empty_window_allows_the_first_attempt(policy: RecoveryPolicy) -> None:
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert verdict.allowed
    assert verdict.reason is Reason.WITHIN_BUDGET
    assert verdict.attempts_in_window == 0
    assert verdict.termination_rate is None
    assert verdict.detail == "attempt 1 of 3; termination rate not enough executions"


def test_the_budget_is_spent_then_the_breaker_opens(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
        clock.advance(60)
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert not verdict.allowed
    assert verdict.reason is Reason.ATTEMPT_BUDGET
    assert verdict.attempts_in_window == 3
    assert policy.breaker("mqtt") is Breaker.OPEN
    assert policy.reopens_in("mqtt") == 600


def test_attempts_age_out_of_the_window(policy: RecoveryPolicy, clock: ManualClock) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT):
        attempt(policy, False, signature)
    clock.advance(3601)
    verdict = policy.evaluate("mqtt", max_attempts=2)
    assert verdict.allowed
    assert verdict.attempts_in_window == 0


def test_the_same_signature_twice_opens_the_breaker_at_once(policy: RecoveryPolicy) -> None:
    policy.evaluate("mqtt", max_attempts=5)
    assert policy.record_outcome("mqtt", False, RESTART_FAILED) is None
    policy.evaluate("mqtt", max_attempts=5)
    denial = policy.record_outcome("mqtt", False, RESTART_FAILED)
    assert denial is not None
    assert denial.reason is Reason.REPEATED_SIGNATURE
    assert "restart_service/failure at restart (ERR-INFRA-MQTT-001)" in denial.detail
    assert policy.breaker("mqtt") is Breaker.OPEN


def test_different_signatures_or_none_do_not_make_a_streak(policy: RecoveryPolicy) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, None, None):
        policy.evaluate("mqtt", max_attempts=10)
        assert policy.record_outcome("mqtt", False, signature) is None
    assert policy.breaker("mqtt") is Breaker.CLOSED


def test_a_success_between_breaks_the_signature_streak(policy: RecoveryPolicy) -> None:
    attempt(policy, False, RESTART_FAILED)
    attempt(policy, True)
    policy.evaluate("mqtt", max_attempts=10)
    assert policy.record_outcome("mqtt", False, RESTART_FAILED) is None


def test_open_breaker_denies_until_its_cooldown_then_allows_one_trial(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    attempt(policy, False, RESTART_FAILED)
    attempt(policy, False, RESTART_FAILED)  # opens
    clock.advance(599)
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert (verdict.allowed, verdict.reason) == (False, Reason.BREAKER_OPEN)
    clock.advance(1)
    trial = policy.evaluate("mqtt", max_attempts=3)
    assert (trial.allowed, trial.reason) == (True, Reason.TRIAL_ATTEMPT)
    assert policy.breaker("mqtt") is Breaker.HALF_OPEN


def test_a_failed_trial_reopens_for_twice_as_long_up_to_the_cap(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    attempt(policy, False, RESTART_FAILED)
    attempt(policy, False, RESTART_FAILED)
    for expected in (1200, 1800, 1800):
        clock.advance(policy.reopens_in("mqtt"))
        assert policy.evaluate("mqtt", max_attempts=3).reason is Reason.TRIAL_ATTEMPT
        denial = policy.record_outcome("mqtt", False, VERIFY_TIMEOUT)
        assert denial is not None and denial.reason is Reason.BREAKER_OPEN
        assert policy.reopens_in("mqtt") == expected


def test_a_successful_trial_closes_but_the_budget_stays_spent_until_rearmed(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
    assert not policy.evaluate("mqtt", max_attempts=3).allowed
    clock.advance(600)
    assert policy.evaluate("mqtt", max_attempts=3).reason is Reason.TRIAL_ATTEMPT
    policy.record_outcome("mqtt", True, None)
    assert policy.breaker("mqtt") is Breaker.CLOSED
    # It fails again at once: the spent budget still counts (no flapping restart loop).
    policy.health_changed("mqtt", True)
    clock.advance(10)
    policy.health_changed("mqtt", False)
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert (verdict.allowed, verdict.reason) == (False, Reason.ATTEMPT_BUDGET)


def test_a_healthy_spell_past_the_grace_rearms_everything(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
    assert not policy.evaluate("mqtt", max_attempts=3).allowed
    # A technician fixes it; it stays healthy past the grace, then fails anew.
    policy.health_changed("mqtt", True)
    clock.advance(300)
    policy.health_changed("mqtt", False)
    verdict = policy.evaluate("mqtt", max_attempts=3)
    assert verdict.allowed
    assert verdict.reason is Reason.WITHIN_BUDGET
    assert verdict.attempts_in_window == 0
    assert policy.breaker("mqtt") is Breaker.CLOSED


def test_a_component_still_healthy_when_evaluated_rearms_on_the_spot(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
    policy.health_changed("mqtt", True)
    clock.advance(301)
    assert policy.evaluate("mqtt", max_attempts=3).allowed


def test_components_have_their_own_budgets(policy: RecoveryPolicy) -> None:
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
    assert not policy.evaluate("mqtt", max_attempts=3).allowed
    assert policy.evaluate("bridge-knx", max_attempts=3).allowed


def test_termination_rate_needs_a_sample_before_it_gates(policy: RecoveryPolicy) -> None:
    for _ in range(9):
        policy.execution_finished("escalated")
    reading = policy.termination()
    assert (reading.rate, reading.finished, reading.terminated) == (None, 9, 9)
    assert policy.evaluate("other", max_attempts=3).allowed


def test_termination_rate_at_ten_percent_stops_new_recoveries(policy: RecoveryPolicy) -> None:
    for _ in range(18):
        policy.execution_finished("resolved")
    policy.execution_finished("escalated")
    policy.execution_finished("interrupted")  # does not count either way
    assert policy.termination().rate == pytest.approx(1 / 19)
    assert policy.evaluate("a", max_attempts=3).allowed
    assert not policy.termination_alert_due()
    policy.execution_finished("failed")
    assert policy.termination().rate == pytest.approx(0.10)
    verdict = policy.evaluate("b", max_attempts=3)
    assert (verdict.allowed, verdict.reason) == (False, Reason.TERMINATION_RATE)
    assert "termination rate 10% (2 of 20" in verdict.detail
    assert policy.termination_alert_due()


def test_termination_alert_fires_at_eight_percent_before_the_gate(
    policy: RecoveryPolicy,
) -> None:
    for _ in range(23):
        policy.execution_finished("resolved")
    policy.execution_finished("escalated")
    policy.execution_finished("escalated")
    assert policy.termination().rate == pytest.approx(0.08)
    assert policy.termination_alert_due()
    assert policy.evaluate("a", max_attempts=3).allowed


def test_termination_rate_forgets_executions_older_than_its_window(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    for _ in range(10):
        policy.execution_finished("escalated")
    assert policy.termination().rate == 1.0
    clock.advance(3601)
    assert policy.termination().finished == 0
    assert policy.evaluate("mqtt", max_attempts=3).allowed


def test_the_policy_defaults_are_the_config_defaults() -> None:
    from graylogic_supervisor.config import SupervisorConfig
    from graylogic_supervisor.reload import policy_settings

    assert policy_settings(SupervisorConfig()) == PolicySettings()
