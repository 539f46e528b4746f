"""Loading playbook files: the shipped ones, and each refusal with its file, line and field.

The step graph's own checks (transitions, loops, reachability) are in test_graph.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.playbooks.loader import load_directory, load_files, load_playbook
from tests import sources
from tests.sources import PLAYBOOK_HEADER, Problem, line_of

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "playbooks"

HEADER = PLAYBOOK_HEADER

ONE_STEP = """\
steps:
  - id: probe
    name: Probe the broker
    action: check_mqtt
    on_success: done
"""


def write(directory: Path, text: str, name: str = "playbook.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, actions: dict[str, ActionSpec]) -> list[Problem]:
    return sources.refusal(path, lambda p: load_playbook(p, actions), PlaybookError)


def only_problem(path: Path, actions: dict[str, ActionSpec]) -> Problem:
    return sources.only(refusal(path, actions))


def chain(count: int) -> str:
    """``count`` steps, each leading to the next, the last one to done."""
    steps = ["steps:"]
    for index in range(count):
        steps += [
            f"  - id: step_{index}",
            f"    name: Step {index}",
            "    action: check_mqtt",
        ]
    steps.append("    on_success: done")
    return "\n".join(steps) + "\n"


# --- the shipped playbooks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "playbook_id", "steps", "timeout"),
    [
        ("bridge-recover.yaml", "PLAY-BRIDGE-RECOVER-001", 5, 600),
        ("database-recover.yaml", "PLAY-DB-RECOVER-001", 3, 300),
        ("mqtt-recover.yaml", "PLAY-MQTT-RECOVER-001", 4, 300),
    ],
)
def test_shipped_playbook_validates(
    actions: dict[str, ActionSpec], name: str, playbook_id: str, steps: int, timeout: float
) -> None:
    loaded = load_playbook(SHIPPED / name, actions)

    assert loaded.playbook.id == playbook_id
    assert loaded.playbook.version == "1.0.0"
    assert len(loaded.playbook.steps) == steps
    assert loaded.playbook.timeout_seconds == timeout
    assert loaded.file == SHIPPED / name
    assert loaded.source == (SHIPPED / name).read_text(encoding="utf-8")


def test_shipped_directory_loads_every_playbook_without_errors(
    actions: dict[str, ActionSpec],
) -> None:
    loaded, errors = load_directory(SHIPPED, actions)

    assert errors == []
    assert [item.playbook.id for item in loaded] == [
        "PLAY-BRIDGE-RECOVER-001",
        "PLAY-DB-RECOVER-001",
        "PLAY-MQTT-RECOVER-001",
    ]


def test_shipped_mqtt_playbook_keeps_its_retry_policy(actions: dict[str, ActionSpec]) -> None:
    playbook = load_playbook(SHIPPED / "mqtt-recover.yaml", actions).playbook

    retry = playbook.step("restart").retry
    assert retry is not None
    assert (retry.attempts, retry.backoff_seconds, retry.max_backoff_seconds) == (2, 2, 10)


# --- actions: name, target, params -------------------------------------------------------


def test_unknown_action_is_reported_at_its_line_listing_the_known_ones(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    name: Ping the broker
    action: ping
    on_success: done
""",
    )

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, "action: ping"), "steps[0].action")
    assert message.startswith("unknown action 'ping' (known: ")
    for name in actions:
        assert name in message


@pytest.mark.parametrize(
    "action", ["check_service", "start_service", "restart_service", "stop_service"]
)
def test_service_action_without_a_target_is_refused_at_its_step(
    tmp_path: Path, actions: dict[str, ActionSpec], action: str
) -> None:
    path = write(
        tmp_path,
        HEADER
        + f"""\
steps:
  - id: fix
    name: Do something to a service
    action: {action}
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: fix"),
        "steps[0].target",
        f"action '{action}' needs a target",
    )


def test_check_port_with_a_port_out_of_range_names_the_param_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: port
    name: Broker port
    action: check_port
    params:
      host: 127.0.0.1
      port: 99999
    on_success: done
""",
    )

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, "port: 99999"), "steps[0].params.port")
    assert "less than or equal to 65535" in message


def test_check_port_without_a_port_names_the_param_at_the_params_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: port
    name: Broker port
    action: check_port
    params: {host: 127.0.0.1}
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "params:"),
        "steps[0].params.port",
        "field required",
    )


def test_check_port_without_params_names_the_param_at_the_step_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: port
    name: Broker port
    action: check_port
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: port"),
        "steps[0].params.port",
        "field required",
    )


def test_unknown_param_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: port
    name: Broker port
    action: check_port
    params:
      port: 1883
      hots: 127.0.0.1
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "hots:"),
        "steps[0].params.hots",
        "unknown field",
    )


def test_params_on_an_action_that_takes_none_are_refused(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    name: Probe
    action: check_mqtt
    params: {timeout: 3}
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "params:"),
        "steps[0].params.timeout",
        "unknown field",
    )


