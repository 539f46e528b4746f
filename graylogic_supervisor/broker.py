"""Which broker the supervisor watches, and how, decided once at start-up.

``auto`` supervises the system Mosquitto through systemd where systemd is PID 1.
Anywhere else it runs a Mosquitto of its own through the process backend, on
``process_port`` or, if another process holds that, the next free port above
it: it never fights another process for a port.

That broker may be given a password file and an ACL (``broker.password_file``,
``broker.acl_file``): then only clients that log in may connect, and the ACL
decides who may write where, so only bridge X can speak for bridge X on
``{root}/health/X``. The system broker's own configuration is the site's, and
is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from graylogic_supervisor.config import (
    BrokerConfig,
    ProcessServiceConfig,
    ServiceConfig,
    SystemdServiceConfig,
)
from graylogic_supervisor.errors import ConfigError, SourceProblem

logger = logging.getLogger(__name__)

PORT_SEARCH_SPAN = 50


@dataclass(frozen=True)
class BrokerPlan:
    mode: str  # systemd | process | external
    host: str
    port: int
    service: ServiceConfig | None  # None when the broker is external (not ours to restart)
    mosquitto_conf: str | None  # written to the state directory in process mode
    reason: str


def systemd_is_pid1() -> bool:
    """sd_booted(): systemd creates this directory when it is the init system."""
    return Path("/run/systemd/system").is_dir()


def port_is_free(host: str, port: int) -> bool:
    """Whether nobody listens on host:port (a bind test, as the broker would do it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def plan_broker(
    broker: BrokerConfig,
    state_dir: Path,
    *,
    systemd_pid1: Callable[[], bool] = systemd_is_pid1,
    free: Callable[[str, int], bool] = port_is_free,
) -> BrokerPlan:
    mode = broker.mode
    if mode == "auto":
        mode = "systemd" if systemd_pid1() else "process"
        why = "systemd is PID 1" if mode == "systemd" else "systemd is not PID 1"
    else:
        why = f"broker.mode is {mode}"
    secured = broker.password_file is not None or broker.acl_file is not None
    if mode in ("external", "systemd") and secured:
        logger.warning(
            "broker.password_file and broker.acl_file apply to our own broker only;"
            " the %s broker's configuration is its own",
            mode,
        )
    if mode == "external":
        return BrokerPlan("external", broker.host, broker.port, None, None, why)
    if mode == "systemd":
        unit_service = SystemdServiceConfig(
            name=broker.service,
            backend="systemd",
            unit=broker.unit,
            ready_port=broker.port,
        )
        return BrokerPlan("systemd", broker.host, broker.port, unit_service, None, why)
    port = _free_port_from(broker.host, broker.process_port, free)
    if port != broker.process_port:
        why += f"; port {broker.process_port} is held by another process"
    executable = shutil.which(broker.executable) or broker.executable
    conf_path = state_dir / "mosquitto" / "mosquitto.conf"
    service = ProcessServiceConfig(
        name=broker.service,
        backend="process",
        argv=[executable, "-c", str(conf_path)],
        ready_port=port,
    )
    for setting, path in (("password_file", broker.password_file), ("acl_file", broker.acl_file)):
        if path is not None and not path.is_file():
            raise ConfigError(
                Path("broker"),
                [SourceProblem(Path("config"), None, f"broker.{setting}", f"no file {path}")],
            )
    conf = mosquitto_conf(broker.host, port, broker.password_file, broker.acl_file)
    return BrokerPlan("process", broker.host, port, service, conf, why)


def _free_port_from(host: str, first: int, free: Callable[[str, int], bool]) -> int:
    for port in range(first, min(first + PORT_SEARCH_SPAN, 65536)):
        if free(host, port):
            return port
    raise ConfigError(
        Path("broker"),
        [
            SourceProblem(
                Path("config"),
                None,
                "broker.process_port",
                f"no free port in {first}..{first + PORT_SEARCH_SPAN - 1} on {host}",
            )
        ],
    )


def mosquitto_conf(
    host: str, port: int, password_file: Path | None = None, acl_file: Path | None = None
) -> str:
    """A minimal broker for a development machine: loopback only, no persistence; with a
    password file, clients must log in; with an ACL, they write only where it allows."""
    for path in (password_file, acl_file):
        if path is not None and "\n" in str(path):
            raise ValueError(f"a broker file path cannot hold a line break: {path!r}")
    access = "allow_anonymous true\n"
    if password_file is not None:
        access = f"allow_anonymous false\npassword_file {password_file}\n"
    if acl_file is not None:
        access += f"acl_file {acl_file}\n"
    return (
        "# written by graylogic-supervisor; regenerated at every start\n"
        f"listener {port} {host}\n"
        f"{access}"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
        "log_type notice\n"
    )


def write_mosquitto_conf(plan: BrokerPlan, state_dir: Path) -> None:
    if plan.mosquitto_conf is None:
        return
    conf_dir = state_dir / "mosquitto"
    conf_dir.mkdir(parents=True, exist_ok=True)
    target = conf_dir / "mosquitto.conf"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(plan.mosquitto_conf, encoding="utf-8")
    temporary.replace(target)
    with contextlib.suppress(OSError):
        conf_dir.chmod(0o755)
