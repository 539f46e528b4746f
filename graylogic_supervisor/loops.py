"""The daemon's periodic loops, each one task in its TaskGroup.

State for dashboards, SIGHUP reloads, the stuck-execution watchdog, operators'
commands, people's actions for the failure memory, systemd's watchdog, and the
nightly consolidation. The composition root (daemon.py) builds what they use.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from tzlocal import get_localzone

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import RetentionConfig, SupervisorConfig
from graylogic_supervisor.engine.control import ExecutionControls, Override
from graylogic_supervisor.errors import StoreError, SupervisorError
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.memory.events import EventRing
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.reload import Reloader
from graylogic_supervisor.sdnotify import Notifier
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_archive import SEGMENT_MAX, Archived
from graylogic_supervisor.store.backup import BackupResult, backup, nightly_name, prune_nightly
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.retention import RetentionReport, RetentionStore
from graylogic_supervisor.streak import ErrorStreak
from graylogic_supervisor.supervisor.loop import Supervisor
from graylogic_supervisor.supervisor.policy import RecoveryPolicy
from graylogic_supervisor.supervisor.status import StatusPublisher

logger = logging.getLogger(__name__)

T = TypeVar("T")

STATE_INTERVAL_S = 15.0
USER_ACTIONS_INTERVAL_S = 5.0
COMMANDS_INTERVAL_S = 1.0  # how soon a queued pause, cancel or stop is applied (4/s cost 0.1% CPU)
WATCHDOG_INTERVAL_S = 5.0
STUCK_GRACE_S = 30.0
STORE_RETRY_S = 10.0  # after a store error (a full disk, another process's write lock)
JOB_ATTEMPTS = 5  # a scheduled job that meets store errors, before it waits for its next run


@dataclass(frozen=True)
class StoreUpkeep:
    """What the store's nightly jobs (retention, the audit archive, the backup) work on."""

    db: Database
    audit: AuditLog


