"""SIGHUP: reload playbooks, thresholds and the catalog, all validated before any applies.

What a reload can change: playbook files (new versions are seeded by the usual
rules), the policy's thresholds, components' thresholds and intervals, and the
error catalog. What needs a restart: the set of components, services, the
broker and MQTT settings. A reload that fails anywhere changes nothing and
says why, in the log and in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from graylogic_supervisor.catalog import ErrorCatalog, check_catalog_covers, load_catalog
from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import SupervisorConfig, load_config
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.errors import SourceError
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.playbooks.loader import LoadedPlaybook, load_directory
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.supervisor.loop import Supervisor
from graylogic_supervisor.supervisor.policy import RecoveryPolicy

logger = logging.getLogger(__name__)

RESTART_ONLY = ("services", "broker", "mqtt", "state_dir", "database", "admin", "site")


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    detail: str


class Reloader:
    def __init__(
        self,
        config_path: Path,
        current: SupervisorConfig,
        actions: dict[str, ActionSpec],
        monitor: HealthMonitor,
        *,
        policy: RecoveryPolicy,
        supervisor: Supervisor,
        versions: PlaybookVersions,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._path = config_path
        self._current = current
        self._actions = actions
        self._monitor = monitor
        self._policy = policy
        self._supervisor = supervisor
        self._versions = versions
        self._audit = audit
        self._clock = clock

    async def reload(self) -> ReloadResult:
        result = await self._reload()
        await self._audit.append(
            "supervisor",
            "config.reload" if result.ok else "config.reload_refused",
            "site",
            {"file": str(self._path), "detail": result.detail},
            now=self._clock.now(),
        )
        log = logger.info if result.ok else logger.error
        log("reload %s: %s", "applied" if result.ok else "refused", result.detail)
        return result

    async def _reload(self) -> ReloadResult:
        # Reading and validating YAML takes a while on a small box: a thread, not the loop
        # that supervises. The result is applied here, on the loop, as everything else is.
        parsed = await asyncio.to_thread(parse_reload, self._path, self._current, self._actions)
        if isinstance(parsed, ReloadResult):
            return parsed
        config, catalog, loaded = parsed
        try:
            self._monitor.update_thresholds(config.components)
        except ValueError as exc:
            return ReloadResult(False, f"kept the running configuration: {exc}")
        self._policy.update_settings(config.policy)
        self._supervisor.update_catalog(catalog)
        seeded = [
            await self._versions.seed(item.playbook, item.source, str(item.file), self._clock.now())
            for item in loaded
        ]
        self._current = config
        news = [
            f"{s.playbook_id} {s.version} {s.action}" for s in seeded if s.action != "unchanged"
        ]
        return ReloadResult(
            True,
            f"{len(loaded)} playbooks ({', '.join(news) or 'no new versions'}),"
            f" {len(catalog.errors)} catalog entries, thresholds applied",
        )


def parse_reload(
    path: Path, current: SupervisorConfig, actions: dict[str, ActionSpec]
) -> tuple[SupervisorConfig, ErrorCatalog, list[LoadedPlaybook]] | ReloadResult:
    """Read and check everything a reload needs, touching no running object (so it may run
    in a thread); a refusal is the :class:`ReloadResult` that says why."""
    try:
        config = load_config(path)
        catalog = load_catalog(config.catalog)
        check_catalog_covers(config, catalog, path)
    except SourceError as exc:
        return ReloadResult(False, f"kept the running configuration: {exc}")
    changed = [key for key in RESTART_ONLY if getattr(config, key) != getattr(current, key)]
    if changed:
        return ReloadResult(
            False, f"kept the running configuration: {', '.join(changed)} need a restart"
        )
    loaded, errors = load_directory(config.playbooks.directory, actions)
    if errors:
        return ReloadResult(
            False, "kept the running configuration: " + "; ".join(str(e) for e in errors)
        )
    return config, catalog, loaded
