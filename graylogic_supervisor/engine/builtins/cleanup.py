"""``clean_up_files``: frees disk space by removing old files, only where the config allows.

Only the directories in ``actions.cleanup_directories`` are ever touched, each
with its own age and file-name pattern; a playbook can narrow that (one
directory, an older age) but never widen it. The walk never follows a symbolic
link (a link is neither removed nor entered) and every file removed is checked
to lie inside its configured directory once resolved, so no ``..`` or link
escapes. ``dry_run: true`` reports what would go and removes nothing.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from graylogic_supervisor.config import CleanupDirectory
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult

DAY_S = 86_400.0


class CleanupParams(ActionParams):
    directory: str | None = Field(
        None, description="one of actions.cleanup_directories' paths; default all of them"
    )
    min_age_days: float | None = Field(
        None, gt=0, description="older than this, if stricter than the configured age"
    )
    dry_run: bool = Field(False, description="report what would be removed; remove nothing")


@dataclass
class Swept:
    """What one directory gave back."""

    files: int = 0
    bytes: int = 0
    errors: int = 0
    first_error: str | None = None


def sweep(root: Path, pattern: str, older_than: float, *, dry_run: bool) -> Swept:
    """Remove regular files under ``root`` matching ``pattern`` last modified before
    ``older_than`` (epoch seconds). Blocking: run it in a thread."""
    swept = Swept()
    base = root.resolve(strict=True)
    for folder, dirs, files in os.walk(base, followlinks=False):
        here = Path(folder)
        # os.walk lists links to directories in ``dirs`` but never enters them (followlinks)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            path = here / name
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or info.st_mtime >= older_than:
                    continue  # links, sockets, fifos stay; so do young files
                if not path.resolve(strict=True).is_relative_to(base):
                    continue
                if not dry_run:
                    path.unlink()
            except OSError as exc:
                swept.errors += 1
                swept.first_error = swept.first_error or f"{path}: {exc.strerror or exc}"
                continue
            swept.files += 1
            swept.bytes += info.st_size
    return swept


class CleanUpFiles:
    name: ClassVar[str] = "clean_up_files"
    kind: ClassVar[ActionKind] = ActionKind.FIX
    params_model: ClassVar[type[BaseModel]] = CleanupParams
    needs_target: ClassVar[bool] = False

    def __init__(self, directories: Sequence[CleanupDirectory]) -> None:
        self._directories = tuple(directories)

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, CleanupParams)
        chosen = self._directories
        if params.directory is not None:
            wanted = Path(params.directory)
            chosen = tuple(d for d in self._directories if d.path == wanted)
            if not chosen:
                known = ", ".join(str(d.path) for d in self._directories) or "none configured"
                return StepResult.failed(
                    f"{params.directory} is not in actions.cleanup_directories ({known})"
                )
        if not chosen:
            return StepResult.failed("no actions.cleanup_directories configured")
        now = ctx.clock.now().timestamp()
        total = Swept()
        report: dict[str, dict[str, int]] = {}
        for directory in chosen:
            days = max(directory.max_age_days, params.min_age_days or 0.0)
            try:
                swept = await asyncio.to_thread(
                    sweep,
                    directory.path,
                    directory.pattern,
                    now - days * DAY_S,
                    dry_run=params.dry_run,
                )
            except OSError as exc:
                swept = Swept(errors=1, first_error=f"{directory.path}: {exc.strerror or exc}")
            report[str(directory.path)] = {"files": swept.files, "bytes": swept.bytes}
            total.files += swept.files
            total.bytes += swept.bytes
            total.errors += swept.errors
            total.first_error = total.first_error or swept.first_error
        verb = "would free" if params.dry_run else "freed"
        summary = f"{verb} {total.bytes} bytes ({total.files} files) in {len(chosen)} directories"
        output = {
            "bytes_freed": 0 if params.dry_run else total.bytes,
            "bytes_found": total.bytes,
            "files": total.files,
            "dry_run": params.dry_run,
            "directories": report,
        }
        if total.errors:
            return StepResult.failed(
                f"{summary}; {total.errors} could not be removed (first: {total.first_error})",
                **output,
            )
        return StepResult.ok(summary, **output)
