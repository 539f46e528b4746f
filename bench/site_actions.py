"""What the site actions cost: finding the plugins, and a disk clean-up's sweep.

``action_specs()`` runs on every CLI command that validates playbooks and once at
the daemon's start: it scans every installed distribution's entry points. The
sweep is ``clean_up_files`` on a tree of ``--files`` files (a third of them old
enough to go, a third old but not matching the pattern, a third young) in 20
directories, with a symbolic link to a directory outside it: first as a dry run,
then for real.

**Method.** ``action_specs()`` is timed ``--repeat`` times with
``time.perf_counter()`` (p50 and max, nearest rank) in this environment (the
project's own venv: its plugins, if any, are found too). Each sweep is timed once
on a fresh tree in a temporary directory on the same filesystem as ``$TMPDIR``.

    .venv/bin/python bench/site_actions.py [--files 30000] [--repeat 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graylogic_supervisor.engine.builtins.cleanup import DAY_S, sweep
from graylogic_supervisor.engine.plugins import action_specs, discover_plugins


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser.parse_args(argv)


def specs_timing(repeat: int) -> dict[str, Any]:
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        action_specs()
        took.append((time.perf_counter() - began) * 1000)
    took.sort()
    return {
        "actions": len(action_specs()),
        "plugins": len(discover_plugins().types),
        "p50_ms": round(took[len(took) // 2], 2),
        "max_ms": round(took[-1], 2),
    }


def tree(root: Path, files: int, now: float) -> int:
    """``files`` files of 1 KiB in 20 folders; returns the bytes that should go."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "keep.log").write_bytes(b"k" * 1024)
    logs = root / "logs"
    expected = 0
    for index in range(files):
        folder = logs / f"d{index % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = index % 3
        path = folder / (f"f{index}.log" if kind != 1 else f"f{index}.db")
        path.write_bytes(b"x" * 1024)
        age = 10 * DAY_S if kind != 2 else 0  # 0: old log, 1: old db, 2: young log
        os.utime(path, (now - age, now - age))
        if kind == 0:
            expected += 1024
    (logs / "escape").symlink_to(outside, target_is_directory=True)
    return expected


def sweep_timing(files: int) -> dict[str, Any]:
    now = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        expected = tree(root, files, now)
        results: dict[str, Any] = {"files": files}
        for label, dry_run in (("dry_run", True), ("real", False)):
            began = time.perf_counter()
            swept = sweep(root / "logs", "*.log", now - 7 * DAY_S, dry_run=dry_run)
            seconds = time.perf_counter() - began
            assert swept.bytes == expected and swept.errors == 0, swept
            results[label] = {
                "removed": swept.files,
                "bytes": swept.bytes,
                "seconds": round(seconds, 3),
                "files_per_s": round(files / seconds),
            }
        assert (root / "outside" / "keep.log").exists()
    return results


def table(results: dict[str, Any]) -> str:
    specs, sweeps = results["action_specs"], results["sweep"]
    lines = [
        f"action_specs(): {specs['actions']} actions ({specs['plugins']} plugins),"
        f" p50 {specs['p50_ms']} ms, max {specs['max_ms']} ms",
        f"clean_up_files over {sweeps['files']} files:",
    ]
    for label in ("dry_run", "real"):
        run = sweeps[label]
        lines.append(
            f"  {label:8} {run['removed']} files, {run['bytes']} bytes in {run['seconds']} s"
            f" ({run['files_per_s']} files/s walked)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = {"action_specs": specs_timing(args.repeat), "sweep": sweep_timing(args.files)}
    print(json.dumps(results) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
