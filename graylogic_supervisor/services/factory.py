"""Backends from configuration: the one place that knows both."""

from __future__ import annotations

from pathlib import Path

from graylogic_supervisor.config import ProcessServiceConfig, ServiceConfig
from graylogic_supervisor.services.backend import ExitListener, ServiceBackend
from graylogic_supervisor.services.manager import Readiness
from graylogic_supervisor.services.process import ProcessService
from graylogic_supervisor.services.systemd import CommandRunner, SystemdService


def build_backend(
    service: ServiceConfig,
    *,
    state_dir: Path,
    on_exit: ExitListener,
    systemctl: CommandRunner,
) -> ServiceBackend:
    if isinstance(service, ProcessServiceConfig):
        return ProcessService(
            service.name,
            service.argv,
            run_dir=state_dir / "run",
            log_path=state_dir / "logs" / f"{service.name}.log",
            on_exit=on_exit,
            cwd=service.cwd,
            env=service.env,
            stop_timeout_s=service.stop_timeout_s,
        )
    return SystemdService(service.name, service.unit, systemctl, timeout_s=60.0)


def readiness_of(service: ServiceConfig, host: str = "127.0.0.1") -> Readiness | None:
    if service.ready_port is None:
        return None
    return Readiness(host, service.ready_port, service.ready_timeout_s)
