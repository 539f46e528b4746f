"""The weekly analysis and the daily expiry are on the scheduler, in the site's zone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from graylogic_supervisor import loops
from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import MemoryConfig, SupervisorConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.versions import PlaybookVersions


async def test_the_analysis_runs_on_sunday_at_three_in_the_site_zone(tmp_path: Path) -> None:
    config = SupervisorConfig.model_validate(
        {"learning": {"timezone": "Europe/London"}, "memory": {"timezone": "Europe/London"}}
    )
    clock = SystemClock()
    async with Database(tmp_path / "s.db") as db:
        learning = LearningService(
            db,
            PlaybookVersions(db),
            AuditLog(db),
            builtin_specs(),
            settings=config.learning,
            clock=clock,
        )
        memory = FailureMemory(MemoryRepository(db), MemoryConfig(), clock)
        scheduler = loops.nightly_scheduler(config, memory, learning, clock)
        zone = ZoneInfo("Europe/London")
        after = datetime(2026, 11, 26, 12, 0, tzinfo=zone)  # a Thursday
        analysis = scheduler.get_job("learning-analysis")
        expiry = scheduler.get_job("recommendation-expiry")
        assert analysis is not None and expiry is not None
        assert analysis.trigger.get_next_fire_time(None, after) == datetime(
            2026, 11, 29, 3, 0, tzinfo=zone
        )
        assert expiry.trigger.get_next_fire_time(None, after) == datetime(
            2026, 11, 27, 3, 30, tzinfo=zone
        )


async def test_no_analysis_job_when_learning_is_off(tmp_path: Path) -> None:
    config = SupervisorConfig.model_validate({"learning": {"enabled": False}})
    clock = SystemClock()
    async with Database(tmp_path / "s.db") as db:
        learning = LearningService(
            db, PlaybookVersions(db), AuditLog(db), {}, settings=config.learning, clock=clock
        )
        memory = FailureMemory(MemoryRepository(db), MemoryConfig(), clock)
        scheduler = loops.nightly_scheduler(config, memory, learning, clock)
        assert scheduler.get_job("learning-analysis") is None
