"""The learning metrics tables: what learning/metrics.py reads, and the upserts that
count a batch of finished executions in the transaction that marks them counted."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord, record_of

# What one batch adds, by table: each row's key columns then the amounts to add.
TableRows = Mapping[str, Sequence[tuple[Any, ...]]]

_UPSERTS = {
    "versions": (
        "INSERT INTO learning_version_metrics (playbook_id, version, executions, resolutions,"
        " escalations, failures, interruptions, resolution_time_sum, first_at, last_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET executions = executions + excluded.executions,"
        " resolutions = resolutions + excluded.resolutions,"
        " escalations = escalations + excluded.escalations,"
        " failures = failures + excluded.failures,"
        " interruptions = interruptions + excluded.interruptions,"
        " resolution_time_sum = resolution_time_sum + excluded.resolution_time_sum,"
        " first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at)"
    ),
    "steps": (
        "INSERT INTO learning_step_metrics (playbook_id, version, step_id, name, action,"
        " executions, successes, skips, attempts, timeouts, fixes, duration_sum)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET executions = executions + excluded.executions,"
        " successes = successes + excluded.successes, skips = skips + excluded.skips,"
        " attempts = attempts + excluded.attempts, timeouts = timeouts + excluded.timeouts,"
        " fixes = fixes + excluded.fixes, duration_sum = duration_sum + excluded.duration_sum"
    ),
    "pairs": (
        "INSERT INTO learning_step_pairs (playbook_id, version, earlier_step,"
        " earlier_outcome, step_id, runs, successes) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET runs = runs + excluded.runs,"
        " successes = successes + excluded.successes"
    ),
    "paths": (
        "INSERT INTO learning_paths (playbook_id, version, path, executions, resolutions)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
        " executions = executions + excluded.executions,"
        " resolutions = resolutions + excluded.resolutions"
    ),
    "histograms": (
        "INSERT INTO learning_histograms (playbook_id, version, subject, kind, bucket, count)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET count = count + excluded.count"
    ),
}
TABLES = tuple(_UPSERTS)


@dataclass(frozen=True)
class VersionTotals:
    """One row of ``learning_version_metrics``: a version's sums so far."""

    playbook_id: str
    version: str
    executions: int
    resolutions: int
    escalations: int
    failures: int
    interruptions: int
    resolution_time_sum: float
    first_at: str | None
    last_at: str | None


@dataclass(frozen=True)
class StepTotals:
    """One row of ``learning_step_metrics``: a step's sums so far in one version."""

    playbook_id: str
    version: str
    step_id: str
    name: str
    action: str
    executions: int
    successes: int
    skips: int
    attempts: int
    timeouts: int
    fixes: int
    duration_sum: float


@dataclass(frozen=True)
class StepPair:
    """How ``step_id`` did in executions where ``earlier_step`` had ``earlier_outcome``."""

    earlier_step: str
    earlier_outcome: str
    step_id: str
    runs: int
    successes: int


@dataclass(frozen=True)
class PathCount:
    """One path of a version, with the version's total executions beside it."""

    path: tuple[str, ...]
    executions: int
    resolutions: int
    total: int