def test_problems_in_several_steps_are_reported_together(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    name: Probe
    action: chek_mqtt
  - id: port
    name: Port
    action: check_port
    params: {port: 0}
  - id: restart
    name: Restart
    action: restart_service
    on_success: done
""",
    )

    problems = refusal(path, actions)

    assert [(line, field) for line, field, _ in problems] == [
        (line_of(path, "action: chek_mqtt"), "steps[0].action"),
        (line_of(path, "params: {port: 0}"), "steps[1].params.port"),
        (line_of(path, "- id: restart"), "steps[2].target"),
    ]


# --- the model's own fields --------------------------------------------------------------


def test_misspelt_step_field_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    name: Probe
    action: check_mqtt
    timout_seconds: 5
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "timout_seconds"),
        "steps[0].timout_seconds",
        "unknown field",
    )


def test_misspelt_top_level_field_is_reported_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, HEADER + "limit:\n  max_attempts: 2\n" + ONE_STEP)

    assert only_problem(path, actions) == (line_of(path, "limit:"), "limit", "unknown field")


def test_step_without_a_name_names_the_missing_field_at_the_step(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    action: check_mqtt
    on_success: done
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "- id: probe"),
        "steps[0].name",
        "field required",
    )


@pytest.mark.parametrize("word", ["done", "escalate", "next"])
def test_reserved_transition_word_is_refused_as_a_step_id(
    tmp_path: Path, actions: dict[str, ActionSpec], word: str
) -> None:
    path = write(
        tmp_path,
        HEADER
        + f"""\
steps:
  - id: {word}
    name: Probe
    action: check_mqtt
    on_success: done
""",
    )

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, f"- id: {word}"), "steps[0].id")
    assert f"'{word}' is a reserved transition word" in message


@pytest.mark.parametrize("version", ['"1.0"', "v1.0.0", "1.0.0-beta", "01.0.0"])
def test_version_that_is_not_semver_is_refused_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec], version: str
) -> None:
    path = write(tmp_path, HEADER.replace("version: 1.0.0", f"version: {version}") + ONE_STEP)

    line, field, message = only_problem(path, actions)

    assert (line, field) == (3, "version")
    assert "version must be MAJOR.MINOR.PATCH" in message


def test_unquoted_two_part_version_is_refused_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    # YAML reads 1.0 as a float, so it is not even a string
    path = write(tmp_path, HEADER.replace("version: 1.0.0", "version: 1.0") + ONE_STEP)

    line, field, _ = only_problem(path, actions)

    assert (line, field) == (3, "version")


@pytest.mark.parametrize(
    "playbook_id", ["play-mqtt-recover-001", "PLAY-MQTT-RECOVER-1", "MQTT-RECOVER-001", "PLAY-001"]
)
def test_playbook_id_off_the_scheme_is_refused_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec], playbook_id: str
) -> None:
    path = write(
        tmp_path,
        "# comment first\n" + HEADER.replace("PLAY-TEST-RECOVER-001", playbook_id) + ONE_STEP,
    )

    line, field, message = only_problem(path, actions)

    assert (line, field) == (2, "id")
    assert "pattern" in message


def test_playbook_without_steps_is_refused_at_steps(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, HEADER + "steps: []\n")

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, "steps: []"), "steps")
    assert "at least 1 item" in message


@pytest.mark.parametrize("text", ["", "- id: PLAY-X-001\n"], ids=["empty", "list"])
def test_file_that_is_not_a_mapping_is_refused_at_line_1(
    tmp_path: Path, actions: dict[str, ActionSpec], text: str
) -> None:
    path = write(tmp_path, text)

    assert only_problem(path, actions) == (1, "", "a playbook is a YAML mapping")


def test_yaml_syntax_error_is_reported_with_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, HEADER + "steps:\n  - id: probe\n   name: Probe\n")

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, "   name: Probe"), "")
    assert message.startswith("YAML syntax: ")


def test_duplicate_yaml_key_in_a_step_is_refused(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: probe
    name: Probe
    action: check_mqtt
    on_success: done
    on_success: escalate
""",
    )

    assert only_problem(path, actions) == (
        line_of(path, "on_success: escalate"),
        "steps[0].on_success",
        "duplicate key",
    )


# --- the playbook timeout ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "timeout"),
    [(1, 600), (3, 600), (4, 1200), (10, 1200), (11, 2700), (15, 2700)],
)
def test_default_timeout_follows_the_number_of_steps(
    tmp_path: Path, actions: dict[str, ActionSpec], steps: int, timeout: float
) -> None:
    path = write(tmp_path, HEADER + chain(steps))

    playbook = load_playbook(path, actions).playbook

    assert len(playbook.steps) == steps
    assert playbook.timeout_seconds == timeout
    assert playbook.limits.timeout_seconds == timeout


def test_explicit_timeout_is_kept_whatever_the_size(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, HEADER + "limits:\n  timeout_seconds: 90\n" + chain(11))

    playbook = load_playbook(path, actions).playbook

    assert playbook.timeout_seconds == 90
    assert playbook.limits.max_attempts == 3


