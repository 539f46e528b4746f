"""The daemon's periodic loops, each one task in its TaskGroup.

State for dashboards, SIGHUP reloads, the stuck-execution watchdog, operators'
commands, people's actions for the failure memory, systemd's watchdog, and the
nightly consolidation. The composition root (daemon.py) builds what they use.
"""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from tzlocal import get_localzone

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.engine.control import ExecutionControls, Override
from graylogic_supervisor.errors import StoreError, SupervisorError
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.memory.events import EventRing
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.mqtt.status import StatusPublisher
from graylogic_supervisor.reload import Reloader
from graylogic_supervisor.sdnotify import Notifier
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.supervisor.loop import Supervisor
from graylogic_supervisor.supervisor.policy import RecoveryPolicy

logger = logging.getLogger(__name__)

STATE_INTERVAL_S = 15.0
USER_ACTIONS_INTERVAL_S = 5.0
COMMANDS_INTERVAL_S = 1.0  # how soon a queued pause, cancel or stop is applied (4/s cost 0.1% CPU)
WATCHDOG_INTERVAL_S = 5.0
STUCK_GRACE_S = 30.0
STORE_RETRY_S = 10.0  # after a write the disk had no room for


def nightly_scheduler(
    config: SupervisorConfig, memory: FailureMemory, learning: LearningService
) -> AsyncIOScheduler:
    """The memory's consolidation (nightly), the learning analysis (weekly) and the expiry
    of undecided recommendations (daily), on their crons, in the site's time zone."""
    zone = ZoneInfo(config.memory.timezone) if config.memory.timezone else get_localzone()
    scheduler = AsyncIOScheduler(timezone=zone)
    if config.learning.enabled:
        learning_zone = (
            ZoneInfo(config.learning.timezone) if config.learning.timezone else get_localzone()
        )
        scheduler.add_job(
            analyse_playbooks,
            CronTrigger.from_crontab(config.learning.analysis_cron, timezone=learning_zone),
            args=[learning],
            id="learning-analysis",
            name="workflow learning analysis",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 3600,
        )
        scheduler.add_job(
            expire_recommendations,
            CronTrigger.from_crontab("30 3 * * *", timezone=learning_zone),
            args=[learning],
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
            args=[memory],
            id="memory-consolidation",
            name="failure memory consolidation",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
    return scheduler


async def analyse_playbooks(learning: LearningService) -> None:
    try:
        report = await learning.analyze("schedule")
    except SupervisorError as exc:
        logger.error("learning analysis failed: %s", exc)
        return
    logger.info(
        "learning analysis %s: %d new recommendations",
        report["id"],
        len(report["recommendations"]),
    )


async def expire_recommendations(learning: LearningService) -> None:
    try:
        archived = await learning.expire()
    except SupervisorError as exc:
        logger.error("archiving expired recommendations failed: %s", exc)
        return
    if archived:
        logger.info("archived %d recommendations nobody decided in time", len(archived))


async def learn_from_executions(finished: asyncio.Queue[str], learning: LearningService) -> None:
    """Count each finished execution into the metrics (and the rollback rule) as it ends;
    first, whatever finished while the supervisor was not running."""
    caught_up = await learning.catch_up()
    if caught_up:
        logger.info("learning: counted %d executions recorded while stopped", caught_up)
    while True:
        execution_id = await finished.get()
        try:
            await learning.after_execution(execution_id)
        except SupervisorError as exc:
            logger.error("learning could not count %s: %s", execution_id, exc)


async def consolidate_memory(memory: FailureMemory) -> None:
    try:
        report = await memory.consolidate()
    except SupervisorError as exc:
        logger.error("failure memory consolidation failed: %s", exc)
        return
    logger.info("failure memory consolidated: %s", report)


async def publish_state(
    publisher: StatusPublisher,
    metrics: Metrics,
    policy: RecoveryPolicy,
    supervisor: Supervisor,
    controls: ControlRepository,
    clock: Clock,
    learning: LearningService,
) -> None:
    """The figures a dashboard shows, retained, refreshed every STATE_INTERVAL_S."""
    while True:
        reading = policy.termination()
        safe_mode = await controls.safe_mode()
        metrics.set_termination_rate(reading.rate)
        metrics.set_safe_mode(safe_mode.active)
        publisher.state_changed(
            {
                "termination_rate_percent": None
                if reading.rate is None
                else round(reading.rate * 100, 1),
                "executions_last_hour": reading.finished,
                "safe_mode": safe_mode.active,
                "open_incidents": len(supervisor.recovering),
                "recovering": sorted(supervisor.recovering),
                "pending_recommendations": await learning.pending_count(),
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
    clock: Clock,
) -> None:
    """Operators' commands from the CLI (through the store), applied and audited."""
    while True:
        try:
            await _apply_pending(commands, runs, controls, audit, clock)
        except StoreError as exc:  # a full disk: not recorded, so tried again later
            logger.error(
                "an operator's command could not be recorded, tried again in %g s: %s",
                STORE_RETRY_S,
                exc,
            )
            await clock.sleep(STORE_RETRY_S)
        await clock.sleep(COMMANDS_INTERVAL_S)


async def _apply_pending(
    commands: CommandRepository,
    runs: ExecutionControls,
    controls: ControlRepository,
    audit: AuditLog,
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
            clock.now(),
        )
        logger.info("%s (%s, by %s)", result, command.reason, command.issued_by)


async def watch_user_actions(audit: AuditLog, events: EventRing, clock: Clock) -> None:
    """People's actions (from the CLI, another process) join the ring of recent events."""
    newest = await audit.entries(limit=1)
    last_seq = newest[0]["seq"] if newest else 0
    while True:
        await clock.sleep(USER_ACTIONS_INTERVAL_S)
        for entry in reversed(await audit.entries(limit=100)):
            if entry["seq"] > last_seq and entry["actor"] != "supervisor":
                events.add("user", entry["actor"], f"{entry['action']} {entry['subject']}")
            last_seq = max(last_seq, entry["seq"])


async def systemd_watchdog(notifier: Notifier, clock: Clock, interval: float) -> None:
    """Pings systemd's watchdog; it stops when the loop stops, which is the point."""
    while True:
        notifier.watchdog()
        await clock.sleep(interval)
