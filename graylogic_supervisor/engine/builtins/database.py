"""Actions on the supervisor's own store and its filesystem."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import psutil
from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, NoParams, StepContext, StepResult
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.sitedb import check_site_database, vacuum_site_database


class DiskParams(ActionParams):
    min_free_mb: float = Field(50, ge=0)


class CheckDisk:
    """Succeeds when the state directory's filesystem has the free space asked for."""

    name: ClassVar[str] = "check_disk"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = DiskParams
    needs_target: ClassVar[bool] = False

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, DiskParams)
        usage = psutil.disk_usage(str(self._state_dir))
        free_mb = usage.free / 1_048_576
        output = {"free_mb": round(free_mb, 1), "percent_used": usage.percent}
        if free_mb >= params.min_free_mb:
            return StepResult.ok(f"{free_mb:.0f} MB free", **output)
        return StepResult.failed(f"only {free_mb:.0f} MB free (< {params.min_free_mb:g})", **output)


class DatabaseParams(ActionParams):
    max_latency_ms: float = Field(200, gt=0)


class CheckDatabase:
    """Quick integrity check, and how long it took against the allowed latency."""

    name: ClassVar[str] = "check_database"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = DatabaseParams
    needs_target: ClassVar[bool] = False

    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, DatabaseParams)
        began = time.perf_counter()
        verdict = await self._db.integrity_check(quick=True)
        latency_ms = (time.perf_counter() - began) * 1000
        output = {"integrity": verdict, "latency_ms": round(latency_ms, 2)}
        if verdict != "ok":
            return StepResult.failed(f"integrity check: {verdict}", **output)
        if latency_ms > params.max_latency_ms:
            return StepResult.failed(f"slow: {latency_ms:.0f} ms", **output)
        return StepResult.ok(f"integrity ok in {latency_ms:.1f} ms", **output)


class CheckpointDatabase:
    """Folds the WAL back into the database file and truncates it."""

    name: ClassVar[str] = "checkpoint_database"
    kind: ClassVar[ActionKind] = ActionKind.FIX
    params_model: ClassVar[type[BaseModel]] = NoParams
    needs_target: ClassVar[bool] = False

    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, ctx: StepContext) -> StepResult:
        frames, moved = await self._db.checkpoint()
        return StepResult.ok(f"checkpointed {moved} of {frames} WAL frames", frames=frames)


class SiteDatabaseParams(ActionParams):
    database: str = Field(min_length=1, description="a name in actions.databases")


class _SiteDatabaseAction:
    """A site SQLite file named in the config; never the supervisor's own store."""

    params_model: ClassVar[type[BaseModel]] = SiteDatabaseParams
    needs_target: ClassVar[bool] = False

    def __init__(self, databases: Mapping[str, Path]) -> None:
        self._databases = dict(databases)

    def _path(self, params: BaseModel) -> Path | str:
        """The file, or why there is none."""
        assert isinstance(params, SiteDatabaseParams)
        path = self._databases.get(params.database)
        if path is None:
            known = ", ".join(sorted(self._databases)) or "none configured"
            return f"no database {params.database!r} in actions.databases ({known})"
        return path


class CheckSiteDatabase(_SiteDatabaseAction):
    """Full integrity check of a site SQLite file, read-only."""

    name: ClassVar[str] = "check_site_database"
    kind: ClassVar[ActionKind] = ActionKind.CHECK

    async def run(self, ctx: StepContext) -> StepResult:
        path = self._path(ctx.params)
        if isinstance(path, str):
            return StepResult.failed(path)
        try:
            verdict = await check_site_database(path, quick=False)
        except StoreError as exc:
            return StepResult.failed(f"integrity check: {exc}")
        if verdict != "ok":
            return StepResult.failed(f"integrity check of {path}: {verdict}", integrity=verdict)
        return StepResult.ok(f"{path}: integrity ok", integrity=verdict)


class VacuumSiteDatabase(_SiteDatabaseAction):
    """VACUUM of a site SQLite file: gives its free pages back to the disk."""

    name: ClassVar[str] = "vacuum_site_database"
    kind: ClassVar[ActionKind] = ActionKind.FIX

    async def run(self, ctx: StepContext) -> StepResult:
        path = self._path(ctx.params)
        if isinstance(path, str):
            return StepResult.failed(path)
        try:
            done = await vacuum_site_database(path)
        except StoreError as exc:
            return StepResult.failed(f"vacuum: {exc}")
        freed = max(0, done.bytes_before - done.bytes_after)
        return StepResult.ok(
            f"{path}: vacuumed, {freed} bytes freed",
            bytes_before=done.bytes_before,
            bytes_after=done.bytes_after,
            bytes_freed=freed,
        )
