"""The event-log export over large stores: time, output size and peak memory.

For each size (100,000 and 1,000,000 step rows; ``--quick``: 10,000 and 100,000), a
store is made in a temporary directory the way ``bench/learning.py`` makes its store
(the real migrations, version 1.0.0 of ``mqtt-basic.yaml``, then the history of the
``mqtt-mixed-causes`` scenario bulk-inserted until the step rows reach the size).
Then ``graylogic-supervisor executions export --format F --out FILE`` runs as a child
process for each format, as an operator runs it, and the bench reads:

- ``wall_s``: ``time.perf_counter()`` around the child, start-up included;
- ``events_per_s``: step rows over ``wall_s``;
- ``out_mb``: the file written;
- ``peak_rss_mb``: the child's ``VmHWM`` (its RSS high-water mark since its ``exec``)
  from ``/proc/PID/status``, read every 20 ms until it exits; ``ru_maxrss`` would not
  do, as a forked child inherits the bench's own high-water mark.

Flat memory means the peak RSS at the large size is about the one at the small size
(the export holds one page of ``EXPORT_PAGE`` rows, whatever the store holds).

    .venv/bin/python bench/export.py [--quick] [--json] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from learning import (
    DATA_SCENARIO,
    PLAYBOOK_FILE,
    SCENARIOS,
    create_store,
    fill_store,
)

from graylogic_supervisor.export import FORMATS
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.sim.actions import scenario_registry
from graylogic_supervisor.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
logger = logging.getLogger("bench.export")


def run_export(config: Path, format_name: str, out: Path) -> dict[str, Any]:
    """One export in a child process: its time, output size and peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(  # our own interpreter and module
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "executions",
            "export",
            "--format",
            format_name,
            "--out",
            str(out),
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    peak_kib = 0
    status_file = Path(f"/proc/{child.pid}/status")
    while child.poll() is None:
        try:
            text = status_file.read_text()
        except (FileNotFoundError, ProcessLookupError):
            break
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak_kib = max(peak_kib, int(line.split()[1]))
        time.sleep(0.02)
    wall_s = time.perf_counter() - started
    assert child.stderr is not None
    said = child.stderr.read().decode()
    child.stderr.close()
    if child.returncode != 0:
        raise RuntimeError(f"export {format_name} failed: {said}")
    events = int(said.rsplit("exported ", 1)[1].split()[0])
    return {
        "events": events,
        "wall_s": round(wall_s, 2),
        "events_per_s": round(events / wall_s),
        "out_mb": round(out.stat().st_size / MIB, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def one_size(step_records: int, seed: int) -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / f"{DATA_SCENARIO}.yaml")
    loaded = load_playbook(SCENARIOS / PLAYBOOK_FILE, scenario_registry(scenario, {}).specs())
    with tempfile.TemporaryDirectory(prefix="bench-export-") as directory:
        root = Path(directory)
        store = root / "store.db"
        asyncio.run(create_store(store, loaded))
        logger.info("generating %d step records", step_records)
        steps, executions = fill_store(store, loaded.playbook, scenario, step_records, seed)
        config = root / "supervisor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(root / "state"),
                    "database": str(store),
                    "catalog": str(REPO / "config" / "catalog.yaml"),
                    "playbooks": {"directory": str(REPO / "playbooks")},
                }
            )
        )
        result: dict[str, Any] = {
            "step_records": steps,
            "executions": executions,
            "store_mb": round(store.stat().st_size / MIB, 1),
        }
        for format_name in FORMATS:
            logger.info("  export %s", format_name)
            measured = run_export(config, format_name, root / f"events.{format_name}")
            if measured["events"] != steps:
                raise RuntimeError(f"{format_name}: {measured['events']} events of {steps}")
            result[format_name] = measured
            (root / f"events.{format_name}").unlink()
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'step rows':>10} {'format':>6} {'wall s':>8} {'events/s':>9} {'out MiB':>8}"
        f" {'peak RSS MiB':>12}"
    ]
    for result in results:
        for format_name in FORMATS:
            row = result[format_name]
            lines.append(
                f"{result['step_records']:>10,} {format_name:>6} {row['wall_s']:>8}"
                f" {row['events_per_s']:>9,} {row['out_mb']:>8} {row['peak_rss_mb']:>12}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 step rows")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)
    results = [one_size(size, args.seed) for size in (QUICK_SIZES if args.quick else SIZES)]
    if args.json:
        print(json.dumps({"export": results}))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