def test_non_positive_timeout_is_refused_at_its_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(tmp_path, HEADER + "limits:\n  timeout_seconds: 0\n" + ONE_STEP)

    line, field, message = only_problem(path, actions)

    assert (line, field) == (line_of(path, "timeout_seconds: 0"), "limits.timeout_seconds")
    assert "greater than 0" in message


# --- several files -----------------------------------------------------------------------


def test_load_files_skips_a_bad_file_and_loads_the_good_ones(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    good = Path(shutil.copy(SHIPPED / "mqtt-recover.yaml", tmp_path))
    bad = write(tmp_path, HEADER + ONE_STEP.replace("action: check_mqtt", "action: ping"))
    also_good = Path(shutil.copy(SHIPPED / "database-recover.yaml", tmp_path))

    loaded, errors = load_files([good, bad, also_good], actions)

    assert [item.playbook.id for item in loaded] == ["PLAY-MQTT-RECOVER-001", "PLAY-DB-RECOVER-001"]
    assert [error.file for error in errors] == [bad]
    assert [(p.line, p.field) for p in errors[0].problems] == [
        (line_of(bad, "action: ping"), "steps[0].action")
    ]


def test_load_directory_reports_the_bad_file_and_loads_the_rest(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    shutil.copy(SHIPPED / "bridge-recover.yaml", tmp_path)
    shutil.copy(SHIPPED / "mqtt-recover.yaml", tmp_path / "mqtt-recover.yml")
    bad = write(tmp_path, HEADER + "steps: []\n", name="broken.yaml")
    (tmp_path / "notes.txt").write_text("not a playbook\n")

    loaded, errors = load_directory(tmp_path, actions)

    assert sorted(item.playbook.id for item in loaded) == [
        "PLAY-BRIDGE-RECOVER-001",
        "PLAY-MQTT-RECOVER-001",
    ]
    assert [error.file for error in errors] == [bad]


def test_second_file_with_the_same_playbook_id_is_refused_at_its_id_line(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    first = Path(shutil.copy(SHIPPED / "mqtt-recover.yaml", tmp_path / "a.yaml"))
    second = Path(shutil.copy(SHIPPED / "mqtt-recover.yaml", tmp_path / "b.yaml"))

    loaded, errors = load_files([first, second], actions)

    assert [item.file for item in loaded] == [first]
    assert [error.file for error in errors] == [second]
    (problem,) = errors[0].problems
    # the shipped file opens with a comment, so the id is not on line 1
    assert (problem.file, problem.line, problem.field) == (
        second,
        line_of(second, "id: PLAY-MQTT-RECOVER-001"),
        "id",
    )
    assert problem.message == f"playbook id PLAY-MQTT-RECOVER-001 is also in {first}"


def test_a_compensation_is_checked_like_a_step(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: stop_bridge
    name: Stop the bridge
    action: stop_service
    target: bridge-knx
    compensate:
      action: start_servce
    on_success: probe
  - id: probe
    name: Probe
    action: check_mqtt
    compensate: {action: check_port, params: {port: 99999}}
    on_success: done
""",
    )
    problems = refusal(path, actions)
    assert problems[0][:2] == (line_of(path, "action: start_servce"), "steps[0].compensate.action")
    assert problems[0][2].startswith("unknown action 'start_servce'")
    assert problems[1][:2] == (line_of(path, "port: 99999"), "steps[1].compensate.params.port")


def test_a_parallel_groups_branches_are_checked_where_they_are(
    tmp_path: Path, actions: dict[str, ActionSpec]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
steps:
  - id: both
    name: Restart both
    parallel:
      join: all
      branches:
        - {id: broker, name: Broker, action: restart_service, target: mosquitto}
        - {id: bridge, name: Bridge, action: restart_servce, target: bridge}
    on_success: done
""",
    )
    [(line, field, message)] = refusal(path, actions)
    assert (line, field) == (
        line_of(path, "action: restart_servce"),
        "steps[0].parallel.branches[1].action",
    )
    assert message.startswith("unknown action 'restart_servce'")


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        ("{id: b, name: B, action: log, params: {message: x}, on_success: done}", "no transitions"),
        ("{id: a, name: A, action: log, params: {message: x}}", "duplicate branch ids: a"),
        (
            "{id: b, name: B, parallel: {branches: [{id: c, name: C, action: log},"
            " {id: d, name: D, action: log}]}}",
            "groups do not nest",
        ),
    ],
)
def test_branches_are_plain_steps(
    tmp_path: Path, actions: dict[str, ActionSpec], branch: str, message: str
) -> None:
    path = write(
        tmp_path,
        HEADER
        + f"""\
steps:
  - id: both
    name: Both
    parallel:
      branches:
        - {{id: a, name: A, action: log, params: {{message: x}}}}
        - {branch}
    on_success: done
""",
    )
    problems = refusal(path, actions)
    assert any(message in text for _, _, text in problems), problems
