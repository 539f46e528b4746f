"""Which broker is supervised, and how: decided once, and said in the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from graylogic_supervisor.broker import mosquitto_conf, plan_broker, port_is_free
from graylogic_supervisor.config import BrokerConfig, ProcessServiceConfig, SystemdServiceConfig
from graylogic_supervisor.errors import ConfigError


def test_auto_supervises_the_system_broker_through_systemd_where_it_is_pid1(
    tmp_path: Path,
) -> None:
    plan = plan_broker(BrokerConfig(), tmp_path, systemd_pid1=lambda: True, free=lambda h, p: False)
    assert plan.mode == "systemd"
    assert (plan.host, plan.port) == ("127.0.0.1", 1883)
    assert isinstance(plan.service, SystemdServiceConfig)
    assert plan.service.unit == "mosquitto.service"
    assert plan.service.name == "mosquitto"
    assert plan.mosquitto_conf is None
    assert plan.reason == "systemd is PID 1"


def test_auto_runs_its_own_broker_on_the_stated_port_elsewhere(tmp_path: Path) -> None:
    plan = plan_broker(BrokerConfig(), tmp_path, systemd_pid1=lambda: False, free=lambda h, p: True)
    assert plan.mode == "process"
    assert plan.port == 1884
    assert isinstance(plan.service, ProcessServiceConfig)
    assert plan.service.argv[1:] == ["-c", str(tmp_path / "mosquitto" / "mosquitto.conf")]
    assert plan.service.ready_port == 1884
    assert plan.mosquitto_conf is not None
    assert "listener 1884 127.0.0.1" in plan.mosquitto_conf
    assert "set_tcp_nodelay true" in plan.mosquitto_conf


def test_a_port_held_by_someone_else_moves_our_broker_to_the_next_free_one(
    tmp_path: Path,
) -> None:
    taken = {1884, 1885}
    plan = plan_broker(
        BrokerConfig(mode="process"), tmp_path, free=lambda host, port: port not in taken
    )
    assert plan.port == 1886
    assert "port 1884 is held by another process" in plan.reason


def test_no_free_port_in_the_search_span_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.process_port: no free port in 1884\.\.1933"):
        plan_broker(BrokerConfig(mode="process"), tmp_path, free=lambda h, p: False)


def test_external_mode_watches_without_owning_a_service(tmp_path: Path) -> None:
    plan = plan_broker(BrokerConfig(mode="external", port=1999), tmp_path)
    assert (plan.mode, plan.port, plan.service) == ("external", 1999, None)


def test_port_is_free_sees_a_listener() -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        assert not port_is_free("127.0.0.1", holder.getsockname()[1])


def test_generated_broker_config_stays_on_loopback_without_persistence() -> None:
    conf = mosquitto_conf("127.0.0.1", 2000)
    assert conf.splitlines()[1:] == [
        "listener 2000 127.0.0.1",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