class MetricsTables:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def uncounted_executions(self, limit: int) -> list[ExecutionRecord]:
        """Finished executions not counted yet, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM executions WHERE learned = 0 AND status != 'running'"
            " ORDER BY started_at LIMIT ?",
            (limit,),
        )
        return [ExecutionRecord.of(row) for row in rows]

    async def uncounted_execution(self, execution_id: str) -> list[ExecutionRecord]:
        """The execution if it finished and is not counted yet (else nothing)."""
        rows = await self._db.fetchall(
            "SELECT * FROM executions WHERE id = ? AND learned = 0 AND status != 'running'",
            (execution_id,),
        )
        return [ExecutionRecord.of(row) for row in rows]

    async def steps_of(self, execution_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        """Their steps by execution, each in ``seq`` order (an execution without steps:
        an empty list)."""
        steps: dict[str, list[StepRecord]] = {execution_id: [] for execution_id in execution_ids}
        for row in await self._db.fetchall(
            "SELECT * FROM execution_steps WHERE execution_id IN (SELECT value FROM json_each(?))"
            " ORDER BY execution_id, seq",
            (json.dumps(list(execution_ids)),),
        ):
            steps[row["execution_id"]].append(StepRecord.of(row))
        return steps

    async def count(
        self, execution_ids: Sequence[str], rows_for: Callable[[set[str]], TableRows]
    ) -> set[str]:
        """Mark the executions counted and add ``rows_for(those marked)`` in one transaction;
        an execution another writer counted first is left out. Returns those marked."""

        async with self._db.transaction() as conn:
            fresh = {
                row["id"]
                for row in await conn.execute_fetchall(
                    "UPDATE executions SET learned = 1 WHERE learned = 0"
                    " AND id IN (SELECT value FROM json_each(?)) RETURNING id",
                    (json.dumps(list(execution_ids)),),
                )
            }
            for table, values in rows_for(fresh).items():
                if values:
                    await conn.executemany(_UPSERTS[table], values)
        return fresh

    async def version(self, playbook_id: str, version: str) -> VersionTotals | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_version_metrics WHERE playbook_id = ? AND version = ?",
            (playbook_id, version),
        )
        return None if row is None else record_of(VersionTotals, row)

    async def version_counts(
        self, playbook_id: str, versions: Sequence[str]
    ) -> dict[str, tuple[int, int]]:
        """(resolutions, executions) of each of ``versions`` that has run."""
        rows = await self._db.fetchall(
            "SELECT version, resolutions, executions FROM learning_version_metrics"
            " WHERE playbook_id = ? AND version IN (SELECT value FROM json_each(?))",
            (playbook_id, json.dumps(list(versions))),
        )
        return {row["version"]: (int(row["resolutions"]), int(row["executions"])) for row in rows}

    async def versions(self, playbook_id: str) -> list[VersionTotals]:
        rows = await self._db.fetchall(
            "SELECT * FROM learning_version_metrics WHERE playbook_id = ? ORDER BY first_at",
            (playbook_id,),
        )
        return [record_of(VersionTotals, row) for row in rows]

    async def histogram(
        self, playbook_id: str, version: str, subject: str, kind: str
    ) -> dict[str, int]:
        rows = await self._db.fetchall(
            "SELECT bucket, count FROM learning_histograms WHERE playbook_id = ? AND version = ?"
            " AND subject = ? AND kind = ?",
            (playbook_id, version, subject, kind),
        )
        return {row["bucket"]: int(row["count"]) for row in rows}

    async def step_histograms(
        self, playbook_id: str, version: str
    ) -> dict[tuple[str, str], dict[str, int]]:
        """Every step's histograms of the version, by (step id, kind)."""
        hists: dict[tuple[str, str], dict[str, int]] = {}
        for row in await self._db.fetchall(
            "SELECT subject, kind, bucket, count FROM learning_histograms"
            " WHERE playbook_id = ? AND version = ? AND subject != ''",
            (playbook_id, version),
        ):
            hists.setdefault((row["subject"], row["kind"]), {})[row["bucket"]] = int(row["count"])
        return hists

    async def steps(self, playbook_id: str, version: str) -> list[StepTotals]:
        rows = await self._db.fetchall(
            "SELECT * FROM learning_step_metrics WHERE playbook_id = ? AND version = ?"
            " ORDER BY rowid",
            (playbook_id, version),
        )
        return [record_of(StepTotals, row) for row in rows]

    async def pairs(self, playbook_id: str, version: str) -> list[StepPair]:
        rows = await self._db.fetchall(
            "SELECT * FROM learning_step_pairs WHERE playbook_id = ? AND version = ?",
            (playbook_id, version),
        )
        return [
            StepPair(
                str(r["earlier_step"]),
                str(r["earlier_outcome"]),
                str(r["step_id"]),
                int(r["runs"]),
                int(r["successes"]),
            )
            for r in rows
        ]

    async def paths(self, playbook_id: str, version: str, limit: int) -> list[PathCount]:
        """The most frequent paths, with the version's total executions beside each."""
        rows = await self._db.fetchall(
            "SELECT path, executions, resolutions, SUM(executions) OVER () AS total"
            " FROM learning_paths WHERE playbook_id = ? AND version = ?"
            " ORDER BY executions DESC, path LIMIT ?",
            (playbook_id, version, limit),
        )
        return [
            PathCount(
                tuple(json.loads(r["path"])),
                int(r["executions"]),
                int(r["resolutions"]),
                int(r["total"]),
            )
            for r in rows
        ]
