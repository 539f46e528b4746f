"""Loading the supervisor config: the shipped file, path resolution, and located errors.

Every refusal must name the file, the 1-based line and the dotted field a person
would look for in the YAML.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from graylogic_supervisor.config import (
    ProcessServiceConfig,
    SupervisorConfig,
    SystemdServiceConfig,
    load_config,
)
from graylogic_supervisor.errors import ConfigError
from tests import sources
from tests.sources import Problem

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "config" / "supervisor.yaml"


def write_config(directory: Path, text: str, name: str = "supervisor.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refusal(path: Path) -> list[Problem]:
    return sources.refusal(path, load_config, ConfigError)


def only_problem(path: Path) -> Problem:
    return sources.only(refusal(path))


# --- the shipped config ------------------------------------------------------------------


def test_shipped_config_loads_with_the_mqtt_component_on_the_broker_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config(SHIPPED_CONFIG)

    assert config.broker.service == "mosquitto"
    assert list(config.components) == ["mqtt"]
    assert config.components["mqtt"].service == "mosquitto"
    assert config.components["mqtt"].error_id == "ERR-INFRA-MQTT-001"
    assert config.services == []
    assert config.mqtt.password is None


def test_shipped_config_finds_its_catalog_and_playbooks_whatever_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config(SHIPPED_CONFIG)

    assert config.catalog == REPO / "config" / "catalog.yaml"
    assert config.catalog.is_file()
    assert config.playbooks.directory == REPO / "playbooks"
    assert sorted(p.name for p in config.playbooks.directory.glob("*.yaml")) == [
        "bridge-recover.yaml",
        "database-recover.yaml",
        "mqtt-recover.yaml",
    ]
    assert config.state_dir == tmp_path.resolve() / ".state"
    assert config.database_path == tmp_path.resolve() / ".state" / "supervisor.db"


# --- path resolution ---------------------------------------------------------------------


def test_catalog_and_playbooks_resolve_beside_the_config_and_state_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path / "etc",
        """\
        state_dir: var/state
        database: var/db/records.db
        catalog: errors/catalog.yaml
        playbooks:
          directory: ../books
        """,
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    config = load_config(path)

    root = tmp_path.resolve()
    assert config.catalog == root / "etc" / "errors" / "catalog.yaml"
    assert config.playbooks.directory == root / "books"
    assert config.state_dir == root / "run" / "var" / "state"
    assert config.database_path == root / "run" / "var" / "db" / "records.db"


def test_a_config_path_given_relative_to_the_cwd_still_resolves_beside_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / "etc", "catalog: catalog.yaml\n")
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/supervisor.yaml"))

    assert config.catalog == tmp_path.resolve() / "etc" / "catalog.yaml"
    assert config.playbooks.directory == tmp_path.resolve() / "playbooks"


def test_absolute_paths_are_kept_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path.resolve() / "elsewhere"
    path = write_config(
        tmp_path / "etc",
        f"""\
        state_dir: {elsewhere / "state"}
        catalog: {elsewhere / "catalog.yaml"}
        playbooks:
          directory: {elsewhere / "books"}
        """,
    )
    monkeypatch.chdir(tmp_path)

    config = load_config(path)

    assert config.state_dir == elsewhere / "state"
    assert config.catalog == elsewhere / "catalog.yaml"
    assert config.playbooks.directory == elsewhere / "books"


@pytest.mark.parametrize("text", ["", "# everything commented out\n"], ids=["empty", "comments"])
def test_a_file_without_data_loads_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = write_config(tmp_path, text)
    monkeypatch.chdir(tmp_path)

    config = load_config(path)

    defaults = SupervisorConfig()
    assert config.broker == defaults.broker
    assert config.mqtt == defaults.mqtt
    assert config.admin.port == 8080
    assert config.components == {}
    assert config.state_dir == tmp_path.resolve() / ".state"
    assert config.catalog == tmp_path.resolve() / "catalog.yaml"


def test_services_of_both_backends_load_as_their_own_types(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: bridge-knx
            backend: systemd
            unit: graylogic-bridge-knx.service
          - name: demo-worker
            backend: process
            argv: [/usr/bin/python3, -m, http.server, "8099"]
            ready_port: 8099
        components:
          bridge-knx:
            kind: service
            service: bridge-knx
            error_id: ERR-BRIDGE-HEARTBEAT-001
        """,
    )

    config = load_config(path)

    systemd, process = config.services
    assert isinstance(systemd, SystemdServiceConfig)
    assert systemd.unit == "graylogic-bridge-knx.service"
    assert isinstance(process, ProcessServiceConfig)
    assert process.argv == ["/usr/bin/python3", "-m", "http.server", "8099"]
    assert config.components["bridge-knx"].service == "bridge-knx"


