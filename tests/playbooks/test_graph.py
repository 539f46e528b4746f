"""The step graph checks: transitions, duplicate ids, reachability and bounded loops.

Each is exercised through ``load_playbook`` on a real file, because what a person
sees is the file, line and field of the refusal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.playbooks.graph import graph_problems
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.playbooks.model import Playbook
from tests import sources
from tests.sources import PLAYBOOK_HEADER, Problem, line_of

HEADER = PLAYBOOK_HEADER + "steps:\n"

PROBE_THEN_RESTART = """\
  - id: probe
    name: Probe the broker
    action: check_mqtt
    on_success: done
    on_failure: restart
  - id: restart
    name: Restart the broker
    action: restart_service
    target: mosquitto
"""


def write(directory: Path, steps: str) -> Path:
    path = directory / "playbook.yaml"
    path.write_text(HEADER + steps, encoding="utf-8")
    return path


def refusal(path: Path, actions: dict[str, ActionSpec]) -> list[Problem]:
    return sources.refusal(path, lambda p: load_playbook(p, actions), PlaybookError)


def only_problem(path: Path, actions: dict[str, ActionSpec]) -> Problem:
    return sources.only(refusal(path, actions))


# --- transitions -------------------------------------------------------------------------


def test_misspelt_failure_transition_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        PROBE_THEN_RESTART + "    on_success: probe\n    max_visits: 2\n    on_failure: restrat\n",
    )

    assert only_problem(path, actions) == (
        line_of(path, "on_failure: restrat"),
        "steps[1].on_failure",
        "transition to unknown step 'restrat'",
    )


def test_misspelt_success_transition_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: dnoe
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "on_success: dnoe"),
        "steps[0].on_success",
        "transition to unknown step 'dnoe'",
    )


def test_every_dangling_transition_is_reported(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: finished
    on_failure: restrat
""",
    )

    assert [(line, field) for line, field, _ in refusal(path, actions)] == [
        (line_of(path, "on_success: finished"), "steps[0].on_success"),
        (line_of(path, "on_failure: restrat"), "steps[0].on_failure"),
    ]


def test_explicit_next_on_the_last_step_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, PROBE_THEN_RESTART + "    on_success: next\n")

    assert only_problem(path, actions) == (
        line_of(path, "on_success: next"),
        "steps[1].on_success",
        "'next' on the last step leads nowhere",
    )


def test_default_next_on_the_last_step_is_reported_at_that_step(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    # on_success defaults to next: a last step must say where success leads
    path = write(tmp_path, PROBE_THEN_RESTART)

    assert only_problem(path, actions) == (
        line_of(path, "- id: restart"),
        "steps[1].on_success",
        "'next' on the last step leads nowhere",
    )


def test_next_leads_to_the_following_step(tmp_path: Path, actions: dict[str, ActionSpec]) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: done
    on_failure: next
  - id: restart
    name: Restart
    action: restart_service
    target: mosquitto
    on_success: done
""",
    )

    playbook = load_playbook(path, actions).playbook

    probe = playbook.step("probe")
    assert playbook.resolve_transition(probe, probe.on_failure) == "restart"
    assert playbook.resolve_transition(probe, probe.on_success) == "done"


def test_duplicate_step_id_is_reported_at_the_second_one(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe the broker
    action: check_mqtt
    on_failure: next
  - id: probe  # again
    name: Probe it again
    action: check_mqtt
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "# again"),
        "steps[1].id",
        "duplicate step id 'probe'",
    )


def test_duplicate_step_id_is_found_by_the_graph_check_itself() -> None:
    step = {"name": "Probe", "action": "check_mqtt", "on_success": "done"}
    playbook = Playbook.model_validate(
        {
            "id": "PLAY-TEST-RECOVER-001",
            "name": "Test",
            "version": "1.0.0",
            "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
            "steps": [
                {"id": "probe", **step, "on_failure": "next"},
                {"id": "probe", **step, "name": "Probe it again"},
            ],
        }
    )

    assert graph_problems(playbook) == [(("steps", 1, "id"), "duplicate step id 'probe'")]


# --- reachability ------------------------------------------------------------------------


def test_unreachable_step_is_reported_at_its_id(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: done
    on_failure: escalate
  - id: orphan
    name: Never run
    action: check_mqtt
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: orphan"),
        "steps[1].id",
        "step 'orphan' can never be reached",
    )


def test_step_reached_only_through_a_later_step_is_reachable(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: done
    on_failure: restart
  - id: notify
    name: Tell someone
    action: log
    params: {message: broker restarted}
    on_success: done
  - id: restart
    name: Restart
    action: restart_service
    target: mosquitto
    on_success: notify
""",
    )

    playbook = load_playbook(path, actions).playbook

    assert [step.id for step in playbook.steps] == ["probe", "notify", "restart"]


