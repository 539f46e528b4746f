"""The nightly retention job, called as the scheduler calls it: records removed, old audit
entries archived, and the whole chain still verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from graylogic_supervisor import loops
from graylogic_supervisor.config import RetentionConfig
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_archive import segments
from graylogic_supervisor.store.database import Database
from tests.clocks import ManualClock
from tests.store.test_retention import insert_execution, playbook, remaining

DAY = 86400.0


async def test_the_job_removes_old_records_and_archives_old_entries(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Database(tmp_path / "supervisor.db") as db:
        audit = AuditLog(db)
        await playbook(db, "1.0.0")
        for index in range(5):
            await insert_execution(db, f"e{index}", started=clock.now() + timedelta(hours=index))
            await audit.append("alice", "safe_mode.enter", "site", {"n": index}, now=clock.now())
        clock.advance(400 * DAY)
        await audit.append("alice", "safe_mode.leave", "site", {}, now=clock.now())
        config = RetentionConfig(audit_days=365, keep_recent_executions=2)

        report = await loops.apply_retention(loops.StoreUpkeep(db, audit), config, clock)

        assert report is not None and report.removed["executions"] == 3
        assert await remaining(db) == {"e3", "e4"}
        [segment] = segments(tmp_path / "audit-archive")
        assert (segment.first, segment.last) == (1, 5)
        check = await audit.verify()
        assert (check.ok, check.entries) == (True, 6)
        # the next night finds nothing more to do
        again = await loops.apply_retention(loops.StoreUpkeep(db, audit), config, clock)
        assert again is not None and again.total == 0
        assert len(segments(tmp_path / "audit-archive")) == 1


async def test_audit_days_zero_never_archives(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Database(tmp_path / "supervisor.db") as db:
        audit = AuditLog(db)
        for index in range(3):
            await audit.append("alice", "safe_mode.enter", "site", {"n": index}, now=clock.now())
        clock.advance(4000 * DAY)
        await loops.apply_retention(loops.StoreUpkeep(db, audit), RetentionConfig(), clock)
        assert segments(tmp_path / "audit-archive") == []
        assert len(await db.fetchall("SELECT seq FROM audit_log")) == 3


async def test_executions_stay_at_least_the_learning_window(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Database(tmp_path / "supervisor.db") as db:
        audit = AuditLog(db)
        await playbook(db, "1.0.0")
        for index in range(4):
            await insert_execution(db, f"e{index}", started=clock.now() + timedelta(days=index))
        clock.advance(20 * DAY)  # e0 is 20 days old, e3 17 days
        config = RetentionConfig(executions_days=7, keep_recent_executions=0)
        report = await loops.apply_retention(
            loops.StoreUpkeep(db, audit), config, clock, floor_days=18.5
        )
        assert report is not None and report.removed == {"executions": 1, "execution_steps": 3}
        assert await remaining(db) == {"e1", "e2", "e3"}
