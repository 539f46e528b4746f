"""The nightly backup: the scheduler's own job function (its trigger is not waited for),
a real store, real backups; it keeps ``keep`` of its own and never touches other files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from graylogic_supervisor import loops
from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import MemoryConfig, SupervisorConfig
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.clocks import ManualClock
from tests.test_config import only_problem, write_config

DAY = 86400.0


async def test_the_job_backs_up_and_keeps_only_its_newest(tmp_path: Path) -> None:
    clock = ManualClock()
    backups = tmp_path / "backups"
    backups.mkdir()
    by_hand = backups / "store-20261101T000000Z.db"
    by_hand.write_bytes(b"a backup someone made")
    other = backups / "notes.txt"
    other.write_text("not a backup")
    async with Database(tmp_path / "state" / "supervisor.db") as db:
        audit = AuditLog(db)
        made = []
        for night in range(4):
            await audit.append(
                "alice", "safe_mode.enter", "site", {"night": night}, now=clock.now()
            )
            result = await loops.nightly_backup(db.path, backups, 2, clock)
            assert result is not None
            made.append(result.path)
            clock.advance(DAY)
    kept = sorted(path.name for path in backups.iterdir())
    assert kept == sorted(
        [
            by_hand.name,
            other.name,
            made[2].name,
            made[2].name + ".audit-head",
            made[2].name + ".audit-head.lock",
            made[3].name,
            made[3].name + ".audit-head",
            made[3].name + ".audit-head.lock",
        ]
    )
    assert made[3].name == "nightly-20261129T120000Z.db"
    # the newest backup holds every entry committed before it, and its chain verifies
    async with Database(made[3]) as copy:
        rows = await copy.fetchall("SELECT seq FROM audit_log")
        assert len(rows) == 4
        check = await AuditLog(copy).verify()
        assert check.ok and check.clean
    with sqlite3.connect(made[2]) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_failed_backup_is_logged_and_the_daemon_goes_on(tmp_path: Path) -> None:
    result = await loops.nightly_backup(tmp_path / "none.db", tmp_path / "b", 3, ManualClock())
    assert result is None


async def test_the_jobs_are_scheduled_on_their_crons(tmp_path: Path) -> None:
    config = SupervisorConfig.model_validate(
        {
            "state_dir": str(tmp_path),
            "backup": {"cron": "15 2 * * *", "timezone": "Europe/London", "keep": 3},
            "retention": {"cron": "45 3 * * *", "timezone": "Europe/London"},
        }
    )
    clock = SystemClock()
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        learning = LearningService(
            db, PlaybookVersions(db), audit, {}, settings=config.learning, clock=clock
        )
        memory = FailureMemory(MemoryRepository(db), MemoryConfig(), clock)
        scheduler = loops.nightly_scheduler(
            config, memory, learning, clock, upkeep=loops.StoreUpkeep(db, audit)
        )
        zone = ZoneInfo("Europe/London")
        after = datetime(2026, 11, 26, 12, 0, tzinfo=zone)
        backup, retention = scheduler.get_job("backup"), scheduler.get_job("retention")
        assert backup is not None and retention is not None
        assert backup.trigger.get_next_fire_time(None, after) == datetime(
            2026, 11, 27, 2, 15, tzinfo=zone
        )
        assert retention.trigger.get_next_fire_time(None, after) == datetime(
            2026, 11, 27, 3, 45, tzinfo=zone
        )
        assert backup.args[1:3] == (tmp_path / "backups", 3)
        off = SupervisorConfig.model_validate(
            {"backup": {"enabled": False}, "retention": {"enabled": False}}
        )
        scheduler = loops.nightly_scheduler(
            off, memory, learning, clock, upkeep=loops.StoreUpkeep(db, audit)
        )
        assert scheduler.get_job("backup") is None and scheduler.get_job("retention") is None


def test_backup_config_defaults_and_directory(tmp_path: Path) -> None:
    config = SupervisorConfig.model_validate({"state_dir": "/var/lib/gs"})
    assert (config.backup.enabled, config.backup.cron, config.backup.keep) == (
        True,
        "15 2 * * *",
        7,
    )
    assert config.backup_directory == Path("/var/lib/gs/backups")
    elsewhere = SupervisorConfig.model_validate(
        {"state_dir": "/var/lib/gs", "backup": {"directory": "/mnt/usb/gs"}}
    )
    assert elsewhere.backup_directory == Path("/mnt/usb/gs")
    assert config.retention.executions_days == 365 and config.retention.audit_days == 0


def test_a_bad_backup_or_retention_setting_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "site:\n  name: x\nbackup:\n  keep: 0\n")
    assert only_problem(path)[:2] == (4, "backup.keep")
    path = write_config(tmp_path, "retention:\n  executions_days: 30\n  cron: every night\n")
    line, field, message = only_problem(path)
    assert (line, field) == (3, "retention.cron") and "crontab" in message
    path = write_config(tmp_path, "retention:\n  executions_days: -1\n")
    assert only_problem(path)[:2] == (2, "retention.executions_days")


def test_the_nightly_name_sorts_by_time() -> None:
    from graylogic_supervisor.store.backup import NIGHTLY, nightly_name

    name = nightly_name(datetime(2026, 12, 6, 2, 15, tzinfo=UTC))
    assert name == "nightly-20261206T021500Z.db" and NIGHTLY.match(name)
