"""`simulate --store FILE` keeps the simulation's store, for the CLI and exports to read."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "scenarios" / "mqtt-mixed-causes.yaml"


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "simulate", str(SCENARIO), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_store_is_kept_in_the_file_given(tmp_path: Path) -> None:
    store = tmp_path / "sim.db"
    done = simulate("--incidents", "12", "--rounds", "1", "--store", str(store))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(store) as db:
        [(executions,)] = db.execute("SELECT COUNT(*) FROM executions").fetchall()
        [(failures,)] = db.execute("SELECT COUNT(DISTINCT failure_id) FROM executions").fetchall()
    assert failures == 12  # every incident's runs are there
    assert executions >= 12


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    store = tmp_path / "kept.db"
    store.write_bytes(b"somebody's data")
    refused = simulate("--incidents", "2", "--rounds", "1", "--store", str(store))
    assert refused.returncode == 1
    assert f"{store} exists" in refused.stderr
    assert store.read_bytes() == b"somebody's data"
