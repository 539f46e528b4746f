"""The built-in actions, and the one function that assembles them."""

from __future__ import annotations

from pathlib import Path

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.engine.action import Action, ActionRegistry, spec_of
from graylogic_supervisor.engine.builtins.compose import RunPlaybook
from graylogic_supervisor.engine.builtins.database import (
    CheckDatabase,
    CheckDisk,
    CheckpointDatabase,
)
from graylogic_supervisor.engine.builtins.health import WaitForHealth
from graylogic_supervisor.engine.builtins.network import CheckMqtt, CheckPort
from graylogic_supervisor.engine.builtins.notify import Alert, AlertSink, Log, Sleep
from graylogic_supervisor.engine.builtins.services import (
    CheckService,
    RestartService,
    StartService,
    StopService,
)
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.mqtt.probe import ProbeTarget
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.store.database import Database

BUILTIN_ACTION_TYPES: tuple[type[Action], ...] = (
    CheckService,
    StartService,
    RestartService,
    StopService,
    CheckPort,
    CheckMqtt,
    WaitForHealth,
    Log,
    Alert,
    Sleep,
    CheckDisk,
    CheckDatabase,
    CheckpointDatabase,
    RunPlaybook,
)


def builtin_specs() -> dict[str, ActionSpec]:
    """What playbook validation needs, without any live collaborator."""
    return {spec.name: spec for spec in map(spec_of, BUILTIN_ACTION_TYPES)}


def builtin_registry(
    services: ServiceManager,
    health: HealthMonitor,
    probe_target: ProbeTarget,
    alerts: AlertSink,
    *,
    db: Database,
    state_dir: Path,
    composer: RunPlaybook,
) -> ActionRegistry:
    """``composer`` runs nested playbooks; bind it to the runner once that exists."""
    return ActionRegistry(
        [
            composer,
            CheckService(services),
            StartService(services),
            RestartService(services),
            StopService(services),
            CheckPort(),
            CheckMqtt(probe_target),
            WaitForHealth(health),
            Log(),
            Alert(alerts),
            Sleep(),
            CheckDisk(state_dir),
            CheckDatabase(db),
            CheckpointDatabase(db),
        ]
    )
