"""The audit log: append-only, and any tampering shows."""

from __future__ import annotations

import asyncio
import fcntl
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import GENESIS, AuditLog, ChainCheck, entry_hash
from graylogic_supervisor.store.audit_head import ChainHead, HeadFile
from graylogic_supervisor.store.database import Database

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_entries_chain_and_verify(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        assert (await audit.verify()).ok  # an empty log verifies
        for n in range(5):
            await audit.append("alice", "maintenance.start", "mqtt", {"n": n}, now=NOW)
        check = await audit.verify()
        assert (check.ok, check.entries) == (True, 5)
        newest = (await audit.entries(limit=1))[0]
        assert (newest["seq"], newest["actor"], newest["detail"]) == (5, "alice", '{"n": 4}')


async def test_update_and_delete_are_refused(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        await audit.append("supervisor", "safe_mode.enter", "site", {}, now=NOW)
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("UPDATE audit_log SET actor = 'mallory'")
        with pytest.raises(StoreError, match="append-only"):
            await db.execute("DELETE FROM audit_log")


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 2", "its content was changed"),
        ("DELETE FROM audit_log WHERE seq = 2", "entry 2 is missing"),
    ],
)
async def test_tampering_behind_the_triggers_back_is_detected(
    tmp_path: Path, tamper: str, problem: str
) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        audit = AuditLog(db)
        for n in range(3):
            await audit.append("alice", "x", "site", {"n": n}, now=NOW)
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;" + tamper
    )
    raw.close()
    async with Database(path) as db:
        check = await AuditLog(db).verify()
    assert not check.ok
    assert check.first_bad_seq in (2, 3)
    assert check.problem == problem


async def test_two_writers_never_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as first, Database(path) as second:

        async def write(db: Database, actor: str) -> None:
            for n in range(20):
                await AuditLog(db).append(actor, "x", "site", {"n": n}, now=NOW)

        await asyncio.gather(write(first, "daemon"), write(second, "cli"))
        check = await AuditLog(first).verify()
    assert (check.ok, check.entries) == (True, 40)


async def test_the_log_is_queried_by_time_range_actor_and_action(tmp_path: Path) -> None:
    from datetime import timedelta

    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db)
        for hours, actor, action in [
            (0, "alice", "maintenance.start"),
            (1, "supervisor", "memory.decision"),
            (2, "bob", "maintenance.end"),
            (3, "supervisor", "safe_mode.enter"),
        ]:
            await audit.append(actor, action, "site", {}, now=NOW + timedelta(hours=hours))

        async def actions(**query: object) -> list[str]:
            return [row["action"] for row in await audit.entries(**query)]  # type: ignore[arg-type]

        assert await actions(actor="supervisor") == ["safe_mode.enter", "memory.decision"]
        assert await actions(action="maintenance.") == ["maintenance.end", "maintenance.start"]
        assert await actions(action="maintenance") == []  # a whole action, or a prefix with '.'
        window = await actions(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=3))
        assert window == ["maintenance.end", "memory.decision"]


# --- the head file: a deleted tail and a recomputed chain -----------------------------


async def _log_of(path: Path, entries: int) -> None:
    async with Database(path) as db:
        audit = AuditLog(db)
        for n in range(entries):
            await audit.append("alice", "x", "site", {"n": n}, now=NOW)