# --- the password is a secret ------------------------------------------------------------


def test_mqtt_password_is_usable_but_never_shown_in_repr(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        mqtt:
          username: supervisor
          password: hunter2-s3cret
        """,
    )

    config = load_config(path)

    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-s3cret"
    assert "hunter2-s3cret" not in repr(config)
    assert "hunter2-s3cret" not in str(config)
    assert "hunter2-s3cret" not in repr(config.mqtt)
    assert "supervisor" in repr(config.mqtt)


# --- refusals, each with file, line and field --------------------------------------------


def test_misspelt_field_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        mqtt:
          client_id: graylogic-supervisor
          keepalive: 10
        """,
    )

    assert only_problem(path) == (3, "mqtt.keepalive", "unknown field")


def test_misspelt_top_level_field_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "site:\n  name: x\nlog_levle: DEBUG\n")

    assert only_problem(path) == (3, "log_levle", "unknown field")


def test_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        mqtt:
          client_id: graylogic-supervisor
          keepalive_s: soon
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field) == (3, "mqtt.keepalive_s")
    assert "valid integer" in message


@pytest.mark.parametrize(
    ("text", "line", "field", "bound"),
    [
        ("broker:\n  host: 127.0.0.1\n  port: 70000\n", 3, "broker.port", "65535"),
        ("broker:\n  process_port: 65536\n", 2, "broker.process_port", "65535"),
        ("site:\n  name: x\nadmin:\n  port: 0\n", 4, "admin.port", "greater than or equal to 1"),
    ],
    ids=["broker-port", "process-port", "admin-port-zero"],
)
def test_port_out_of_range_is_reported_with_its_bound(
    tmp_path: Path, text: str, line: int, field: str, bound: str
) -> None:
    path = write_config(tmp_path, text)

    got_line, got_field, message = only_problem(path)

    assert (got_line, got_field) == (line, field)
    assert bound in message


def test_process_service_without_argv_names_the_argv_field(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: worker
            backend: process
        """,
    )

    # a missing field is reported at the line of the mapping that lacks it
    assert only_problem(path) == (2, "services[0].argv", "field required")


def test_process_service_with_empty_argv_is_reported_at_the_argv_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: worker
            backend: process
            argv: []
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field) == (4, "services[0].argv")
    assert "at least 1 item" in message


def test_systemd_service_with_a_malformed_unit_is_reported_at_the_unit_line(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: bridge-knx
            backend: systemd
            unit: graylogic-bridge-knx
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field) == (4, "services[0].unit")
    assert "pattern" in message


def test_unknown_backend_is_reported_at_the_backend_line_with_the_known_ones(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: worker
            backend: docker
            argv: [/bin/true]
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field) == (3, "services[0].backend")
    assert "'docker'" in message
    assert "'process', 'systemd'" in message


def test_component_naming_an_unknown_service_is_reported_at_its_service_line(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: bridge-knx
            backend: systemd
            unit: graylogic-bridge-knx.service
        components:
          bridge:
            kind: service
            service: bridge-kxn
            error_id: ERR-BRIDGE-HEARTBEAT-001
        """,
    )

    assert only_problem(path) == (8, "components.bridge.service", "unknown service 'bridge-kxn'")


