"""Soak, short mode: bench/soak.py run for real, and the pieces its verdict rests on.

The daemon takes three rounds of incidents (broker killed, bridge process killed,
bridge heartbeat stopped), each recovered; its RSS, file descriptors, threads and
asyncio tasks must not grow. The task count comes from the daemon's own
``graylogic_supervisor_asyncio_tasks`` gauge, tested here on a real loop; the
growth criterion is tested on a leak it must catch.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from graylogic_supervisor.metrics import Metrics
from tests.bench_runs import run_json
from tests.faults.test_chaos import bench_path  # noqa: F401 (a fixture)


def tasks_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("graylogic_supervisor_asyncio_tasks")


async def test_the_task_gauge_counts_the_loops_unfinished_tasks() -> None:
    metrics = Metrics("0.1.0")
    before = tasks_gauge(metrics)
    release = asyncio.Event()
    waiting = [asyncio.create_task(release.wait(), name=f"w{i}") for i in range(5)]
    await asyncio.sleep(0)
    assert tasks_gauge(metrics) == before + 5
    release.set()
    await asyncio.gather(*waiting)
    assert tasks_gauge(metrics) == before
    assert b"graylogic_supervisor_asyncio_tasks " in metrics.exposition()


def test_the_task_gauge_is_nan_outside_a_running_loop() -> None:
    value = tasks_gauge(Metrics("0.1.0"))
    assert value is not None and math.isnan(value)


@pytest.mark.usefixtures("bench_path")
def test_the_growth_criterion_catches_a_slow_leak_and_passes_noise() -> None:
    import soak
    from faults import Sample

    def run(rss: list[float]) -> dict[str, Any]:
        samples = [Sample(60.0 * i, mb, 10, 5, 20) for i, mb in enumerate(rss)]
        return dict(soak.grows(samples, "rss_mb"))

    leak = run([60 + 0.3 * i for i in range(11)])  # 0.3 MiB a minute: 3 MiB in 10
    assert not leak["ok"]
    assert leak["fitted_rise"] == pytest.approx(3.0)
    noise = run([60.0, 61.5, 60.2, 61.4, 60.1, 61.0, 60.3, 61.2, 60.4, 60.9, 60.5])
    assert noise["ok"]
    jump = run([60.0] * 10 + [62.5])  # a last step past the tolerance
    assert not jump["ok"]


@pytest.mark.slow
def test_a_short_soak_with_incidents_grows_nothing() -> None:
    soak = run_json("soak.py", "--short")
    failed = {
        name: soak["figures"].get(name.removesuffix("_not_growing"))
        for name, ok in soak["checks"].items()
        if not ok
    }
    assert not failed, failed
    assert soak["ok"] is True
    assert len(soak["samples"]) == 4  # the baseline after the warm-up, then one per round
    assert soak["incidents"] == {"broker_killed": 4, "service_killed": 4, "heartbeat_stopped": 4}
    assert soak["executions"].get("resolved", 0) >= 12
    assert soak["tracebacks"] == []
    assert all(s["tasks"] > 0 for s in soak["samples"])
