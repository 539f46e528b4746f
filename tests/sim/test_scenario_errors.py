"""A scenario that cannot be simulated is refused with the file, line and field to fix.

``load_scenario`` checks the scenario itself; the playbook it names is checked
against the scenario's actions when ``simulate`` loads it. The CLI prints the same
``file:line: field: message`` on stderr and exits non-zero, with no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.sim.scenario import ScenarioError, load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, simulate
from tests.sources import line_of

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

SCENARIO = """\
name: bridge-test
playbook_file: bridge-test.yaml
trigger:
  component: bridge-test
  error_id: ERR-BRIDGE-HEARTBEAT-001
causes:
  bridge_hung: 0.7
  adapter_unplugged: 0.3
actions:
  check_serial_device:
    duration_s: 1
    outcome: {default: success, adapter_unplugged: failure}
  restart_service:
    duration_s: {min: 4, max: 10}
    outcome:
      default: failure
      bridge_hung: {fix: 0.9, failure: 0.1}
  wait_for_health:
    duration_s: 30
    outcome: health
manual:
  resolve_s: 3600
"""

PLAYBOOK = """\
id: PLAY-BRIDGE-TEST-001
name: Test bridge recovery
version: 1.0.0
trigger:
  component: bridge-test
  error_ids: [ERR-BRIDGE-HEARTBEAT-001]
steps:
  - id: check_adapter
    name: Check the serial adapter
    action: check_serial_device
    on_success: restart
    on_failure: escalate
  - id: restart
    name: Restart the bridge
    action: restart_service
    on_success: verify
    on_failure: escalate
  - id: verify
    name: Verify heartbeat
    action: wait_for_health
    on_success: done
    on_failure: escalate
"""


def write_scenario(directory: Path, old: str = "", new: str = "", playbook: str = PLAYBOOK) -> Path:
    """The test scenario, with ``old`` replaced by ``new``, and its playbook beside it."""
    assert SCENARIO.count(old) == 1 or not old, old
    (directory / "bridge-test.yaml").write_text(playbook, encoding="utf-8")
    path = directory / "scenario.yaml"
    path.write_text(SCENARIO.replace(old, new), encoding="utf-8")
    return path


def refused(path: Path) -> tuple[int | None, str, str]:
    """The line and field of the one problem ``load_scenario`` finds in ``path``, and the
    error's text."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    error = caught.value
    assert error.file == path
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    assert problem.file == path
    return problem.line, problem.field, str(error)


def test_the_test_scenario_itself_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write_scenario(tmp_path))

    assert scenario.playbook_file == (tmp_path / "bridge-test.yaml").resolve()


def test_causes_that_do_not_sum_to_one_are_refused_at_causes(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, "adapter_unplugged: 0.3", "adapter_unplugged: 0.2")

    line, field, text = refused(path)

    assert (line, field) == (line_of(path, "causes:"), "causes")
    assert text == f"{path}:{line}: causes: the causes' probabilities sum to 0.9, not 1"


def test_an_unknown_outcome_word_is_refused_at_that_outcome(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        "{default: success, adapter_unplugged: failure}",
        "{default: success, adapter_unplugged: missing}",
    )

    line, field, text = refused(path)

    assert (line, field) == (line_of(path, "missing}"), "actions.check_serial_device.outcome")
    assert text.startswith(f"{path}:{line}: actions.check_serial_device.outcome: ")
    assert "unknown outcome word 'missing' (one of success, failure, fix, health)" in text


def test_an_outcome_for_an_unknown_cause_is_refused_at_that_cause(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path, "      default: failure\n", "      default: failure\n      usb_reset: fix\n"
    )

    line, field, text = refused(path)

    assert (line, field) == (
        line_of(path, "usb_reset: fix"),
        "actions.restart_service.outcome.usb_reset",
    )
    assert text == f"{path}:{line}: {field}: unknown cause 'usb_reset'"


def test_an_action_without_an_outcome_for_a_cause_and_no_default_is_refused(
    tmp_path: Path,
) -> None:
    path = write_scenario(tmp_path, "      default: failure\n", "")

    line, field, text = refused(path)

    assert field == "actions.restart_service.outcome"
    assert line == path.read_text().splitlines().index("    outcome:") + 1
    assert text == f"{path}:{line}: {field}: no outcome for adapter_unplugged and no default"


def test_durations_per_cause_are_drawn_for_the_incident_s_cause(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        "    duration_s: {min: 4, max: 10}\n",
        "    duration_s: {default: {min: 4, max: 10}, bridge_hung: 90}\n",
    )

    action = load_scenario(path).actions["restart_service"]

    assert action.mean_duration("bridge_hung") == 90
    assert action.mean_duration("adapter_unplugged") == 7
    assert (
        load_scenario(write_scenario(tmp_path))
        .actions["restart_service"]
        .mean_duration("bridge_hung")
        == 7
    )  # {min, max} is a range, not a mapping of causes


