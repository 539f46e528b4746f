"""bench/engine.py's concurrency-1 level and commit ceiling, taken in turns, on a few runs."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench_runs import BENCH


@pytest.fixture
def bench_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bench/ importable as its scripts import each other; its modules dropped afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


async def test_the_level_and_the_ceiling_are_measured_in_turns(
    bench_path: None, tmp_path: Path
) -> None:
    import engine

    ceiling = engine.CommitCeiling(tmp_path, "FULL")
    level = await engine.measure_level(tmp_path, "FULL", 1, 20, ceiling=ceiling)
    rate = ceiling.close()
    assert level["errors"] == 0
    assert level["steps_recorded"] == 20 * engine.STEPS
    assert level["steps_per_s"] > 0 and rate > 0
    # every slice of the ceiling was committed: 2,000 rows in its own file
    with sqlite3.connect(tmp_path / "ceiling-FULL.db") as plain:
        assert plain.execute("SELECT COUNT(*) FROM rows").fetchone() == (engine.CEILING_COMMITS,)