# --- loops -------------------------------------------------------------------------------


def test_loop_without_a_bound_is_refused_at_its_first_step(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, PROBE_THEN_RESTART + "    on_success: probe\n")

    assert only_problem(path, actions) == (
        line_of(path, "- id: probe"),
        "steps[0]",
        "loop with no bound (probe -> restart -> probe): set max_visits on one of its steps",
    )


@pytest.mark.parametrize("bounded", ["probe", "restart"])
def test_same_loop_is_accepted_with_max_visits_on_either_step(
    tmp_path: Path, actions: dict[str, ActionSpec], bounded: str
) -> None:
    steps = (PROBE_THEN_RESTART + "    on_success: probe\n").replace(
        f"  - id: {bounded}\n", f"  - id: {bounded}\n    max_visits: 3\n"
    )
    path = write(tmp_path, steps)

    playbook = load_playbook(path, actions).playbook

    assert playbook.step(bounded).max_visits == 3
    assert playbook.step("restart").on_success == "probe"


def test_self_loop_without_a_bound_is_refused(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe until it answers
    action: check_mqtt
    on_success: done
    on_failure: probe
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: probe"),
        "steps[0]",
        "loop with no bound (probe -> probe): set max_visits on one of its steps",
    )


def test_self_loop_with_max_visits_is_accepted(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe until it answers
    action: check_mqtt
    max_visits: 5
    on_success: done
    on_failure: probe
""",
    )

    assert load_playbook(path, actions).playbook.step("probe").max_visits == 5


def test_loop_closed_by_next_is_found(tmp_path: Path, actions: dict[str, ActionSpec]) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: done
    on_failure: next
  - id: wait
    name: Wait a moment
    action: sleep
    params: {seconds: 1}
    on_success: probe
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: probe"),
        "steps[0]",
        "loop with no bound (probe -> wait -> probe): set max_visits on one of its steps",
    )


def test_two_separate_loops_are_both_reported(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        """\
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: port
    on_failure: probe
  - id: port
    name: Port
    action: check_port
    params: {port: 1883}
    on_success: done
    on_failure: port
""",
    )

    assert sorted(refusal(path, actions)) == [
        (
            line_of(path, "- id: probe"),
            "steps[0]",
            "loop with no bound (probe -> probe): set max_visits on one of its steps",
        ),
        (
            line_of(path, "- id: port"),
            "steps[1]",
            "loop with no bound (port -> port): set max_visits on one of its steps",
        ),
    ]


def test_needs_name_known_steps_form_no_cycle_and_replace_transitions(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    unknown = write(
        tmp_path,
        """\
  - {id: a, name: A, action: check_mqtt}
  - {id: b, name: B, action: check_mqtt, needs: [a, c]}
""",
    )
    assert only_problem(unknown, actions) == (
        line_of(unknown, "needs: [a, c]"),
        "steps[1].needs[1]",
        "unknown step 'c'",
    )
    cycle = write(
        tmp_path,
        """\
  - {id: a, name: A, action: check_mqtt, needs: [b]}
  - {id: b, name: B, action: check_mqtt, needs: [a]}
""",
    )
    assert only_problem(cycle, actions)[1:] == (
        "steps[0].needs",
        "needs form a cycle (a -> b -> a)",
    )
    mixed = write(
        tmp_path,
        """\
  - {id: a, name: A, action: check_mqtt, on_success: done}
  - {id: b, name: B, action: check_mqtt, needs: [a]}
""",
    )
    assert "has no transitions" in only_problem(mixed, actions)[2]
