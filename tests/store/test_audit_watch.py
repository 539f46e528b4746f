"""The daemon's watch over the audit chain: incremental, in its own thread, published."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.store import audit as audit_module
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_head import ChainHead, HeadFile
from graylogic_supervisor.store.audit_watch import PUBLISH_EVERY_S, ChainWatch
from graylogic_supervisor.store.database import Database
from tests.clocks import ManualClock
from tests.store.test_audit import _recompute_from

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class CountingExecutor(ThreadPoolExecutor):
    """A real one-thread pool that counts the chain walks it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="audit-test")
        self.walks = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if fn is audit_module.walk:
            self.walks += len(args[0])
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def worker() -> Any:
    executor = CountingExecutor()
    yield executor
    executor.shutdown()


async def _append(audit: AuditLog, count: int, actor: str = "alice") -> None:
    for n in range(count):
        await audit.append(actor, "x", "site", {"n": n}, now=NOW)


def _raw(path: Path, *sql: str) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;"
        + ";".join(sql)
    )
    raw.close()


async def test_a_look_hashes_only_the_entries_added_since_in_the_audit_thread(
    tmp_path: Path, worker: CountingExecutor
) -> None:
    async with Database(tmp_path / "s.db") as db:
        audit = AuditLog(db, worker)
        await _append(audit, 50)
        watch = ChainWatch(audit, ManualClock())
        first = await watch.check()
        assert first.clean and first.entries == 50 and worker.walks == 50  # in full, once
        await _append(audit, 3)
        second = await watch.check()
        assert second.clean and second.entries == 53
        assert worker.walks == 53  # only the three new ones, in the audit thread
        assert "3 new entries verified now" in second.notes[0]
        assert watch.verified == await audit.last()


async def test_a_tail_cut_after_a_look_is_caught_even_with_a_forged_head_file(
    tmp_path: Path, worker: CountingExecutor
) -> None:
    path = tmp_path / "s.db"
    alerts: list[tuple[str, str]] = []
    async with Database(path) as db:
        audit = AuditLog(db, worker)
        await _append(audit, 6)
        watch = ChainWatch(audit, ManualClock(), alert=lambda s, m, _c: alerts.append((s, m)))
        assert (await watch.check()).ok
        _raw(path, "DELETE FROM audit_log WHERE seq > 4")
        row = await db.fetchone("SELECT hash FROM audit_log WHERE seq = 4")
        (tmp_path / "s.db.audit-head").write_text(f'{{"seq": 4, "hash": "{row["hash"]}"}}')

        check = await watch.check()
        assert (check.ok, check.first_bad_seq) == (False, 5)
        assert check.problem == (
            "entries 5..6 were deleted: the supervisor verified 6 entries, the store has 4"
        )
        assert alerts and alerts[0][0] == "critical" and "entries 5..6" in alerts[0][1]
        assert watch.verified is None  # nothing more is published
        # an append-only log does not heal: new entries do not make it verify again
        await _append(audit, 3)
        assert await watch.check() == check
        assert len(alerts) == 1


async def test_a_chain_recomputed_after_a_look_is_caught(
    tmp_path: Path, worker: CountingExecutor
) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        audit = AuditLog(db, worker)
        await _append(audit, 5)
        watch = ChainWatch(audit, ManualClock())
        assert (await watch.check()).ok
        _recompute_from(path, 2, '{"n": "rewritten"}')
        (tmp_path / "s.db.audit-head").unlink()  # and the head file taken away
        check = await watch.check()
        assert (check.ok, check.first_bad_seq) == (False, 5)
        assert "changed since the supervisor verified it" in check.problem


async def test_an_entry_changed_in_place_shows_at_the_next_full_pass(
    tmp_path: Path, worker: CountingExecutor
) -> None:
    """Behind the last verified entry a look does not hash again; the full pass does."""
    path = tmp_path / "s.db"
    clock = ManualClock()
    async with Database(path) as db:
        audit = AuditLog(db, worker)
        await _append(audit, 5)
        watch = ChainWatch(audit, clock, full_every_s=3600)
        assert (await watch.check()).ok
        _raw(path, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        assert (await watch.check()).ok
        clock.advance(3600)
        check = await watch.check()
        assert (check.ok, check.first_bad_seq, check.problem) == (
            False,
            2,
            "its content was changed",
        )


async def test_the_watch_publishes_the_verified_head_and_restores_a_missing_head_file(
    tmp_path: Path, worker: CountingExecutor
) -> None:
    path = tmp_path / "s.db"
    published: list[ChainHead] = []
    times: list[float] = []
    changed = asyncio.Event()
    clock = ManualClock()

    def publish(head: ChainHead) -> None:
        published.append(head)
        times.append(clock.monotonic())
        changed.set()

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(60):
            while not condition():
                changed.clear()
                await changed.wait()

    async with Database(path) as db:
        audit = AuditLog(db, worker)
        watch = ChainWatch(audit, clock)
        await watch.create_if_empty()
        head_file = HeadFile(tmp_path / "s.db.audit-head")
        assert head_file.read() == ChainHead(0, "0" * 64)
        task = asyncio.create_task(watch.run(publish))
        try:
            await until(lambda: bool(published))
            await _append(audit, 20)  # a burst: published at most once a second
            await until(lambda: published[-1].seq == 20)
            assert published[-1] == await audit.last() == head_file.read()
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= PUBLISH_EVERY_S  # however fast the entries came

            head_file.path.unlink()  # gone while the daemon runs
            await _append(audit, 1)
            await until(lambda: published[-1].seq == 22)
            created = (await audit.entries(limit=1))[0]
            assert (created["action"], created["actor"]) == ("audit.head_created", "supervisor")
            assert head_file.read() == published[-1] == await audit.last()
            assert (await audit.verify()).clean
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