def nightly_scheduler(
    config: SupervisorConfig,
    memory: FailureMemory,
    learning: LearningService,
    clock: Clock,
    *,
    upkeep: StoreUpkeep | None = None,
) -> AsyncIOScheduler:
    """The memory's consolidation (nightly), the learning analysis (weekly) and the expiry
    of undecided recommendations (daily), on their crons, in the site's time zone; with
    ``upkeep``, the retention (and audit archive) and the backup, nightly too."""
    zone = ZoneInfo(config.memory.timezone) if config.memory.timezone else get_localzone()
    scheduler = AsyncIOScheduler(timezone=zone)
    if upkeep is not None:
        _add_upkeep_jobs(scheduler, config, upkeep, clock)
    if config.learning.enabled:
        learning_zone = (
            ZoneInfo(config.learning.timezone) if config.learning.timezone else get_localzone()
        )
        scheduler.add_job(
            analyse_playbooks,
            CronTrigger.from_crontab(config.learning.analysis_cron, timezone=learning_zone),
            args=[learning, clock],
            id="learning-analysis",
            name="workflow learning analysis",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 3600,
        )
        scheduler.add_job(
            expire_recommendations,
            CronTrigger.from_crontab("30 3 * * *", timezone=learning_zone),
            args=[learning, clock],
            id="recommendation-expiry",
            name="archive recommendations nobody decided",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 3600,
        )
    if config.memory.enabled:
        scheduler.add_job(
            consolidate_memory,
            CronTrigger.from_crontab(config.memory.consolidation_cron, timezone=zone),
            args=[memory, clock],
            id="memory-consolidation",
            name="failure memory consolidation",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
    return scheduler


def _add_upkeep_jobs(
    scheduler: AsyncIOScheduler, config: SupervisorConfig, upkeep: StoreUpkeep, clock: Clock
) -> None:
    if config.retention.enabled:
        retention = config.retention
        zone = ZoneInfo(retention.timezone) if retention.timezone else get_localzone()
        scheduler.add_job(
            apply_retention,
            CronTrigger.from_crontab(retention.cron, timezone=zone),
            args=[upkeep, retention, clock],
            kwargs={"floor_days": config.learning.window_days},
            id="retention",
            name="retention and audit archive",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 3600,
        )
    if config.backup.enabled:
        zone = ZoneInfo(config.backup.timezone) if config.backup.timezone else get_localzone()
        scheduler.add_job(
            nightly_backup,
            CronTrigger.from_crontab(config.backup.cron, timezone=zone),
            args=[upkeep.db.path, config.backup_directory, config.backup.keep, clock],
            id="backup",
            name="nightly backup",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 3600,
        )


def retention_policy(config: RetentionConfig, floor_days: float = 0.0) -> RetentionConfig:
    """``floor_days``: executions are kept at least this long (the learning analysis
    counts the active version's executions over its ``window_days``)."""
    if not config.executions_days:
        return config
    days = max(config.executions_days, math.ceil(floor_days))
    return config.model_copy(update={"executions_days": days})


async def apply_retention(
    upkeep: StoreUpkeep, config: RetentionConfig, clock: Clock, *, floor_days: float = 0.0
) -> RetentionReport | None:
    """Old records removed in small batches (store/retention.py), then old audit entries
    moved to archive segments; returns what retention removed (None: it did not run)."""
    store = RetentionStore(upkeep.db, retention_policy(config, floor_days))
    report = await _job("retention", lambda: store.run(clock.now()), clock)
    if report is not None:
        logger.info(
            "retention removed %d rows in %d batches (longest %.3f s): %s",
            report.total,
            report.batches,
            report.longest_batch_s,
            report.removed,
        )
    directory = upkeep.audit.archive_dir
    if config.audit_days and directory is not None:
        before = clock.now() - timedelta(days=config.audit_days)
        while True:
            archived = await _job(
                "audit archive", partial(_archive, upkeep.audit, directory, before, clock), clock
            )
            if archived is None or archived.segment is None:
                break
            logger.info("archived %d audit entries to %s", archived.entries, archived.segment)
            if archived.entries < SEGMENT_MAX:
                break
    return report


async def _archive(audit: AuditLog, directory: Path, before: datetime, clock: Clock) -> Archived:
    return await audit.archives.archive(directory, before, clock.now())


async def nightly_backup(
    db_path: Path, directory: Path, keep: int, clock: Clock
) -> BackupResult | None:
    """A backup through SQLite's online backup API, in a worker thread (``backup`` blocks
    on purpose, pacing itself), then the oldest nightly backups beyond ``keep`` removed."""
    dest = directory / nightly_name(clock.now())
    try:
        result = await asyncio.to_thread(backup, db_path, dest)
        removed = await asyncio.to_thread(prune_nightly, directory, keep)
    except (StoreError, OSError) as exc:
        logger.error("nightly backup to %s failed: %s", dest, exc)
        return None
    logger.info(
        "nightly backup %s: %d bytes in %.1f s; %d old ones removed",
        result.path,
        result.size,
        result.seconds,
        len(removed),
    )
    return result


async def analyse_playbooks(learning: LearningService, clock: Clock) -> None:
    report = await _job("learning analysis", lambda: learning.analyze("schedule"), clock)
    if report is None:
        return
    logger.info(
        "learning analysis %s: %d new recommendations",
        report["id"],
        len(report["recommendations"]),
    )


async def expire_recommendations(learning: LearningService, clock: Clock) -> None:
    archived = await _job("archiving expired recommendations", learning.expire, clock)
    if archived:
        logger.info("archived %d recommendations nobody decided in time", len(archived))


async def learn_from_executions(
    finished: asyncio.Queue[str], learning: LearningService, clock: Clock
) -> None:
    """Count each finished execution into the metrics (and the rollback rule) as it ends;
    first, whatever finished while the supervisor was not running.

    A store error is retried (the execution is not dropped); any other error of ours
    means this execution cannot be counted, which is logged and the next one taken.
    """
    caught_up = await _until_stored(
        "learning: counting executions recorded while stopped", learning.catch_up, clock
    )
    if caught_up:
        logger.info("learning: counted %d executions recorded while stopped", caught_up)
    while True:
        execution_id = await finished.get()
        try:
            await _until_stored(
                "learning: counting a finished execution",
                partial(learning.after_execution, execution_id),
                clock,
            )
        except SupervisorError as exc:
            logger.error("learning could not count %s: %s", execution_id, exc)


async def consolidate_memory(memory: FailureMemory, clock: Clock) -> None:
    report = await _job("failure memory consolidation", memory.consolidate, clock)
    if report is not None:
        logger.info("failure memory consolidated: %s", report)


async def _until_stored(what: str, work: Callable[[], Awaitable[T]], clock: Clock) -> T:
    """``work()``, tried again every STORE_RETRY_S while the store fails; logged once."""
    streak = ErrorStreak(what, logger)
    while True:
        try:
            result = await work()
        except StoreError as exc:
            streak.failed(exc, STORE_RETRY_S)
            await clock.sleep(STORE_RETRY_S)
            continue
        streak.succeeded()
        return result


async def _job(what: str, work: Callable[[], Awaitable[T]], clock: Clock) -> T | None:
    """A scheduled job: store errors tried again JOB_ATTEMPTS times, then the next run's turn;
    None if it did not complete (said in the log)."""
    streak = ErrorStreak(what, logger)
    for attempt in range(1, JOB_ATTEMPTS + 1):
        try:
            result = await work()
        except StoreError as exc:
            if attempt == JOB_ATTEMPTS:
                logger.error("%s gave up after %d store errors: %s", what, attempt, exc)
                return None
            streak.failed(exc, STORE_RETRY_S)
            await clock.sleep(STORE_RETRY_S)
            continue
        except SupervisorError as exc:
            logger.error("%s failed: %s", what, exc)
            return None
        streak.succeeded()
        return result
    return None


async def publish_state(
    publisher: StatusPublisher,
    metrics: Metrics,
    policy: RecoveryPolicy,
    supervisor: Supervisor,
    *,
    controls: ControlRepository,
    clock: Clock,
    learning: LearningService,
) -> None:
    """The figures a dashboard shows, retained, refreshed every STATE_INTERVAL_S.

    A store error skips one refresh (the last figures stay retained)."""
    streak = ErrorStreak("publishing the supervisor's state", logger)
    while True:
        reading = policy.termination()
        metrics.set_termination_rate(reading.rate)
        try:
            safe_mode = await controls.safe_mode()
            pending = await learning.pending_by_priority()
        except StoreError as exc:
            streak.failed(exc, STATE_INTERVAL_S)
        else:
            streak.succeeded()
            metrics.set_safe_mode(safe_mode.active)
            metrics.set_pending_recommendations(pending)
            publisher.state_changed(
                {
                    "termination_rate_percent": None
                    if reading.rate is None
                    else round(reading.rate * 100, 1),
                    "executions_last_hour": reading.finished,
                    "safe_mode": safe_mode.active,
                    "open_incidents": len(supervisor.recovering),
                    "recovering": sorted(supervisor.recovering),
                    "pending_recommendations": sum(pending.values()),
                    "pending_recommendations_high": pending["high"],
                }
            )
        await clock.sleep(STATE_INTERVAL_S)


async def reload_on_signal(reloader: Reloader, requested: asyncio.Event, events: EventRing) -> None:
    while True:
        await requested.wait()
        requested.clear()
        try:
            result = await reloader.reload()
        except StoreError as exc:  # a full disk: its playbooks or its audit entry not written
            logger.error("the reload could not be recorded, send SIGHUP again: %s", exc)
            continue
        events.add(
            "config", "site", ("reloaded: " if result.ok else "reload refused: ") + result.detail
        )


async def watch_stuck_executions(
    runs: ExecutionControls, alerts: StatusPublisher, clock: Clock
) -> None:
    """Flag an execution still running well past its playbook's deadline."""
    while True:
        for execution_id, silent_s in runs.stuck(STUCK_GRACE_S):
            message = (
                f"execution {execution_id} is stuck past its deadline"
                f" (no step started or ended for {silent_s:.0f} s)"
            )
            logger.error("%s", message)
            alerts.alert("high", message, {"execution_id": execution_id})
        await clock.sleep(WATCHDOG_INTERVAL_S)


async def apply_commands(
    commands: CommandRepository,
    runs: ExecutionControls,
    controls: ControlRepository,
    audit: AuditLog,
    *,
    clock: Clock,
) -> None:
    """Operators' commands from the CLI (through the store), applied and audited."""
    streak = ErrorStreak("reading or recording operators' commands", logger)
    while True:
        try:
            await _apply_pending(commands, runs, controls, audit, clock=clock)
        except StoreError as exc:  # a full disk: not recorded, so tried again later
            streak.failed(exc, STORE_RETRY_S)
            await clock.sleep(STORE_RETRY_S)
        else:
            streak.succeeded()
        await clock.sleep(COMMANDS_INTERVAL_S)


async def _apply_pending(
    commands: CommandRepository,
    runs: ExecutionControls,
    controls: ControlRepository,
    audit: AuditLog,
    *,
    clock: Clock,
) -> None:
    for command in await commands.pending():
        if command.command == "pause":
            result = runs.pause(command.execution_id)
        elif command.command == "resume":
            result = runs.resume(command.execution_id)
        elif command.command == "cancel":
            result = runs.cancel(command.execution_id, command.issued_by)
        elif command.command == "override":
            assert command.step_id is not None and command.outcome is not None
            result = runs.override(
                command.execution_id,
                command.step_id,
                Override(command.outcome, command.issued_by, command.reason),
            )
        else:  # emergency_stop: stop everything, and start nothing new
            result = runs.emergency_stop(command.issued_by)
            await controls.set_safe_mode(
                True, f"emergency stop: {command.reason}", command.issued_by, clock.now()
            )
        await commands.applied(command.id, result, clock.now())
        await audit.append(
            command.issued_by,
            f"execution.{command.command}",
            command.execution_id,
            {"reason": command.reason, "step": command.step_id, "result": result},
            now=clock.now(),
        )
        logger.info("%s (%s, by %s)", result, command.reason, command.issued_by)


async def watch_user_actions(audit: AuditLog, events: EventRing, clock: Clock) -> None:
    """People's actions (from the CLI, another process) join the ring of recent events."""
    newest = await _until_stored(
        "reading the audit log for people's actions", lambda: audit.entries(limit=1), clock
    )
    last_seq = newest[0]["seq"] if newest else 0
    streak = ErrorStreak("reading the audit log for people's actions", logger)
    while True:
        await clock.sleep(USER_ACTIONS_INTERVAL_S)
        try:
            entries = await audit.entries(limit=100)
        except StoreError as exc:
            streak.failed(exc, USER_ACTIONS_INTERVAL_S)
            continue
        streak.succeeded()
        for entry in reversed(entries):
            if entry["seq"] > last_seq and entry["actor"] != "supervisor":
                events.add("user", entry["actor"], f"{entry['action']} {entry['subject']}")
            last_seq = max(last_seq, entry["seq"])


async def systemd_watchdog(notifier: Notifier, clock: Clock, interval: float) -> None:
    """Pings systemd's watchdog; it stops when the loop stops, which is the point."""
    while True:
        notifier.watchdog()
        await clock.sleep(interval)
