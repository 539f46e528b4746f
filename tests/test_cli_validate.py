"""The validating commands, run as a person runs them: the real CLI in a child process.

``playbook validate`` and ``check-config`` must exit 0 on good files and 1 on bad
ones, and every error on stderr reads ``file:line: field: message``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graylogic_supervisor.catalog import load_catalog
from tests.sources import line_of

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "config" / "supervisor.yaml"
SHIPPED_CATALOG = REPO / "config" / "catalog.yaml"
SHIPPED_PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))

DANGLING = """\
id: PLAY-TEST-RECOVER-001
name: Test recovery
version: 1.0.0
trigger:
  component: mqtt
  error_ids: [ERR-INFRA-MQTT-001]
steps:
  - id: probe
    name: Probe the broker
    action: check_mqtt
    on_success: done
    on_failure: restart
  - id: restart
    name: Restart the broker
    action: restart_service
    target: mosquitto
    on_success: done
    on_failure: restrat
"""


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_validate_accepts_the_shipped_playbooks(tmp_path: Path) -> None:
    result = cli("playbook", "validate", *SHIPPED_PLAYBOOKS, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"{REPO}/playbooks/bridge-recover.yaml: ok (PLAY-BRIDGE-RECOVER-001 1.0.0, 5 steps)",
        f"{REPO}/playbooks/database-recover.yaml: ok (PLAY-DB-RECOVER-001 1.0.0, 3 steps)",
        f"{REPO}/playbooks/mqtt-recover.yaml: ok (PLAY-MQTT-RECOVER-001 1.0.0, 4 steps)",
    ]


def test_validate_reports_a_bad_file_as_file_line_field_message_and_exits_1(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DANGLING)
    good = SHIPPED_PLAYBOOKS[0]

    result = cli("playbook", "validate", good, bad, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{good}: ok (PLAY-BRIDGE-RECOVER-001 1.0.0, 5 steps)"]
    assert result.stderr.splitlines() == [
        f"{bad}:{line_of(bad, 'on_failure: restrat')}: steps[1].on_failure:"
        " transition to unknown step 'restrat'"
    ]


def test_validate_reports_every_problem_of_a_file_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DANGLING.replace("action: check_mqtt", "action: check_port\n    params: {port: 99999}")
    )

    result = cli("playbook", "validate", bad, cwd=tmp_path)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"{bad}:{line_of(bad, 'on_failure: restrat')}: steps[1].on_failure:"
        " transition to unknown step 'restrat'"
    )
    assert lines[1].startswith(f"{bad}:{line_of(bad, 'params:')}: steps[0].params.port: ")
    assert len(lines) == 2


def test_validate_names_files_as_given_and_reports_one_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "bad.yaml").write_text(DANGLING.replace("version: 1.0.0", "version: 1"))

    result = cli("playbook", "validate", "books/bad.yaml", "absent.yaml", cwd=tmp_path)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "books/bad.yaml:3: version: Input should be a valid string"
    assert lines[1].startswith("absent.yaml: cannot read: ")
    assert len(lines) == 2


def test_validate_without_a_file_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("playbook", "validate", cwd=tmp_path)

    assert result.returncode == 2
    assert "the following arguments are required: paths" in result.stderr


# --- check-config ------------------------------------------------------------------------


def test_check_config_accepts_the_shipped_config(tmp_path: Path) -> None:
    entries = len(load_catalog(SHIPPED_CATALOG).errors)

    result = cli("check-config", SHIPPED_CONFIG, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{SHIPPED_CONFIG}: ok (1 components, {entries} catalog entries, 3 playbooks)\n"
    )
    assert not (tmp_path / ".state").exists()


def test_check_config_reports_a_broken_config_with_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "supervisor.yaml"
    config.write_text("broker:\n  host: 127.0.0.1\n  port: 70000\nmqtt:\n  keepalive: 10\n")

    result = cli("check-config", config, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = sorted(result.stderr.splitlines())
    assert lines[0].startswith(f"{config}:3: broker.port: ")
    assert "65535" in lines[0]
    assert lines[1] == f"{config}:5: mqtt.keepalive: unknown field"
    assert len(lines) == 2


def test_check_config_reports_a_bad_playbook_in_its_directory(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    shutil.copy(SHIPPED_PLAYBOOKS[-1], books)
    bad = books / "bad.yaml"
    bad.write_text(DANGLING)
    config = tmp_path / "supervisor.yaml"
    config.write_text(
        f"catalog: {SHIPPED_CATALOG}\n"
        "components:\n"
        "  mqtt: {kind: mqtt, error_id: ERR-INFRA-MQTT-001}\n"
        "playbooks:\n"
        "  directory: books\n"
    )

    result = cli("check-config", config, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad.resolve()}:{line_of(bad, 'on_failure: restrat')}: steps[1].on_failure:"
        " transition to unknown step 'restrat'"
    ]


def test_check_config_refuses_a_component_whose_error_id_is_not_in_the_catalog(
    tmp_path: Path,
) -> None:
    config = tmp_path / "supervisor.yaml"
    config.write_text(
        f"catalog: {SHIPPED_CATALOG}\n"
        "components:\n"
        "  mqtt: {kind: mqtt, error_id: ERR-INFRA-MQTT-999}\n"
        f"playbooks:\n  directory: {REPO / 'playbooks'}\n"
    )

    result = cli("check-config", config, cwd=tmp_path)

    assert result.returncode == 1
    assert "components.mqtt.error_id: ERR-INFRA-MQTT-999 is not in the catalog" in result.stderr


def test_check_config_reports_a_missing_config_file(tmp_path: Path) -> None:
    result = cli("check-config", "absent.yaml", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("absent.yaml: cannot read: ")


# --- help --------------------------------------------------------------------------------

HELP = {
    (): ["run", "check-config", "playbook", "executions", "--version"],
    ("run",): ["--config", "--log-format", "auto,text,json"],
    ("check-config",): ["path", "file, line and field"],
    ("playbook",): ["validate"],
    ("playbook", "validate"): ["paths", "file, line and field", "Exit status 1"],
    ("executions",): ["list", "show"],
    ("executions", "list"): ["--config", "--limit", "--status", "escalated"],
    ("executions", "show"): ["--config", "execution_id", "--json"],
}


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], tuple[int, str]]:
    """Every command's ``--help`` exit status and output, the processes run side by side."""
    cwd = tmp_path_factory.mktemp("help")
    running = {
        command: subprocess.Popen(
            [sys.executable, "-m", "graylogic_supervisor", *command, "--help"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for command in HELP
    }
    results = {}
    try:
        for command, process in running.items():
            stdout, _ = process.communicate(timeout=30)
            results[command] = (process.returncode, stdout)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("command", list(HELP), ids=lambda command: " ".join(command) or "top")
def test_help_of_every_command_exits_0_and_names_its_options(
    helps: dict[tuple[str, ...], tuple[int, str]], command: tuple[str, ...]
) -> None:
    returncode, stdout = helps[command]

    assert returncode == 0
    assert stdout.startswith(" ".join(["usage: graylogic-supervisor", *command]))
    # argparse wraps long lines; compare on single spaces
    text = " ".join(stdout.split())
    for mention in HELP[command]:
        assert mention in text
