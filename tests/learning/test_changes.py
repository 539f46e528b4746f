"""Each kind of change applied to a playbook: rewired explicitly, validated like a file."""

from __future__ import annotations

import pytest

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.learning.changes import (
    AddCondition,
    AddStep,
    ChangeError,
    RemoveStep,
    ReorderSteps,
    SetRetry,
    SetTimeout,
    apply_change,
    bump,
    parse_change,
)
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.sim.actions import scenario_registry
from graylogic_supervisor.sim.scenario import load_scenario
from tests.learning.simulated import SCENARIOS


@pytest.fixture
def specs() -> dict[str, ActionSpec]:
    scenario = load_scenario(SCENARIOS / "mqtt-mixed-causes.yaml")
    return scenario_registry(scenario, {}).specs()


@pytest.fixture
def basic(specs: dict[str, ActionSpec]) -> Playbook:
    return load_playbook(SCENARIOS / "mqtt-basic.yaml", specs).playbook


def flow(playbook: Playbook) -> list[tuple[str, str, str]]:
    return [
        (
            s.id,
            playbook.resolve_transition(s, s.on_success),
            playbook.resolve_transition(s, s.on_failure),
        )
        for s in playbook.steps
    ]


NEW = {"id": "unblock", "name": "Remove the firewall rule", "action": "remove_firewall_rule"}


def test_a_step_added_before_another_takes_over_its_entries(basic: Playbook, specs) -> None:
    changed = apply_change(
        basic, AddStep(step={**NEW, "on_success": "done"}, before="check_broker"), "1.1.0", specs
    )
    assert changed.version == "1.1.0"
    assert flow(changed) == [
        ("unblock", "done", "check_broker"),
        ("check_broker", "verify", "restart"),
        ("restart", "verify", "escalate"),
        ("verify", "done", "escalate"),
    ]


def test_a_step_added_after_a_failure_carries_on_where_it_led(basic: Playbook, specs) -> None:
    changed = apply_change(
        basic,
        AddStep(step={**NEW, "on_success": "verify"}, after_failure_of="restart"),
        "1.1.0",
        specs,
    )
    assert flow(changed)[1:3] == [
        ("restart", "verify", "unblock"),
        ("unblock", "verify", "escalate"),
    ]


def test_a_fix_added_after_a_failed_verification_gets_a_verification_of_its_own(
    basic: Playbook, specs
) -> None:
    check = {"id": "verify_unblock", "name": "Verify", "action": "wait_for_health"}
    changed = apply_change(
        basic,
        AddStep(step=NEW, after_failure_of="verify", verification={**check, "target": "mqtt"}),
        "1.1.0",
        specs,
    )
    # verify's failure tries the new fix, whose success is checked again, never in a loop
    assert flow(changed) == [
        ("check_broker", "verify", "restart"),
        ("restart", "verify", "escalate"),
        ("verify", "done", "unblock"),
        ("unblock", "verify_unblock", "escalate"),
        ("verify_unblock", "done", "escalate"),
    ]


def test_a_step_added_after_a_success_takes_over_that_transition(basic: Playbook, specs) -> None:
    changed = apply_change(
        basic,
        AddStep(step={**NEW, "on_success": "done"}, after_success_of="restart"),
        "1.1.0",
        specs,
    )
    assert flow(changed)[1:3] == [("restart", "unblock", "escalate"), ("unblock", "done", "verify")]


def test_removing_the_first_step_makes_its_route_the_entry(basic: Playbook, specs) -> None:
    changed = apply_change(
        basic, RemoveStep(step_id="check_broker", route_to="restart"), "1.1.0", specs
    )
    assert [s.id for s in changed.steps] == ["restart", "verify"]


def test_a_removed_check_routed_to_done_never_turns_a_failure_into_done(
    basic: Playbook, specs
) -> None:
    changed = apply_change(basic, RemoveStep(step_id="verify", route_to="done"), "1.1.0", specs)
    assert flow(changed) == [("check_broker", "done", "restart"), ("restart", "done", "escalate")]


def test_a_chain_is_tried_in_the_new_order(basic: Playbook, specs) -> None:
    chained = apply_change(
        basic,
        AddStep(step={**NEW, "on_success": "verify"}, after_failure_of="restart"),
        "1.1.0",
        specs,
    )
    changed = apply_change(
        chained,
        ReorderSteps(chain=["restart", "unblock"], order=["unblock", "restart"]),
        "1.2.0",
        specs,
    )
    assert flow(changed) == [
        ("check_broker", "verify", "unblock"),
        ("unblock", "verify", "restart"),
        ("restart", "verify", "escalate"),
        ("verify", "done", "escalate"),
    ]


def test_conditions_retries_and_timeouts_are_set_on_the_step(basic: Playbook, specs) -> None:
    changed = apply_change(
        basic,
        AddCondition(step_id="verify", when="steps.check_broker.outcome != 'success'"),
        "1.0.1",
        specs,
    )
    assert changed.step("verify").when is not None
    retried = apply_change(
        basic, SetRetry(step_id="restart", retry={"attempts": 2}), "1.0.1", specs
    )
    assert retried.step("restart").retry is not None and retried.step("restart").retry.attempts == 2
    shorter = apply_change(basic, SetTimeout(step_id="restart", timeout_seconds=12), "1.0.1", specs)
    assert shorter.step("restart").timeout_seconds == 12


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (RemoveStep(step_id="nope", route_to="done"), "no step 'nope'"),
        (AddStep(step={**NEW, "id": "verify"}, before="restart"), "already has a step 'verify'"),
        (AddCondition(step_id="verify", when="steps.check_broker.outcome =="), "when"),
        (SetRetry(step_id="restart", retry={"attempts": 99}), "retry"),
        (AddStep(step={**NEW, "action": "reboot_site"}, before="restart"), "reboot_site"),
        (RemoveStep(step_id="check_broker", route_to="done"), "first step"),
        (ReorderSteps(chain=["restart", "verify"], order=["verify", "restart"]), "on failure"),
    ],
)
def test_a_change_that_does_not_apply_or_breaks_the_playbook_is_refused(
    basic: Playbook, specs, change, message: str
) -> None:
    with pytest.raises(ChangeError, match=message):
        apply_change(basic, change, "1.1.0", specs)


def test_structure_changes_bump_the_minor_version_tuning_the_patch() -> None:
    assert bump("1.2.3", "add_step") == "1.3.0"
    assert bump("1.2.3", "reorder_steps") == "1.3.0"
    assert bump("1.2.3", "set_retry") == "1.2.4"


def test_a_change_parses_from_its_stored_form() -> None:
    change = parse_change({"type": "set_timeout", "step_id": "restart", "timeout_seconds": 9})
    assert change == SetTimeout(step_id="restart", timeout_seconds=9)
