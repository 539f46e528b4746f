"""Every transition of the give-up state machine, and what each rule does when it cannot compute."""

from __future__ import annotations

import itertools

import pytest

from graylogic_supervisor.config import PolicyConfig
from graylogic_supervisor.supervisor.policy import (
    Breaker,
    Reason,
    RecoveryPolicy,
    Signature,
    termination_count,
)
from tests.clocks import ManualClock

SETTINGS = PolicyConfig(
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

    assert SupervisorConfig().policy == PolicyConfig()


# -- the termination gate never shuts out an essential ----------------------------

ESSENTIAL = PolicyConfig(
    open_cooldown_s=120,
    max_open_cooldown_s=480,
    termination_min_sample=10,
    essentials=("mqtt",),
)


def close_the_gate(policy: RecoveryPolicy) -> None:
    for _ in range(10):
        policy.execution_finished("escalated")
    assert policy.termination().rate == 1.0


def test_under_the_gate_an_essential_gets_a_trial_at_once_and_others_stay_held(
    clock: ManualClock,
) -> None:
    policy = RecoveryPolicy(ESSENTIAL, clock)
    close_the_gate(policy)
    held = policy.evaluate("bridge-knx", max_attempts=3)
    assert (held.allowed, held.reason) == (False, Reason.TERMINATION_RATE)
    trial = policy.evaluate("mqtt", max_attempts=3)
    assert (trial.allowed, trial.reason) == (True, Reason.ESSENTIAL_TRIAL)
    assert "termination rate 100%" in trial.detail and "mqtt is essential" in trial.detail
    assert policy.breaker("mqtt") is Breaker.HALF_OPEN
    assert policy.record_outcome("mqtt", True, None) is None
    assert policy.breaker("mqtt") is Breaker.CLOSED
    assert policy.evaluate("bridge-knx", max_attempts=3).reason is Reason.TERMINATION_RATE


def test_under_the_gate_failed_trials_of_an_essential_follow_the_breakers_cadence(
    clock: ManualClock,
) -> None:
    policy = RecoveryPolicy(ESSENTIAL, clock)
    close_the_gate(policy)
    trials = []
    for _ in range(6):
        verdict = policy.evaluate("mqtt", max_attempts=100)
        assert verdict.allowed, verdict
        trials.append(clock.monotonic())
        denial = policy.record_outcome("mqtt", False, None)
        assert denial is not None and denial.reason is Reason.BREAKER_OPEN
        clock.advance(policy.reopens_in("mqtt") - 1)
        early = policy.evaluate("mqtt", max_attempts=100)
        assert (early.allowed, early.reason) == (False, Reason.BREAKER_OPEN)
        clock.advance(1)
        for _ in range(9):  # the gate stays closed throughout
            policy.execution_finished("escalated")
    gaps = [later - earlier for earlier, later in itertools.pairwise(trials)]
    assert gaps == [120, 240, 480, 480, 480]


def test_under_the_gate_an_essential_still_has_its_budget(clock: ManualClock) -> None:
    policy = RecoveryPolicy(ESSENTIAL, clock)
    close_the_gate(policy)
    for _ in range(2):  # two successful trials: it keeps dying after them
        assert policy.evaluate("mqtt", max_attempts=2).reason is Reason.ESSENTIAL_TRIAL
        policy.record_outcome("mqtt", True, None)
        clock.advance(5)
    spent = policy.evaluate("mqtt", max_attempts=2)
    assert (spent.allowed, spent.reason) == (False, Reason.ATTEMPT_BUDGET)
    clock.advance(120)
    assert policy.evaluate("mqtt", max_attempts=2).reason is Reason.ESSENTIAL_TRIAL


def cooldowns_when_it_dies_after_each_trial(
    policy: RecoveryPolicy, clock: ManualClock
) -> list[float]:
    """The budget spent, then three trials that work and die again seconds later: the
    breaker's cooldown before each trial."""
    for signature in (RESTART_FAILED, VERIFY_TIMEOUT, RESTART_FAILED):
        attempt(policy, False, signature)
    cooldowns = []
    for _ in range(3):
        assert policy.evaluate("mqtt", max_attempts=3).reason is Reason.ATTEMPT_BUDGET
        cooldowns.append(policy.reopens_in("mqtt"))
        clock.advance(policy.reopens_in("mqtt"))
        assert policy.evaluate("mqtt", max_attempts=3).reason is Reason.TRIAL_ATTEMPT
        policy.record_outcome("mqtt", True, None)
        policy.health_changed("mqtt", True)
        clock.advance(5)  # dies again seconds later
        policy.health_changed("mqtt", False)
    return cooldowns


def test_a_component_that_fails_after_every_successful_trial_backs_off_further(
    policy: RecoveryPolicy, clock: ManualClock
) -> None:
    """Its cooldown is kept until it re-arms: 600, 1200, 1800 s, not 600 s every time."""
    assert cooldowns_when_it_dies_after_each_trial(policy, clock) == [600, 1200, 1800]


def test_an_essential_that_fails_after_every_successful_trial_keeps_the_first_cooldown(
    clock: ManualClock,
) -> None:
    """The building waits on its broker: tried every 600 s, not 600, 1200, 1800 s."""
    policy = RecoveryPolicy(SETTINGS.model_copy(update={"essentials": ["mqtt"]}), clock)
    assert cooldowns_when_it_dies_after_each_trial(policy, clock) == [600, 600, 600]


# -- what counts toward the termination rate ----------------------------------------


@pytest.mark.parametrize(
    ("status", "failed_step", "counted"),
    [
        ("resolved", None, False),
        ("escalated", "failure", True),
        ("escalated", "timeout", True),
        ("failed", "timeout", True),
        ("failed", None, True),
        ("escalated", "error", None),  # the supervisor could not run the step
        ("failed", "error", None),
        ("interrupted", None, None),  # shutdown, a crash, a person's cancel
        ("interrupted", "failure", None),
        ("running", None, None),
    ],
)
def test_what_counts_toward_the_termination_rate(
    status: str, failed_step: str | None, counted: bool | None
) -> None:
    assert termination_count(status, failed_step) is counted


def test_executions_the_supervisor_could_not_run_never_close_the_gate(
    policy: RecoveryPolicy,
) -> None:
    for _ in range(10):
        policy.execution_finished("resolved")
    for _ in range(20):  # e.g. its probe raised "Too many open files"
        policy.execution_finished("escalated", "error")
        policy.execution_finished("interrupted")
    reading = policy.termination()
    assert (reading.rate, reading.finished, reading.terminated) == (0.0, 10, 0)
    assert policy.evaluate("bridge-knx", max_attempts=3).allowed


# -- safe mode counts components, flapping counts transitions ----------------------


def test_safe_mode_needs_distinct_components_failing_within_its_window(
    clock: ManualClock,
) -> None:
    policy = RecoveryPolicy(PolicyConfig(safe_mode_failures=3, safe_mode_window_s=60), clock)
    assert not any(policy.failure_detected("bridge-knx") for _ in range(50))
    assert not policy.failure_detected("bridge-dali")
    clock.advance(61)  # the first two are out of the window
    assert not policy.failure_detected("mqtt")
    assert not policy.failure_detected("bridge-dali")
    assert policy.failure_detected("bridge-knx")
    assert policy.failing_components() == 3


def test_flapping_counts_real_transitions_only(clock: ManualClock) -> None:
    policy = RecoveryPolicy(
        PolicyConfig(flap_changes=3, flap_window_s=60, stabilisation_s=30), clock
    )
    policy.health_changed("bridge-knx", False)  # the first reading: no transition
    policy.health_changed("bridge-knx", False)  # a repeat: none either
    policy.health_changed("bridge-knx", True)
    policy.health_changed("bridge-knx", True)
    policy.health_changed("bridge-knx", False)
    assert policy.stabilisation_hold("bridge-knx") == 0
    policy.health_changed("bridge-knx", True)
    assert policy.stabilisation_hold("bridge-knx") == 30
    assert policy.stabilisation_hold("mqtt") == 0  # its own count


# -- what survives a restart ---------------------------------------------------------


def test_a_restored_policy_denies_what_the_first_would_have_denied(clock: ManualClock) -> None:
    first = RecoveryPolicy(SETTINGS, clock)
    attempt(first, False, RESTART_FAILED)
    attempt(first, False, VERIFY_TIMEOUT)
    clock.advance(10)
    assert first.evaluate("mqtt", max_attempts=3).allowed
    first.record_outcome("mqtt", False, VERIFY_TIMEOUT)  # the same twice: opens
    records = first.take_changed()
    assert [r.component for r in records] == ["mqtt"]
    assert first.take_changed() == []  # taken once
    clock.advance(100)
    second = RecoveryPolicy(SETTINGS, clock)
    second.restore(records[0], [0.0, 0.0, 10.0])
    for policy in (first, second):
        verdict = policy.evaluate("mqtt", max_attempts=3)
        assert (verdict.allowed, verdict.reason) == (False, Reason.BREAKER_OPEN)
        assert policy.reopens_in("mqtt") == 500
    assert second.record("mqtt") == first.record("mqtt")


def test_attempts_before_a_rearm_are_not_restored(clock: ManualClock) -> None:
    first = RecoveryPolicy(SETTINGS, clock)
    attempt(first, False, RESTART_FAILED)
    first.health_changed("mqtt", True)
    clock.advance(300)
    first.health_changed("mqtt", False)  # re-armed: the slate is clean
    [record] = first.take_changed()
    assert record.rearmed_at == 300
    second = RecoveryPolicy(SETTINGS, clock)
    second.restore(record, [0.0])
    assert second.evaluate("mqtt", max_attempts=1).allowed
