"""``backup`` and ``restore`` as a person runs them: the real CLI in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.statelock import StateLock
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from tests.daemon_process import REPO
from tests.store.test_backup import (
    corrupt_the_middle,
    digest,
    execution_ids,
    one_execution,
    seeded_store,
)
from tests.test_operator_cli import cli


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {"mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"}},
            }
        )
    )
    return path


def run(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=30,
        check=False,
    )


def with_entries(config: Path) -> Path:
    """A store with audit entries, written through the CLI; returns its path."""
    for reason in ("replacing the broker's disk", "firmware"):
        started = cli(config, "maintenance", "start", "mqtt", "--for", "1h", "--reason", reason)
        assert started.returncode == 0, started.stderr
    return config.parent / "state" / "supervisor.db"


def test_backup_writes_a_timestamped_copy_under_the_state_directory(config: Path) -> None:
    with_entries(config)
    done = cli(config, "backup")
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(
        r"(\S+/state/backups/store-\d{8}T\d{6}Z\.db)  (\d+) bytes  (\d+\.\d\d)s, audit head 2\n",
        done.stdout,
    )
    assert match is not None, done.stdout
    copy = Path(match.group(1))
    assert copy.stat().st_size == int(match.group(2))
    assert json.loads(copy.with_name(copy.name + ".audit-head").read_text())["seq"] == 2


def test_restore_asks_first_then_swaps_and_the_audit_log_says_who(
    config: Path, tmp_path: Path
) -> None:
    live = with_entries(config)
    assert cli(config, "backup", "--to", str(tmp_path / "b.db")).returncode == 0
    later = cli(config, "maintenance", "start", "site", "--for", "1h", "--reason", "later")
    assert later.returncode == 0, later.stderr
    before = digest(live)

    declined = run(config, "restore", str(tmp_path / "b.db"), stdin="no\n")
    assert declined.returncode == 1
    assert "not confirmed, nothing changed" in declined.stderr
    assert digest(live) == before

    done = run(config, "restore", str(tmp_path / "b.db"), "--by", "ida", stdin="yes\n")
    assert done.returncode == 0, done.stderr
    assert "integrity ok, audit chain ok (2 entries)" in done.stdout
    assert "the old store is kept as" in done.stdout
    [kept] = live.parent.glob("supervisor.db.before-restore-*Z")
    assert digest(kept) == before

    verified = cli(config, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "3 entries, chain intact" in verified.stdout
    listed = [
        json.loads(line) for line in cli(config, "audit", "list", "--json").stdout.splitlines()
    ]
    assert (listed[-1]["actor"], listed[-1]["action"]) == ("ida", "store.restore")
    assert "site" not in {entry["subject"] for entry in listed}  # written after the backup


def test_a_corrupted_backup_is_refused_with_exit_1(config: Path, tmp_path: Path) -> None:
    live = with_entries(config)
    assert cli(config, "backup", "--to", str(tmp_path)).returncode == 0
    [copy] = tmp_path.glob("store-*.db")
    corrupt_the_middle(copy)
    before = digest(live)
    refused = cli(config, "restore", str(copy), "--yes")
    assert refused.returncode == 1
    assert f"restore: restore of {copy} refused:" in refused.stderr
    assert digest(live) == before


def test_restore_is_refused_while_the_daemon_runs(config: Path, tmp_path: Path) -> None:
    live = with_entries(config)
    assert cli(config, "backup", "--to", str(tmp_path / "b.db")).returncode == 0
    with StateLock(live.parent, datetime.now(UTC), pid=4242):
        refused = cli(config, "restore", str(tmp_path / "b.db"), "--yes")
    assert refused.returncode == 1
    assert "in use by pid 4242" in refused.stderr
    assert "stop the daemon first" in refused.stderr


def test_backup_without_a_store_says_so(config: Path) -> None:
    done = cli(config, "backup")
    assert done.returncode == 1
    assert "backup: no database at" in done.stderr


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("backup", ["--to PATH", "online backup API", "--config"]),
        ("restore", ["--yes", "--by", "before-restore", "integrity check", "stop it first"]),
    ],
)
def test_help_describes_every_option(command: str, words: list[str]) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    flat = " ".join(shown.split())
    for word in words:
        assert word in flat


async def test_backup_from_another_process_while_executions_are_written(
    config: Path, tmp_path: Path
) -> None:
    live = config.parent / "state" / "supervisor.db"
    await seeded_store(live, 1000)
    before = execution_ids(live)
    async with Database(live) as db:
        repo, audit = ExecutionRepository(db), AuditLog(db)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "backup",
            "--to",
            str(tmp_path / "b.db"),
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        written, n = set(), 1000
        while child.returncode is None:
            await one_execution(repo, audit, n)
            written.add(f"exec-{n}")
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 0.001)
        out, err = await child.communicate()
    assert child.returncode == 0, err
    assert out.decode().startswith(str(tmp_path / "b.db"))
    assert written  # the writer went on while the other process ran
    assert before <= execution_ids(tmp_path / "b.db") <= before | written

    done = cli(config, "restore", str(tmp_path / "b.db"), "--yes")
    assert done.returncode == 0, done.stderr
    assert execution_ids(live) == execution_ids(tmp_path / "b.db")
    verified = cli(config, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
