"""Resource probers against the real machine: real SQLite files, real psutil readings.

Thresholds are set from a reading taken just before the probe, far enough on
either side of it that the outcome is forced, whatever this machine's load.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import (
    CpuComponent,
    DatabaseComponent,
    DiskComponent,
    MemoryComponent,
)
from graylogic_supervisor.health.probes import (
    cpu_prober,
    database_prober,
    disk_prober,
    memory_prober,
)
from graylogic_supervisor.store.database import Database
from tests.clocks import ManualClock


def db_component(max_latency_ms: float = 200, min_free_mb: float = 0) -> DatabaseComponent:
    return DatabaseComponent(
        kind="database",
        error_id="ERR-INFRA-DB-001",
        max_latency_ms=max_latency_ms,
        min_free_mb=min_free_mb,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "state" / "supervisor.db") as db:
        yield db


async def filled_store_file(path: Path, rows: int) -> None:
    """A closed store with a ``filler`` table of ``rows`` rows of about 200 bytes each."""
    async with Database(path) as db:
        await db.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT)")
        await db.executemany(
            "INSERT INTO filler (body) VALUES (?)", [(f"row {i} " * 20,) for i in range(rows)]
        )


def filler_leaf_pages(path: Path) -> tuple[int, list[int]]:
    """Page size and the numbers of the filler table's leaf pages, read from the closed file."""
    with sqlite3.connect(path) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            row[0]
            for row in connection.execute(
                "SELECT pageno FROM dbstat WHERE name = 'filler' AND pagetype = 'leaf'"
                " ORDER BY pageno"
            )
        ]
    connection.close()
    assert len(pages) > 10
    return int(page_size), pages


def overwrite_page(path: Path, page_size: int, page: int, content: bytes) -> None:
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(content)


# --- database ---------------------------------------------------------------------------


async def test_a_healthy_store_answers_quick_check_in_time_with_space_to_spare(
    store: Database,
) -> None:
    healthy, detail = await database_prober(store, SystemClock())("store", db_component())
    assert healthy, detail
    assert re.fullmatch(r"quick_check ok in [\d.]+ ms, \d+ MB free", detail)


async def test_a_slow_quick_check_is_unhealthy_and_names_its_latency_and_the_limit(
    store: Database,
) -> None:
    clock = ManualClock()
    # Moves the clock while the quick_check is on aiosqlite's thread: it "took" 350 ms.
    asyncio.get_running_loop().call_soon(clock.advance, 0.35)
    healthy, detail = await database_prober(store, clock)("store", db_component(200))
    assert not healthy
    assert detail == "quick_check 350 ms > 200 ms"


