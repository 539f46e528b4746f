"""The built-in actions, and the one function that assembles them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from graylogic_supervisor.config import ActionsConfig, WebhookConfig
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.engine.action import Action, ActionRegistry, spec_of
from graylogic_supervisor.engine.builtins.cleanup import CleanUpFiles
from graylogic_supervisor.engine.builtins.compose import RunPlaybook
from graylogic_supervisor.engine.builtins.database import (
    CheckDatabase,
    CheckDisk,
    CheckpointDatabase,
    CheckSiteDatabase,
    VacuumSiteDatabase,
)
from graylogic_supervisor.engine.builtins.firewall import CheckFirewall
from graylogic_supervisor.engine.builtins.health import WaitForHealth
from graylogic_supervisor.engine.builtins.network import CheckMqtt, CheckPort
from graylogic_supervisor.engine.builtins.notify import Alert, AlertSink, Log, Sleep
from graylogic_supervisor.engine.builtins.services import (
    CheckService,
    RestartService,
    StartService,
    StopService,
)
from graylogic_supervisor.engine.builtins.webhook import NotifyWebhook
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.mqtt.probe import ProbeTarget
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.services.systemd import SubprocessRunner
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
    CleanUpFiles,
    CheckSiteDatabase,
    VacuumSiteDatabase,
    CheckFirewall,
    NotifyWebhook,
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
    actions: ActionsConfig | None = None,
    webhooks: Mapping[str, WebhookConfig] | None = None,
    site: str = "",
) -> ActionRegistry:
    """``composer`` runs nested playbooks; bind it to the runner once that exists.

    ``actions`` bounds what clean-up and the site database actions may touch;
    ``webhooks`` are the config's ``escalation.webhooks``."""
    actions = actions if actions is not None else ActionsConfig()
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
            CleanUpFiles(actions.cleanup_directories),
            CheckSiteDatabase(actions.databases),
            VacuumSiteDatabase(actions.databases),
            CheckFirewall(SubprocessRunner()),
            NotifyWebhook(webhooks or {}, site),
        ]
    )
