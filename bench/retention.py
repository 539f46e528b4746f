"""Backup, restore and retention over a store of 1,000,000 execution step rows.

The store is filled directly (``Database.executemany``, 50,000 rows a transaction):
one playbook, ``--steps / --steps-per-execution`` finished executions (counted into
learning, as the daemon leaves them) started evenly over the last two years, their
steps, each one's failure, closed incident and viability evaluation, and 1,000 audit
entries over the same two years. Then, in order:

- **backup**: ``store/backup.py``'s online backup (as the nightly job runs it, in a
  worker thread) -- its time and the file's size;
- **restore**: ``store/backup.py``'s restore of that file into another state
  directory, which checks integrity and the audit chain; the restored store's step
  count must equal the original's;
- **retention**: the default policy (365 days, 500 rows a transaction) and the audit
  archive (``--audit-days``), while a concurrent coroutine records a failure through
  the store every 10 ms: the longest any of those writes waited is the longest the
  writer was held. The same writer runs for 3 s beforehand for the baseline.

**Method.** Wall-clock ``time.perf_counter()`` around each phase; the writer's
latency is its own ``perf_counter()`` around each ``record_failure``.

    PYTHONPATH=$PWD .venv/bin/python bench/retention.py [--steps 1000000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import RetentionConfig
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.backup import backup, restore
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.retention import RetentionStore

NOW = datetime(2026, 12, 6, 3, 45, tzinfo=UTC)
SPAN = timedelta(days=730)
CHUNK = 50_000
AUDIT_ENTRIES = 1000
WRITE_EVERY_S = 0.01
BASELINE_S = 3.0


@dataclass
class Writer:
    """Small writes through the store while something else runs; their latencies."""

    repo: ExecutionRepository
    latencies: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, tag: str) -> None:
        index = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            await self.repo.record_failure(
                f"bench-{tag}-{index}",
                "mqtt",
                "ERR-BENCH",
                "low",
                message="bench write",
                detected_at=NOW,
            )
            self.latencies.append(time.perf_counter() - started)
            index += 1
            await asyncio.sleep(WRITE_EVERY_S)

    def figures(self) -> dict[str, float | int]:
        ordered = sorted(self.latencies)
        return {
            "writes": len(ordered),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2) if ordered else 0,
            "median_ms": round(ordered[len(ordered) // 2] * 1000, 2) if ordered else 0.0,
        }


async def fill(db: Database, steps: int, per_execution: int) -> int:
    """Executions evenly over SPAN, each with ``per_execution`` steps; returns executions."""
    await db.execute("INSERT INTO playbooks (id, name, created_at) VALUES ('pb', 'pb', 'x')")
    await db.execute(
        "INSERT INTO playbook_versions (playbook_id, version, definition, source_yaml,"
        " created_at, created_by, reason) VALUES ('pb', '1.0.0', '{}', '', 'x', 'bench', 'b')"
    )
    executions = steps // per_execution
    gap = SPAN / executions
    rows: list[tuple[Any, ...]] = []
    step_rows: list[tuple[Any, ...]] = []
    failures: list[tuple[Any, ...]] = []
    incidents: list[tuple[Any, ...]] = []
    for index in range(executions):
        started = NOW - SPAN + gap * index
        at = isoformat(started)
        ended = isoformat(started + timedelta(seconds=40))
        rows.append((f"e{index:08d}", at, ended, f"f{index:08d}", f"i{index:08d}"))
        failures.append((f"f{index:08d}", at))
        incidents.append((f"i{index:08d}", f"f{index:08d}", at, ended, ended))
        step_rows.extend(
            (f"e{index:08d}", seq, f"s{seq}", f"Step {seq}", "restart_service", at)
            for seq in range(1, per_execution + 1)
        )
        if len(step_rows) >= CHUNK or index == executions - 1:
            await db.executemany(
                "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
                " VALUES (?, 'mqtt', 'ERR-INFRA-MQTT-001', 'high', 'broker down', ?)",
                failures,
            )
            await db.executemany(
                "INSERT INTO incidents (id, component, error_id, failure_id, phase, opened_at,"
                " updated_at, closed_at) VALUES (?, 'mqtt', 'ERR-INFRA-MQTT-001', ?, 'resolved',"
                " ?, ?, ?)",
                incidents,
            )
            await db.executemany(
                "INSERT INTO viability_evaluations (incident_id, component, evaluated_at,"
                " allowed, reason, detail, attempts_in_window, max_attempts, breaker)"
                " VALUES (?, 'mqtt', ?, 1, 'allowed', '', 1, 3, 'closed')",
                [(incident[0], incident[2]) for incident in incidents],
            )
            await db.executemany(
                "INSERT INTO executions (id, playbook_id, playbook_version, error_id, component,"
                " status, started_at, completed_at, duration_seconds, learned, failure_id,"
                " incident_id) VALUES (?, 'pb', '1.0.0', 'ERR-INFRA-MQTT-001', 'mqtt',"
                " 'resolved', ?, ?, 40.0, 1, ?, ?)",
                rows,
            )
            await db.executemany(
                "INSERT INTO execution_steps (execution_id, seq, step_id, name, action,"
                " target, started_at, duration_seconds, outcome, result)"
                " VALUES (?, ?, ?, ?, ?, 'mosquitto', ?, 4.0, 'success', 'ok')",
                step_rows,
            )
            rows, step_rows, failures, incidents = [], [], [], []
    audit = AuditLog(db)
    for index in range(AUDIT_ENTRIES):
        moment = NOW - SPAN + SPAN * index / AUDIT_ENTRIES
        await audit.append("bench", "maintenance.start", "mqtt", {"n": index}, now=moment)
    return executions


async def count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT COUNT(*) FROM {table}")
    return int(row[0]) if row is not None else 0


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    state = work / "state"
    db_path = state / "supervisor.db"
    result: dict[str, Any] = {"steps": args.steps, "steps_per_execution": args.per_execution}
    async with Database(db_path) as db:
        started = time.perf_counter()
        result["executions"] = await fill(db, args.steps, args.per_execution)
        result["fill_s"] = round(time.perf_counter() - started, 1)
        await db.checkpoint()
        result["store_bytes"] = db_path.stat().st_size

        made = await asyncio.to_thread(backup, db_path, work / "backups" / "bench.db")
        result["backup"] = {"seconds": round(made.seconds, 2), "bytes": made.size}

        started = time.perf_counter()
        restored = await restore(
            made.path,
            work / "restored" / "supervisor.db",
            state_dir=work / "restored",
            now=NOW,
            actor="bench",
        )
        async with Database(restored.db_path) as copy:
            restored_steps = await count(copy, "execution_steps")
        result["restore"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "integrity_and_chain_ok": restored.check.ok,
            "steps_equal": restored_steps == await count(db, "execution_steps"),
        }

        writer = Writer(ExecutionRepository(db))
        task = asyncio.create_task(writer.run("baseline"))
        await asyncio.sleep(BASELINE_S)
        writer.stop.set()
        await task
        result["writer_baseline"] = writer.figures()

        writer = Writer(ExecutionRepository(db))
        task = asyncio.create_task(writer.run("retention"))
        before = await count(db, "execution_steps")
        started = time.perf_counter()
        policy = RetentionConfig(
            batch_rows=args.batch_rows, keep_recent_executions=args.keep_recent
        )
        report = await RetentionStore(db, policy).run(NOW)
        retention_s = time.perf_counter() - started
        audit = AuditLog(db)
        assert audit.archive_dir is not None
        started = time.perf_counter()
        archived = await audit.archives.archive(
            audit.archive_dir, NOW - timedelta(days=args.audit_days), NOW
        )
        archive_s = time.perf_counter() - started
        writer.stop.set()
        await task
        check = await audit.verify()
        result["retention"] = {
            "removed": report.removed,
            "rows_removed": report.total,
            "steps_before": before,
            "steps_after": await count(db, "execution_steps"),
            "batches": report.batches,
            "batch_rows": args.batch_rows,
            "seconds": round(retention_s, 2),
            "longest_batch_ms": round(report.longest_batch_s * 1000, 2),
            "writer": writer.figures(),
            "audit_archived": archived.entries,
            "audit_archive_s": round(archive_s, 2),
            "audit_verify_ok": check.ok,
        }
    return result


def table(result: dict[str, Any]) -> str:
    retention = result["retention"]
    writer, base = retention["writer"], result["writer_baseline"]
    return "\n".join(
        [
            f"store: {result['steps']:,} step rows, {result['executions']:,} executions,"
            f" {result['store_bytes'] / 1e6:.0f} MB (filled in {result['fill_s']} s)",
            f"backup: {result['backup']['seconds']} s, {result['backup']['bytes'] / 1e6:.0f} MB",
            f"restore: {result['restore']['seconds']} s, integrity and chain ok:"
            f" {result['restore']['integrity_and_chain_ok']}, steps equal:"
            f" {result['restore']['steps_equal']}",
            f"retention: {retention['rows_removed']:,} rows removed {retention['removed']}"
            f" in {retention['seconds']} s, {retention['batches']} batches of"
            f" {retention['batch_rows']} rows, longest batch {retention['longest_batch_ms']} ms",
            f"writer during retention: max {writer['max_ms']} ms, p99 {writer['p99_ms']} ms,"
            f" median {writer['median_ms']} ms over {writer['writes']} writes"
            f" (baseline max {base['max_ms']} ms, median {base['median_ms']} ms)",
            f"audit archive: {retention['audit_archived']} entries in"
            f" {retention['audit_archive_s']} s, verify ok: {retention['audit_verify_ok']}",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=1_000_000, help="step rows (1,000,000)")
    parser.add_argument("--per-execution", type=int, default=10, help="steps per execution")
    parser.add_argument("--batch-rows", type=int, default=500, help="rows per transaction")
    parser.add_argument(
        "--keep-recent", type=int, default=1000, help="newest executions kept per playbook"
    )
    parser.add_argument("--audit-days", type=int, default=365, help="archive entries older")
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.steps < args.per_execution or args.per_execution < 1:
        parser.error("--steps must hold at least one execution of --per-execution steps")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(measure(args, args.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-retention-") as work:
            result = asyncio.run(measure(args, Path(work)))
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
