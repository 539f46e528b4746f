"""The built-in actions, and the one function that assembles them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, create_model, field_validator

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


def _only(
    model: type[BaseModel], field: str, allowed: Collection[str], where: str
) -> type[BaseModel]:
    """``model`` whose ``field`` must be one of ``allowed`` (None stays allowed)."""
    known = ", ".join(sorted(allowed)) or "none configured"

    def configured(cls: type[BaseModel], value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise ValueError(f"{value!r} is not in {where} ({known})")
        return value

    validator: Any = field_validator(field)(classmethod(configured))
    return create_model(model.__name__, __base__=model, __validators__={"configured": validator})


def bounded_specs(
    specs: Mapping[str, ActionSpec],
    actions: ActionsConfig,
    webhooks: Mapping[str, WebhookConfig],
) -> dict[str, ActionSpec]:
    """``specs`` with the names a playbook gives checked against the config when it loads
    (a webhook, site database or clean-up directory the config lacks is then a load error
    with its line, not a step that fails at 3 a.m.). The actions check again when they run."""
    bounded = dict(specs)
    narrowing = {
        NotifyWebhook.name: ("webhook", webhooks, "escalation.webhooks"),
        CheckSiteDatabase.name: ("database", actions.databases, "actions.databases"),
        VacuumSiteDatabase.name: ("database", actions.databases, "actions.databases"),
        CleanUpFiles.name: (
            "directory",
            [str(d.path) for d in actions.cleanup_directories],
            "actions.cleanup_directories",
        ),
    }
    for name, (field, allowed, where) in narrowing.items():
        spec = bounded.get(name)
        if spec is not None:
            model = _only(spec.params_model, field, list(allowed), where)
            bounded[name] = replace(spec, params_model=model)
    return bounded


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