def _behind_the_triggers(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What an attacker with the file does: no triggers, plain SQL."""
    raw = sqlite3.connect(path)
    raw.executescript("DROP TRIGGER IF EXISTS audit_log_no_update;")
    raw.executescript("DROP TRIGGER IF EXISTS audit_log_no_delete;")
    raw.execute(sql, params)
    raw.commit()
    raw.close()


def _recompute_from(path: Path, seq: int, detail: str) -> None:
    """Change entry ``seq`` and recompute every hash after it: the chain verifies alone."""
    raw = sqlite3.connect(path)
    raw.row_factory = sqlite3.Row
    raw.executescript("DROP TRIGGER audit_log_no_update;")
    rows = raw.execute("SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
    prev = raw.execute("SELECT hash FROM audit_log WHERE seq = ?", (seq - 1,)).fetchone()
    prev_hash = prev["hash"] if prev else GENESIS
    for row in rows:
        content = detail if row["seq"] == seq else row["detail"]
        digest = entry_hash(
            prev_hash,
            row["seq"],
            row["at"],
            row["actor"],
            action=row["action"],
            subject=row["subject"],
            detail=content,
        )
        raw.execute(
            "UPDATE audit_log SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (content, prev_hash, "pending-" + digest, row["seq"]),
        )
        raw.execute("UPDATE audit_log SET hash = ? WHERE seq = ?", (digest, row["seq"]))
        prev_hash = digest
    raw.commit()
    raw.close()


async def _verify(path: Path) -> ChainCheck:
    async with Database(path) as db:
        return await AuditLog(db).verify()


@pytest.mark.parametrize(("cut", "problem"), [(1, "entry 6 was"), (3, "entries 4..6 were")])
async def test_a_deleted_tail_is_caught_by_the_head_file(
    tmp_path: Path, cut: int, problem: str
) -> None:
    path = tmp_path / "s.db"
    await _log_of(path, 6)
    assert (await _verify(path)).clean
    _behind_the_triggers(path, "DELETE FROM audit_log WHERE seq > ?", (6 - cut,))

    check = await _verify(path)
    assert not check.ok
    assert check.first_bad_seq == 7 - cut
    assert check.problem.startswith(f"{problem} deleted: the head file records 6 entries")


async def test_a_log_emptied_completely_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _log_of(path, 2)
    _behind_the_triggers(path, "DELETE FROM audit_log")
    check = await _verify(path)
    assert (check.ok, check.first_bad_seq) == (False, 1)


@pytest.mark.parametrize("changed", [1, 3, 5])
async def test_a_recomputed_chain_is_caught_by_the_head_file(tmp_path: Path, changed: int) -> None:
    path = tmp_path / "s.db"
    await _log_of(path, 5)
    _recompute_from(path, changed, '{"n": "rewritten"}')
    async with Database(path) as db:
        # the chain on its own verifies: only the head outside the store shows it
        assert (await AuditLog(db).follow()).bad_seq is None
    check = await _verify(path)
    assert not check.ok
    assert check.first_bad_seq == 5
    assert "the chain was recomputed or replaced" in check.problem


async def test_a_recomputed_chain_made_longer_is_caught(tmp_path: Path) -> None:
    """Rewrite entry 2, recompute, then add entries so the store is ahead of its head."""
    path = tmp_path / "s.db"
    await _log_of(path, 4)
    head_file = tmp_path / "s.db.audit-head"
    saved = head_file.read_text()
    _recompute_from(path, 2, '{"n": "rewritten"}')
    head_file.unlink()  # so that the forger's own appends below do not move it
    async with Database(path) as db:
        forger = AuditLog(db)
        forger.head_keeper = None
        for n in range(3):
            await forger.append("mallory", "x", "site", {"n": n}, now=NOW)
    head_file.write_text(saved)  # the real head, as it was
    check = await _verify(path)
    assert (check.ok, check.first_bad_seq) == (False, 4)


async def test_a_head_behind_by_one_after_a_crash_is_accepted_and_said(tmp_path: Path) -> None:
    """A crash between the commit and the head write leaves the store one entry ahead;
    that entry still has to chain from the head."""
    path = tmp_path / "s.db"
    await _log_of(path, 3)
    async with Database(path) as db:
        crashed = AuditLog(db)
        crashed.head_keeper = None  # committed, then killed before the head moved
        await crashed.append("alice", "x", "site", {"n": "last"}, now=NOW)
    check = await _verify(path)
    assert check.clean and check.entries == 4
    assert check.notes == (
        "1 entries after the head file's (3) chain correctly"
        " (written since, or a crash between a commit and the head)",
    )
    # the next append moves the head over both
    await _log_of(path, 1)
    check = await _verify(path)
    assert check.clean and check.notes == () and check.head is not None
    head = HeadFile(tmp_path / "s.db.audit-head").read()
    assert head == check.head and head.seq == 5


async def test_a_missing_head_file_is_reported_not_silently_recreated(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _log_of(path, 3)
    (tmp_path / "s.db.audit-head").unlink()
    check = await _verify(path)
    assert check.ok and not check.clean
    assert check.warnings[0].startswith("no head file")
    # an ordinary append does not put back a head it cannot vouch for
    await _log_of(path, 1)
    assert not (tmp_path / "s.db.audit-head").exists()
    assert not (await _verify(path)).clean


async def test_an_empty_log_needs_no_head_and_its_first_entry_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert (await _verify(path)).clean
    await _log_of(path, 1)
    assert HeadFile(tmp_path / "s.db.audit-head").read() == (await _verify(path)).head


async def test_an_unreadable_head_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _log_of(path, 2)
    (tmp_path / "s.db.audit-head").write_text("{not json")
    check = await _verify(path)
    assert not check.ok and check.problem.startswith("the head file is unreadable")


async def test_an_expected_head_from_elsewhere_is_held_against_the_store(tmp_path: Path) -> None:
    """The retained MQTT copy catches what a rewritten head file would hide."""
    path = tmp_path / "s.db"
    await _log_of(path, 4)
    published = HeadFile(tmp_path / "s.db.audit-head").read()
    assert published is not None
    _behind_the_triggers(path, "DELETE FROM audit_log WHERE seq = 4")
    (tmp_path / "s.db.audit-head").unlink()
    await _log_of(path, 0)
    async with Database(path) as db:
        check = await AuditLog(db).verify([("the published head", published)])
    assert not check.ok
    assert check.problem.startswith("entry 4 was deleted: the published head records 4")


def test_a_slower_writer_never_puts_back_an_older_head(tmp_path: Path) -> None:
    head_file = HeadFile(tmp_path / "s.db.audit-head")
    assert head_file.advance(ChainHead(1, "a" * 64)) == ChainHead(1, "a" * 64)
    assert head_file.advance(ChainHead(3, "c" * 64)) == ChainHead(3, "c" * 64)
    assert head_file.advance(ChainHead(2, "b" * 64)) == ChainHead(3, "c" * 64)
    assert head_file.read() == ChainHead(3, "c" * 64)
    assert not list(tmp_path.glob("*.tmp"))


_APPENDER = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database

async def main(path, actor):
    async with Database(Path(path)) as db:
        audit = AuditLog(db)
        print("ready", flush=True)
        for line in sys.stdin:  # one entry per line read
            seq = await audit.append(
                actor, "x", "site", {"line": line.strip()}, now=datetime.now(UTC)
            )
            print(seq, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_appending_at_once_leave_a_consistent_head(tmp_path: Path) -> None:
    """Each round one process commits and is then held back (stopped, as a descheduled
    process is) before its head write, while the other commits and writes its head: the
    slower writer's older head must not replace the newer one."""
    path = tmp_path / "s.db"
    await _log_of(path, 1)  # the schema and a head, before the race
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _APPENDER,
            str(path),
            actor,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path.cwd(),
        )
        for actor in ("daemon", "cli")
    ]

    async def tell(child: asyncio.subprocess.Process, line: str) -> None:
        assert child.stdin is not None
        child.stdin.write(line.encode() + b"\n")
        await child.stdin.drain()

    async def answer(child: asyncio.subprocess.Process) -> bytes:
        assert child.stdout is not None
        return await asyncio.wait_for(child.stdout.readline(), 60)

    async def committed(audit: AuditLog, seq: int) -> None:
        for _ in range(6000):
            if (await audit.last()).seq == seq:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"entry {seq} never committed")

    try:
        assert [await answer(child) for child in children] == [b"ready\n", b"ready\n"]
        head_file = HeadFile(tmp_path / "s.db.audit-head")
        async with Database(path) as db:
            audit = AuditLog(db)
            for round_ in range(4):
                slow, fast = children if round_ % 2 == 0 else children[::-1]
                seq = 1 + 2 * round_
                with (tmp_path / "s.db.audit-head.lock").open("a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)  # every head write waits for now
                    await tell(slow, "slow")
                    await committed(audit, seq + 1)
                    slow.send_signal(signal.SIGSTOP)  # committed, its head not yet written
                    await tell(fast, "fast")
                    await committed(audit, seq + 2)
                assert await answer(fast) == f"{seq + 2}\n".encode()
                assert head_file.read() == await audit.last()
                slow.send_signal(signal.SIGCONT)  # and now its older head arrives
                assert await answer(slow) == f"{seq + 1}\n".encode()
                assert head_file.read() == await audit.last(), f"round {round_}"
            check = await audit.verify()
        assert check.clean and check.notes == () and check.entries == 9
    finally:
        for child in children:
            child.send_signal(signal.SIGCONT)
            if child.stdin is not None:
                child.stdin.close()
        assert [await child.wait() for child in children] == [0, 0]
