"""The real daemon counts pending recommendations by priority in /metrics (its state
loop reads them from the store it was started on)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.store.database import Database
from tests.conftest import free_port
from tests.daemon_process import Daemon, start, write_config
from tests.learning.simulated import run, simulation
from tests.test_daemon import logged_in_client, started_healthy

pytestmark = pytest.mark.slow


def test_metrics_count_pending_recommendations_by_priority(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, free_port())
    state = yaml.safe_load(config.read_text())["state_dir"]

    async def history() -> dict[str, int]:
        async with Database(Path(state) / "supervisor.db") as db:
            # recent, so that nothing has expired by the time the daemon looks
            begin = datetime.now(UTC) - timedelta(days=2)
            sim = await simulation(db, "mqtt-mixed-causes", start=begin)
            await run(sim, 150)
            await sim.learning.analyze("test")
            return await sim.learning.pending_by_priority()

    counts = asyncio.run(history())
    assert counts["high"] >= 1
    daemon = start(daemons, config)
    started_healthy(daemon)
    base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['admin']['port']}"
    web = logged_in_client(daemon, base)
    lines = [
        f'graylogic_supervisor_recommendations_pending{{priority="{priority}"}} {count}.0'
        for priority, count in counts.items()
    ]
    daemon.wait_for(lambda: all(line in web.get("/metrics").text for line in lines))
    web.close()