def test_component_may_name_the_broker_service(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        broker:
          service: broker
        components:
          mqtt:
            kind: mqtt
            service: broker
            error_id: ERR-INFRA-MQTT-001
        """,
    )

    assert load_config(path).components["mqtt"].service == "broker"


def test_service_component_without_a_service_names_the_missing_field(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """\
        components:
          bridge:
            kind: service
            error_id: ERR-BRIDGE-HEARTBEAT-001
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field, message) == (2, "components.bridge.service", "field required")


def test_duplicate_service_name_is_reported_at_the_second_one(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: worker
            backend: process
            argv: [/bin/true]
          - name: worker
            backend: process
            argv: [/bin/false]
        """,
    )

    assert only_problem(path) == (5, "services[1].name", "duplicate service name 'worker'")


def test_service_named_like_the_broker_service_is_a_duplicate(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        services:
          - name: mosquitto
            backend: systemd
            unit: mosquitto.service
        """,
    )

    assert only_problem(path) == (2, "services[0].name", "duplicate service name 'mosquitto'")


def test_duplicate_yaml_key_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        admin:
          bind: 127.0.0.1
          port: 8080
          port: 8081
        """,
    )

    assert only_problem(path) == (4, "admin.port", "duplicate key")


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        site:
          name: dev-site
        admin:
          bind: 127.0.0.1
           port: 8081
        """,
    )

    line, field, message = only_problem(path)

    assert (line, field) == (5, "")
    assert message.startswith("YAML syntax: ")


def test_unclosed_flow_list_is_reported_where_the_parser_gave_up(tmp_path: Path) -> None:
    path = write_config(tmp_path, "services: [\nadmin:\n  port: 8080\n")

    line, field, message = only_problem(path)

    assert (line, field) == (3, "")
    assert message.startswith("YAML syntax: ")


@pytest.mark.parametrize("text", ["- site\n- admin\n", "just a string\n"], ids=["list", "scalar"])
def test_a_file_that_is_not_a_mapping_is_refused_at_line_1(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path, text)

    line, field, message = only_problem(path)

    assert (line, field) == (1, "")
    assert "dictionary" in message


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    line, field, message = only_problem(path)

    assert (line, field) == (None, "")
    assert message.startswith("cannot read: ")


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        log_level: LOUD
        admin:
          port: 0
        mqtt:
          keepalive: 3
        broker:
          port: 99999
        """,
    )

    problems = refusal(path)

    assert sorted((line, field) for line, field, _ in problems) == [
        (1, "log_level"),
        (3, "admin.port"),
        (5, "mqtt.keepalive"),
        (7, "broker.port"),
    ]


def test_error_text_reads_file_line_field_message(tmp_path: Path) -> None:
    path = write_config(tmp_path, "mqtt:\n  keepalive: 10\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value) == f"{path}:2: mqtt.keepalive: unknown field"


def test_a_dependency_on_an_unknown_component_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        components:
          mqtt: {kind: mqtt, error_id: ERR-INFRA-MQTT-001}
          bridge-knx:
            kind: bridge
            error_id: ERR-BRIDGE-HEARTBEAT-001
            depends_on: [mqtt, broker]
        """,
    )
    assert only_problem(path) == (
        6,
        "components.bridge-knx.depends_on[1]",
        "unknown component 'broker'",
    )


def test_a_dependency_cycle_is_a_load_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        components:
          mqtt: {kind: mqtt, error_id: ERR-INFRA-MQTT-001, depends_on: [bridge-knx]}
          bridge-knx:
            kind: bridge
            error_id: ERR-BRIDGE-HEARTBEAT-001
            depends_on: [mqtt]
        """,
    )
    assert only_problem(path) == (
        2,
        "components.mqtt.depends_on",
        "dependency cycle: mqtt -> bridge-knx -> mqtt",
    )


def test_a_critical_pattern_that_could_backtrack_for_ages_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """\
        policy:
          critical_patterns:
            - {error_id: ERR-INFRA-MQTT-001, message: "certificate"}
            - {message: "(a+)+$", reason: would stall the supervisor on a long message}
        """,
    )

    line, field, message = only_problem(path)
    assert (line, field) == (4, "policy.critical_patterns[1].message")
    assert "repeats a repetition (can take exponential time)" in message
