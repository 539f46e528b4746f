"""The audit archive: old entries leave as compressed segments, and the chain still
verifies across archive and live rows; any segment changed, missing or unchained shows."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_archive import read_segment, segments, write_segment
from graylogic_supervisor.store.database import Database
from tests.daemon_process import REPO

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


async def filled(db: Database, entries: int = 20) -> AuditLog:
    audit = AuditLog(db)
    for n in range(entries):
        await audit.append("alice", "maintenance.start", "mqtt", {"n": n}, now=NOW + timedelta(n))
    return audit


async def live_seqs(db: Database) -> list[int]:
    return [int(row[0]) for row in await db.fetchall("SELECT seq FROM audit_log ORDER BY seq")]


async def archive(audit: AuditLog, days: int, limit: int = 10_000) -> int:
    assert audit.archive_dir is not None
    done = await audit.archives.archive(
        audit.archive_dir, NOW + timedelta(days), NOW + timedelta(30), limit=limit
    )
    return done.entries


async def test_old_entries_leave_as_a_segment_and_the_chain_still_verifies(
    tmp_path: Path,
) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        assert await archive(audit, 8) == 8
        assert await live_seqs(db) == list(range(9, 21))
        [segment] = segments(tmp_path / "audit-archive")
        assert segment.path.name == "segment-000000000001-000000000008.jsonl.gz"
        read = read_segment(segment.path)
        assert [row["seq"] for row in read.rows] == list(range(1, 9))
        first_live = await db.fetchone("SELECT prev_hash FROM audit_log WHERE seq = 9")
        assert first_live is not None and read.header["last_hash"] == first_live[0]  # the anchor
        check = await audit.verify()
        assert (check.ok, check.entries, check.problem) == (True, 20, "ok")
        # a second run goes on from the anchor; the newest entry always stays
        assert await archive(audit, 100) == 11
        assert await live_seqs(db) == [20]
        assert len(segments(tmp_path / "audit-archive")) == 2
        assert (await audit.verify()).ok
        # and appending still chains from the live head
        await audit.append("bob", "safe_mode.enter", "site", {}, now=NOW + timedelta(40))
        check = await audit.verify()
        assert (check.ok, check.entries) == (True, 21)
        assert (await audit.follow()).bad_seq is None  # the daemon's watch: from the anchor


async def test_entries_not_archived_still_cannot_be_deleted(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db, 5)
        await archive(audit, 2)
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("DELETE FROM audit_log WHERE seq = 4")
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("DELETE FROM audit_archive")


def rewrite(path: Path, change: str) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    row = json.loads(lines[2])
    row["detail"] = change
    lines[2] = json.dumps(row, sort_keys=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


async def test_a_tampered_segment_is_reported(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        await archive(audit, 8)
        [segment] = segments(tmp_path / "audit-archive")
        rewrite(segment.path, '{"n": 99}')
        check = await audit.verify()
        assert not check.ok
        assert check.first_bad_seq == 2
        assert check.problem == f"{segment.path.name}: its content was changed"


async def test_a_missing_segment_is_reported(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        await archive(audit, 5)
        await archive(audit, 10)
        first, _ = segments(tmp_path / "audit-archive")
        first.path.unlink()
        check = await audit.verify()
        assert (check.ok, check.first_bad_seq) == (False, 1)
        assert check.problem == "entries 1..5 are missing: no archive segment holds them"


async def test_the_newest_segment_missing_is_reported(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        await archive(audit, 5)
        await archive(audit, 10)
        _, last = segments(tmp_path / "audit-archive")
        last.path.unlink()
        check = await audit.verify()
        assert (check.ok, check.first_bad_seq) == (False, 6)
        assert check.problem == f"archive segment {last.path.name} (entries 6..10) is missing"


async def test_a_live_row_not_chaining_from_the_anchor_is_reported(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        await archive(audit, 8)
        # someone with the file drops the trigger and rewrites the first live entry's link
        await db.execute("DROP TRIGGER audit_log_no_update")
        await db.execute("UPDATE audit_log SET prev_hash = ? WHERE seq = 9", ("f" * 64,))
        check = await audit.verify()
        assert (check.ok, check.first_bad_seq) == (False, 9)
        assert check.problem == "does not follow the entry before"


async def test_a_crash_before_the_record_leaves_entries_in_place(tmp_path: Path) -> None:
    """The segment is written before anything is deleted: a crash between the two leaves
    a file the next run writes again, and every entry still in the table."""
    async with Database(tmp_path / "s.db") as db:
        audit = await filled(db)
        rows = [dict(r) for r in await db.fetchall("SELECT * FROM audit_log WHERE seq <= 4")]
        write_segment(tmp_path / "audit-archive", rows, "0" * 64)  # then the crash
        assert await live_seqs(db) == list(range(1, 21))
        assert (await audit.verify()).ok
        assert await archive(audit, 8) == 8
        assert [s.path.name for s in segments(tmp_path / "audit-archive")] == [
            "segment-000000000001-000000000008.jsonl.gz"  # the crash's file went
        ]
        assert (await audit.verify()).ok


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_audit_verify_from_the_command_line_covers_the_archive(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "supervisor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(state),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
            }
        )
    )
    async with Database(state / "supervisor.db") as db:
        audit = await filled(db)
        await archive(audit, 8)
    done = cli(config, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20" in done.stdout
    [segment] = segments(state / "audit-archive")
    rewrite(segment.path, '{"n": 99}')
    done = cli(config, "audit", "verify")
    assert done.returncode == 1
    assert f"{segment.path.name}: its content was changed" in done.stdout + done.stderr
