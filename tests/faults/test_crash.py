"""Crash consistency, short mode: bench/crash.py run for real, its result asserted.

The real daemon is killed with SIGKILL at seeded points of 20 playbook executions
(inside steps, around a step's commit, between steps, during undo steps, start-up and
resumption) and started again each time. No step it reported finished on MQTT, and no
step row that had ended, may be lost; each stopped run is interrupted or resumed at an
idempotent step; the store's integrity and the audit chain hold. The harness must also
notice a finished step that goes missing: the last test removes one from the kept store
and checks again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench_runs import run_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kept() -> Iterator[tuple[dict[str, Any], Path]]:
    """One short run, its directory kept (store, log, what it saw on MQTT) for the tests."""
    result = run_json("crash.py", "--short", "--seed", "3", "--keep")
    workdir = Path(result["workdir"])
    try:
        yield result, workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_every_crash_check_holds(kept: tuple[dict[str, Any], Path]) -> None:
    result, _ = kept
    failed = {
        name: result["violations"].get(name) for name, ok in result["checks"].items() if not ok
    }
    assert not failed, json.dumps(failed, indent=1)
    assert result["ok"] is True
    assert result["exit_code_after_sigterm"] == 0


def test_kills_land_inside_steps_and_stopped_runs_are_resumed_or_interrupted(
    kept: tuple[dict[str, Any], Path],
) -> None:
    result, _ = kept
    assert result["executions"] >= 20
    assert result["kills"] >= 10
    assert result["kills_by_phase"].get("step", 0) >= 1
    assert result["resumed_executions"] >= 1
    assert result["interrupted_by_kills"] >= 1
    assert result["start_ups_checked"] >= result["kills"] - result["kills_by_phase"].get(
        "start-up", 0
    )
    # the checks had something to check
    assert result["steps_reported_finished"] > result["executions"]
    assert result["finished_rows_compared"] > result["step_rows"]


def test_a_finished_step_missing_from_the_store_is_reported(
    kept: tuple[dict[str, Any], Path],
) -> None:
    _, workdir = kept
    assert run_json("crash.py", "--recheck", str(workdir))["ok"] is True  # as the run left it

    seen = {
        tuple(step)
        for step in json.loads((workdir / "crash-observed.json").read_text())["finished_seen"]
    }
    with contextlib.closing(sqlite3.connect(workdir / "state" / "supervisor.db")) as store:
        rows = store.execute(
            "SELECT id, execution_id, step_id, outcome, result FROM execution_steps"
            " WHERE outcome = 'success' ORDER BY id DESC"
        ).fetchall()
        row_id, execution_id, step_id = next(r[:3] for r in rows if tuple(r[1:]) in seen)
        with store:
            store.execute("DELETE FROM execution_steps WHERE id = ?", (row_id,))

    recheck = run_json("crash.py", "--recheck", str(workdir))
    assert recheck["ok"] is False
    assert recheck["checks"]["no_finished_step_lost"] is False
    assert recheck["checks"]["mqtt_steps_recorded"] is False
    gone = f"step row {row_id} ({execution_id} {step_id} success) is gone"
    assert gone in recheck["violations"]["no_finished_step_lost"]
    assert any(
        line.startswith(f"{execution_id} {step_id} success")
        for line in recheck["violations"]["mqtt_steps_recorded"]
    )
