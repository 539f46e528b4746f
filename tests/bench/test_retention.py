"""bench/retention.py on a small store: the harness runs end to end and its figures add up.

Nothing here is a timing: the figures are checked for being there and consistent
(rows removed match the rows gone, the restore verified, the archive verifies)."""

from __future__ import annotations

import json

import pytest

from tests.bench_runs import run_script

pytestmark = pytest.mark.slow


def test_backup_restore_and_retention_figures_add_up() -> None:
    done = run_script(
        "retention.py", "--steps", "2000", "--keep-recent", "50", "--json", timeout_s=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["executions"] == 200
    assert result["backup"]["bytes"] > 0
    assert result["restore"] == {
        "seconds": result["restore"]["seconds"],
        "integrity_and_chain_ok": True,
        "steps_equal": True,
    }
    retention = result["retention"]
    assert (
        retention["steps_before"] - retention["steps_after"]
        == (retention["removed"]["execution_steps"])
    )
    assert retention["removed"]["executions"] * 10 == retention["removed"]["execution_steps"]
    assert retention["audit_archived"] > 0 and retention["audit_verify_ok"]
    assert retention["writer"]["writes"] >= 1