async def test_a_quick_check_that_does_not_answer_is_given_up_on(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    await filled_store_file(path, 20_000)  # about 5 MB: milliseconds to check
    async with Database(path) as db:
        healthy, detail = await database_prober(db, SystemClock())(
            "store", db_component(max_latency_ms=0.001)
        )
    assert not healthy
    assert detail == "quick_check gave no answer in 0.005 ms"


async def test_a_page_lost_on_disk_is_reported_with_sqlites_complaint(tmp_path: Path) -> None:
    # A lost write: one leaf page holds another's old content, as after a torn flush.
    path = tmp_path / "lost.db"
    await filled_store_file(path, 2000)
    page_size, leaves = filler_leaf_pages(path)
    with path.open("rb") as file:
        file.seek((leaves[-3] - 1) * page_size)
        stale = file.read(page_size)
    overwrite_page(path, page_size, leaves[-10], stale)

    async with Database(path) as db:
        healthy, detail = await database_prober(db, SystemClock())("store", db_component())
    assert not healthy
    assert detail.startswith("quick_check: *** in database main ***; On tree page ")
    assert "out of order" in detail
    assert len(detail) <= len("quick_check: ") + 200


async def test_garbage_over_a_page_is_unhealthy_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    await filled_store_file(path, 2000)
    page_size, leaves = filler_leaf_pages(path)
    overwrite_page(path, page_size, leaves[len(leaves) // 2], os.urandom(page_size))

    async with Database(path) as db:
        healthy, detail = await database_prober(db, SystemClock())("store", db_component())
    assert not healthy
    assert detail == "quick_check failed: database disk image is malformed"


async def test_a_closed_store_is_unhealthy_not_an_exception(tmp_path: Path) -> None:
    db = Database(tmp_path / "closed.db")
    await db.open()
    await db.close()
    healthy, detail = await database_prober(db, SystemClock())("store", db_component())
    assert not healthy
    assert detail == "quick_check failed: the store is closed"


async def test_too_little_free_space_beside_the_store_is_unhealthy(store: Database) -> None:
    exabyte = 1e12
    healthy, detail = await database_prober(store, SystemClock())(
        "store", db_component(min_free_mb=exabyte)
    )
    assert not healthy
    assert re.fullmatch(r"\d+ MB free < 1e\+12 MB", detail), detail


async def test_every_failing_figure_of_the_store_is_named(store: Database) -> None:
    clock = ManualClock()
    asyncio.get_running_loop().call_soon(clock.advance, 0.35)
    healthy, detail = await database_prober(store, clock)(
        "store", db_component(max_latency_ms=200, min_free_mb=1e12)
    )
    assert not healthy
    assert re.fullmatch(r"\d+ MB free < 1e\+12 MB; quick_check 350 ms > 200 ms", detail), detail


async def test_a_prober_given_another_kind_of_component_fails_loudly(store: Database) -> None:
    memory = MemoryComponent(kind="memory", error_id="ERR-SYS-MEM-001")
    with pytest.raises(TypeError, match="DatabaseComponent prober given a memory component"):
        await database_prober(store, SystemClock())("memory", memory)


# --- memory -----------------------------------------------------------------------------


def memory_component(max_percent: float) -> MemoryComponent:
    return MemoryComponent(kind="memory", error_id="ERR-SYS-MEM-001", max_percent=max_percent)


async def test_memory_within_its_limit_is_healthy() -> None:
    healthy, detail = await memory_prober()("memory", memory_component(100))
    assert healthy, detail
    assert re.fullmatch(r"memory [\d.]+% used \(max 100%\), \d+ MB available", detail)


async def test_memory_over_its_limit_is_unhealthy_with_the_figures() -> None:
    limit = psutil.virtual_memory().percent / 2
    healthy, detail = await memory_prober()("memory", memory_component(limit))
    assert not healthy
    assert re.fullmatch(rf"memory [\d.]+% used > {limit:g}%, \d+ MB available", detail), detail


# --- disk -------------------------------------------------------------------------------


def disk_component(max_percent: float, path: Path | None = None) -> DiskComponent:
    return DiskComponent(
        kind="disk", error_id="ERR-SYS-DISK-001", max_percent=max_percent, path=path
    )


def used_percent(path: Path) -> float:
    percent = psutil.disk_usage(str(path)).percent
    if percent == 0:
        pytest.skip(f"{path} is on an empty filesystem: no threshold lies below 0%")
    return percent


async def test_disk_defaults_to_the_given_path_and_is_healthy_within_its_limit(
    tmp_path: Path,
) -> None:
    healthy, detail = await disk_prober(tmp_path)("disk", disk_component(100))
    assert healthy, detail
    assert re.fullmatch(
        rf"disk {re.escape(str(tmp_path))} [\d.]+% used \(max 100%\), \d+ MB free", detail
    )


async def test_disk_over_its_limit_is_unhealthy_on_the_configured_path(tmp_path: Path) -> None:
    limit = used_percent(tmp_path) / 2
    healthy, detail = await disk_prober(tmp_path / "not-the-default")(
        "disk", disk_component(limit, path=tmp_path)
    )
    assert not healthy
    assert re.fullmatch(
        rf"disk {re.escape(str(tmp_path))} [\d.]+% used > {limit:g}%, \d+ MB free", detail
    ), detail


async def test_a_disk_path_that_is_gone_is_unhealthy(tmp_path: Path) -> None:
    healthy, detail = await disk_prober(tmp_path / "gone")("disk", disk_component(100))
    assert not healthy
    assert detail == f"cannot read disk usage of {tmp_path / 'gone'}: No such file or directory"


# --- cpu --------------------------------------------------------------------------------


def cpu_component(max_percent: float = 100, max_load_per_cpu: float = 1e6) -> CpuComponent:
    return CpuComponent(
        kind="cpu",
        error_id="ERR-SYS-CPU-001",
        max_percent=max_percent,
        max_load_per_cpu=max_load_per_cpu,
    )


def burn_cpu(seconds: float) -> None:
    """Busy for a while, so the next CPU reading has something to measure."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def test_the_first_cpu_probe_primes_and_judges_the_load_alone() -> None:
    healthy, detail = await cpu_prober(SystemClock())("cpu", cpu_component(max_percent=0.001))
    assert healthy, detail
    assert re.fullmatch(
        r"CPU use measured from the next check, load [\d.]+ per CPU \(max 1e\+06\)", detail
    )


async def test_cpu_use_since_the_last_probe_is_judged_against_its_limit() -> None:
    probe = cpu_prober(SystemClock(), min_sample_s=0.05)
    await probe("cpu", cpu_component())
    burn_cpu(0.1)
    healthy, detail = await probe("cpu", cpu_component(max_percent=100))
    assert healthy, detail
    assert re.fullmatch(r"CPU [\d.]+% \(max 100%\), load [\d.]+ per CPU \(max 1e\+06\)", detail)
    burn_cpu(0.1)
    healthy, detail = await probe("cpu", cpu_component(max_percent=0.001))
    assert not healthy
    assert re.fullmatch(r"CPU [\d.]+% > 0.001%, load [\d.]+ per CPU \(max 1e\+06\)", detail)


async def test_a_probe_sooner_than_the_minimum_sample_reuses_the_last_reading() -> None:
    clock = ManualClock()
    probe = cpu_prober(clock, min_sample_s=1.0)
    await probe("cpu", cpu_component())
    burn_cpu(0.05)
    clock.advance(1.0)
    _, sampled = await probe("cpu", cpu_component())
    burn_cpu(0.05)
    clock.advance(0.5)
    _, reused = await probe("cpu", cpu_component())
    assert sampled.split(",")[0] == reused.split(",")[0]
    assert sampled.startswith("CPU ")


async def test_load_per_cpu_over_its_limit_is_unhealthy() -> None:
    load = os.getloadavg()[0] / (psutil.cpu_count() or 1)
    if load == 0:
        pytest.skip("load average is 0: no threshold lies below it")
    limit = load / 2
    healthy, detail = await cpu_prober(SystemClock())("cpu", cpu_component(max_load_per_cpu=limit))
    assert not healthy
    assert re.fullmatch(
        rf"load [\d.]+ per CPU > {limit:g}, CPU use measured from the next check", detail
    ), detail
