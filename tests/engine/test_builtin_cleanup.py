"""``clean_up_files`` on a real directory tree: only old matching files inside the
configured directories go; links are neither followed nor removed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from graylogic_supervisor.config import CleanupDirectory, SupervisorConfig
from graylogic_supervisor.engine.builtins.cleanup import DAY_S, CleanUpFiles, CleanupParams
from tests.clocks import ManualClock
from tests.engine.step_context import step_context


def aged(path: Path, days: float, clock: ManualClock, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    moment = clock.now().timestamp() - days * DAY_S
    os.utime(path, (moment, moment))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, ManualClock]:
    clock = ManualClock()
    logs, outside = tmp_path / "logs", tmp_path / "precious"
    aged(logs / "old.log", 10, clock, 1000)
    aged(logs / "deep" / "older.log", 30, clock, 500)
    aged(logs / "young.log", 1, clock)
    aged(logs / "old.db", 10, clock)  # not matching the pattern
    aged(outside / "keep.log", 100, clock, 4000)
    (logs / "link.log").symlink_to(outside / "keep.log")
    (logs / "linked_dir").symlink_to(outside, target_is_directory=True)
    return logs, outside, clock


def run(action: CleanUpFiles, clock: ManualClock, **params: object) -> object:
    return asyncio.run(action.run(step_context(CleanupParams(**params), clock)))


def test_old_matching_files_go_and_nothing_outside_is_touched(
    tree: tuple[Path, Path, ManualClock],
) -> None:
    logs, outside, clock = tree
    action = CleanUpFiles([CleanupDirectory(path=logs, max_age_days=7, pattern="*.log")])

    result = run(action, clock)

    assert result.success, result
    assert result.output["bytes_freed"] == 1500
    assert result.output["files"] == 2
    assert result.result == "freed 1500 bytes (2 files) in 1 directories"
    assert not (logs / "old.log").exists() and not (logs / "deep" / "older.log").exists()
    assert (logs / "young.log").exists() and (logs / "old.db").exists()
    assert (logs / "link.log").is_symlink()  # a link is not removed, nor what it points to
    assert (outside / "keep.log").exists()


def test_a_dry_run_reports_and_removes_nothing(tree: tuple[Path, Path, ManualClock]) -> None:
    logs, _, clock = tree
    action = CleanUpFiles([CleanupDirectory(path=logs, max_age_days=7, pattern="*.log")])

    result = run(action, clock, dry_run=True)

    assert result.success
    assert (result.output["bytes_found"], result.output["bytes_freed"]) == (1500, 0)
    assert result.result.startswith("would free 1500 bytes")
    assert (logs / "old.log").exists()


def test_a_playbook_can_narrow_the_age_but_not_widen_it(
    tree: tuple[Path, Path, ManualClock],
) -> None:
    logs, _, clock = tree
    action = CleanUpFiles([CleanupDirectory(path=logs, max_age_days=7, pattern="*.log")])

    assert run(action, clock, min_age_days=20).output["files"] == 1  # only the 30-day one
    assert run(action, clock, min_age_days=0.5).output["files"] == 1  # still 7 days: the 10-day


def test_a_directory_not_configured_is_refused(tree: tuple[Path, Path, ManualClock]) -> None:
    logs, outside, clock = tree
    action = CleanUpFiles([CleanupDirectory(path=logs, max_age_days=7, pattern="*.log")])

    for escape in (outside, logs / ".." / "precious", Path("/")):
        result = run(action, clock, directory=str(escape))
        assert not result.success
        assert f"{escape} is not in actions.cleanup_directories ({logs})" in result.result
    assert (outside / "keep.log").exists()
    assert not run(CleanUpFiles([]), clock).success


def test_a_configured_directory_that_is_a_link_is_cleaned_where_it_points(
    tree: tuple[Path, Path, ManualClock], tmp_path: Path
) -> None:
    logs, _, clock = tree
    (tmp_path / "via").symlink_to(logs, target_is_directory=True)
    action = CleanUpFiles([CleanupDirectory(path=tmp_path / "via", max_age_days=7)])

    result = run(action, clock)

    assert result.output["files"] == 3  # old.log, deep/older.log, old.db; not the links
    assert (tmp_path / "precious" / "keep.log").exists()


def test_the_config_refuses_the_root_and_a_pattern_with_a_slash(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="filesystem root"):
        SupervisorConfig.model_validate(
            {"actions": {"cleanup_directories": [{"path": "/", "max_age_days": 1}]}}
        )
    with pytest.raises(ValidationError, match="pattern"):
        SupervisorConfig.model_validate(
            {
                "actions": {
                    "cleanup_directories": [
                        {"path": str(tmp_path), "max_age_days": 1, "pattern": "../*"}
                    ]
                }
            }
        )
    with pytest.raises(ValidationError, match="extra"):
        CleanupParams.model_validate({"directory": "/x", "rm": True})
