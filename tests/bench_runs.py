"""Benchmarks and fault harnesses run from tests: the script as a child, its JSON read back.

Past the timeout a script gets SIGTERM, on which each of them stops the daemon
and kills what the daemon left, so a hung run leaves no broker behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_script(script: str, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """``bench/<script> args…``, whatever it exits with."""
    with subprocess.Popen(
        [sys.executable, str(BENCH / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail(f"{script} still ran after {timeout_s:g} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_json(script: str, *args: str, timeout_s: float = 180) -> dict[str, Any]:
    """The script's one JSON object (``--json`` is added); its log is shown if there is none."""
    done = run_script(script, *args, "--json", timeout_s=timeout_s)
    assert done.stdout.strip(), f"{script} printed nothing:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in result, f"{result['error']}\n{done.stderr[-4000:]}"
    return result
