"""The event-log export: a store filled by real engine runs (the simulator), written
as CSV, JSON lines and XES, read back as an integrator and PM4Py would read them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.export import COLUMNS, write_events
from graylogic_supervisor.learning.trace import END_OF_STATUS
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.export import EventFilter, EventLog
from graylogic_supervisor.store.learning_metrics import MetricsTables
from tests.daemon_process import REPO
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
INCIDENTS = 40


@pytest.fixture
async def filled(db: Database) -> Database:
    """A store holding ``INCIDENTS`` runs of the MQTT playbook, each cause drawn anew."""
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, INCIDENTS)
    return db


def config_for(tmp_path: Path) -> Path:
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "database": str(tmp_path / "s.db"),  # the db fixture's store
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {"mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"}},
            }
        )
    )
    return path


def export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "executions",
            "export",
            *args,
            "--config",
            str(config_for(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_csv_has_one_row_per_recorded_step_with_its_case_and_order(
    filled: Database, tmp_path: Path
) -> None:
    done = export(tmp_path, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert tuple(rows[0]) == COLUMNS
    stored = await filled.fetchall(
        "SELECT s.*, e.playbook_version, e.component, e.status FROM execution_steps AS s"
        " JOIN executions AS e ON e.id = s.execution_id"
    )
    assert len(rows) == len(stored) > INCIDENTS
    assert f"exported {len(rows)} events" in done.stderr
    by_key = {(r["execution_id"], r["seq"]): r for r in stored}
    for row in rows:
        step = by_key[(row["case_id"], int(row["seq"]))]
        assert (row["activity"], row["action"], row["outcome"]) == (
            step["step_id"],
            step["action"],
            step["outcome"],
        )
        assert (row["start"], row["end"]) == (step["started_at"], step["completed_at"])
        assert (row["playbook_version"], row["component"], row["case_status"]) == (
            step["playbook_version"],
            step["component"],
            step["status"],
        )
    cases = [row["case_id"] for row in rows]
    assert len(set(cases)) == INCIDENTS
    # a case's events are together, in the order they ran
    assert [c for i, c in enumerate(cases) if i == 0 or cases[i - 1] != c] == list(
        dict.fromkeys(cases)
    )
    for case in set(cases):
        seqs = [int(r["seq"]) for r in rows if r["case_id"] == case]
        assert seqs == sorted(seqs)


async def test_jsonl_filters_by_playbook_and_time_and_writes_the_file_whole(
    filled: Database, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    done = export(tmp_path, "--format", "jsonl", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["playbook_id"] for e in events} == {PLAYBOOK}
    assert not list(tmp_path.glob(".*.partial"))
    starts = sorted(
        r["started_at"] for r in await filled.fetchall("SELECT started_at FROM executions")
    )
    middle = starts[len(starts) // 2]
    later = export(tmp_path, "--format", "jsonl", "--since", middle)
    kept = {json.loads(line)["case_id"] for line in later.stdout.splitlines()}
    assert len(kept) == sum(1 for s in starts if s >= middle)
    earlier = export(tmp_path, "--format", "jsonl", "--until", middle)
    assert len({json.loads(line)["case_id"] for line in earlier.stdout.splitlines()}) == sum(
        1 for s in starts if s <= middle
    )
    none = export(tmp_path, "--format", "jsonl", "--playbook", "PLAY-NONE")
    assert (none.returncode, none.stdout) == (0, "")


async def test_a_reader_that_stops_early_is_no_error(db: Database, tmp_path: Path) -> None:
    """More than a pipe holds (64 KiB), so the export is still writing when it closes."""
    await run(await simulation(db, "mqtt-mixed-causes"), 250)
    command = [sys.executable, "-m", "graylogic_supervisor", "executions", "export"]
    config = ["--format", "jsonl", "--config", str(config_for(tmp_path))]
    with subprocess.Popen(
        [*command, *config], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert json.loads(child.stdout.readline())["seq"] == 1
        child.stdout.close()  # as `| head -1` does
        said = child.stderr.read().decode()
    assert child.returncode == 0 and "Traceback" not in said


def test_a_bad_date_is_refused_naming_the_option(tmp_path: Path) -> None:
    done = export(tmp_path, "--format", "csv", "--since", "yesterday")
    assert done.returncode == 2
    assert "--since" in done.stderr and "yesterday" in done.stderr


async def test_pages_of_any_size_give_the_same_events(filled: Database) -> None:
    log = EventLog(filled)
    whole = [e async for e in log.stream(EventFilter(), page=100_000)]
    for size in (1, 3, 7):
        assert [e async for e in log.stream(EventFilter(), page=size)] == whole


async def test_xes_escapes_what_it_writes(filled: Database, tmp_path: Path) -> None:
    await filled.execute(
        "UPDATE execution_steps SET error = ? WHERE seq = 1",
        ("<&\"'> ]]> \u00e9",),
    )
    out = io.StringIO()
    await write_events(EventLog(filled).stream(EventFilter()), out, "xes")
    root = ET.fromstring(out.getvalue())  # our own output
    ns = "{http://www.xes-standard.org/}"
    errors = [s.get("value") for s in root.iter(f"{ns}string") if s.get("key") == "error"]
    assert errors.count("<&\"'> ]]> \u00e9") == INCIDENTS


@pytest.mark.filterwarnings("ignore:Install the optional requirement:UserWarning")  # speed only
async def test_pm4py_reads_the_xes_and_finds_the_paths_learning_counted(
    filled: Database, tmp_path: Path
) -> None:
    pm4py = pytest.importorskip("pm4py")
    path = tmp_path / "events.xes"
    done = export(tmp_path, "--format", "xes", "--out", str(path))
    assert done.returncode == 0, done.stderr
    log = pm4py.read_xes(str(path))
    assert log["case:concept:name"].nunique() == INCIDENTS
    # learning's path: one stop per visit (a retry is a further attempt of the same
    # visit), compensations left out, then how the execution ended
    visits = log[(log["attempt"] == 1) & ~log["concept:name"].str.contains(":")]
    found: Counter[tuple[str, ...]] = Counter()
    for _, case in visits.groupby("case:concept:name", sort=False):
        ended = END_OF_STATUS[case["case:status"].iloc[0]]
        found[(*case.sort_values("seq")["concept:name"], ended)] += 1
    learned = await MetricsTables(filled).paths(PLAYBOOK, "1.0.0", 100)
    assert found == Counter({p.path: p.executions for p in learned})
    assert len(found) >= 2
    # and PM4Py's own variants are learning's paths without their end
    variants = pm4py.get_variants(visits)
    by_steps: Counter[tuple[str, ...]] = Counter()
    for p in learned:
        by_steps[p.path[:-1]] += p.executions
    assert {tuple(k): v for k, v in variants.items()} == dict(by_steps)