def test_a_duration_for_an_unknown_cause_is_refused_at_that_cause(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        "    duration_s: {min: 4, max: 10}\n",
        "    duration_s: {default: 5, usb_reset: 90}\n",
    )

    line, field, text = refused(path)

    assert (line, field) == (
        line_of(path, "usb_reset: 90"),
        "actions.restart_service.duration_s.usb_reset",
    )
    assert text == f"{path}:{line}: {field}: unknown cause 'usb_reset'"


def test_durations_per_cause_without_one_for_a_cause_and_no_default_are_refused(
    tmp_path: Path,
) -> None:
    path = write_scenario(
        tmp_path, "    duration_s: {min: 4, max: 10}\n", "    duration_s: {bridge_hung: 90}\n"
    )

    line, field, text = refused(path)

    assert field == "actions.restart_service.duration_s"
    assert text == f"{path}:{line}: {field}: no value for adapter_unplugged and no default"


def test_a_yaml_syntax_error_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, "  wait_for_health:\n", "  wait_for_health: health:\n")

    line, field, text = refused(path)

    assert line == line_of(path, "wait_for_health: health:")
    assert field == ""  # a file that does not parse has no fields yet
    assert text.startswith(f"{path}:{line}: YAML syntax: ")


async def test_a_playbook_using_an_action_the_scenario_does_not_list_is_refused(
    tmp_path: Path,
) -> None:
    playbook = PLAYBOOK.replace("action: restart_service", "action: reboot_controller")
    scenario = load_scenario(write_scenario(tmp_path, playbook=playbook))
    book = (tmp_path / "bridge-test.yaml").resolve()

    with pytest.raises(PlaybookError) as caught:
        await simulate(scenario, SimulationOptions(incidents=1, rounds=1))

    line = line_of(book, "reboot_controller")
    assert caught.value.file == book
    assert [(p.line, p.field) for p in caught.value.problems] == [(line, "steps[1].action")]
    assert str(caught.value).startswith(
        f"{book}:{line}: steps[1].action: unknown action 'reboot_controller'"
    )


# --- through the CLI ----------------------------------------------------------------------


def simulate_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "simulate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_simulate_json_prints_the_report_format_md_describes(tmp_path: Path) -> None:
    result = simulate_cli(
        SCENARIOS / "disk-full.yaml", "--incidents", "20", "--rounds", "2", "--json", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {
        "scenario",
        "seed",
        "rounds",
        "floor_s",
        "final_to_floor",
        "final_version",
        "final_playbook",
    }
    assert report["final_to_floor"] == round(report["rounds"][-1]["mttr_s"] / report["floor_s"], 3)
    assert (report["scenario"], report["seed"]) == ("disk-full", 0)
    assert [entry["round"] for entry in report["rounds"]] == [1, 2]
    for entry in report["rounds"]:
        assert set(entry) == {
            "round",
            "playbook_version",
            "incidents",
            "resolved_by_playbook",
            "escalated",
            "success_rate",
            "mttr_s",
            "floor_s",
            "p95_s",
            "recommendations",
            "analyses",
            "rolled_back_to",
            "trials",
        }
        assert entry["incidents"] == 20
        # 20 incidents 600 s apart stay within a week: the round's closing analysis only
        assert [a["after_incidents"] for a in entry["analyses"]] == [20]
        assert entry["resolved_by_playbook"] + entry["escalated"] == 20
        for rec in entry["recommendations"]:
            assert set(rec) == {
                "id",
                "type",
                "confidence",
                "summary",
                "approved",
                "after_incidents",
                "base_version",
                "sample_size",
                "change",
                "trial",
            }
            assert rec["approved"] is False  # without --auto-approve
    assert report["final_version"] == "1.0.0"
    assert report["final_playbook"]["id"] == "PLAY-DISK-RECOVER-001"
    assert report["final_playbook"]["version"] == "1.0.0"
    assert [step["id"] for step in report["final_playbook"]["steps"]] == [
        "check_logs",
        "rotate",
        "verify",
    ]


def test_simulate_reports_a_broken_scenario_as_file_line_field_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    path = write_scenario(tmp_path, "adapter_unplugged: 0.3", "adapter_unplugged: 0.2")

    result = simulate_cli(path, "--incidents", "20", "--rounds", "2", "--json", cwd=tmp_path)

    assert result.returncode != 0
    assert result.stdout == ""
    line = line_of(path, "causes:")
    assert result.stderr == f"{path}:{line}: causes: the causes' probabilities sum to 0.9, not 1\n"


def test_simulate_reports_a_playbook_id_that_does_not_exist_at_the_playbook_field(
    tmp_path: Path,
) -> None:
    path = write_scenario(
        tmp_path, "playbook_file: bridge-test.yaml", "playbook: PLAY-BRIDGE-NOPE-001"
    )

    result = simulate_cli(path, "--incidents", "20", "--rounds", "2", cwd=tmp_path)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}:{line_of(path, 'playbook:')}: playbook: ")
