"""Retention: old records removed in small batches, never what something live refers to.

Each kind of record has its own age limit (the config's ``retention`` section; 0 keeps it
for ever). Rows go in batches of about ``batch_rows`` rows, children first (steps
before their execution, evaluations before their incident), one short
transaction each, with the event loop free between batches: the single writer
(``database.py``) is never held for long, and other writes queued meanwhile go
in between.

Never removed, whatever their age:

- an execution still running (a paused one is running too), one of an incident
  still open or referred to by an escalation not yet closed, one of a version a
  running trial compares, the newest ``keep_recent_executions`` of each playbook
  (what replay and the analysis read) and the newest of each version (what
  rollback compares), and one not yet counted into the learning metrics: the
  metrics are running totals (``learning_metrics.py``), so removing counted
  executions leaves every count as it was;
- a failure that an execution, an incident or a failure memory record refers
  to; an incident an execution or an escalation refers to; a pending command;
  an analysis a recommendation refers to;
- the failure memory, the learned patterns, playbook versions, recommendations,
  rollbacks, users and the audit chain (which is archived, ``audit_archive.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import RetentionConfig
from graylogic_supervisor.store.database import Database, Statement

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass
class RetentionReport:
    """Rows removed per table, batches, and the longest single batch (the writer's pause)."""

    removed: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_s: float = 0.0
    seconds: float = 0.0

    def add(self, table: str, rows: int) -> None:
        if rows:
            self.removed[table] = self.removed.get(table, 0) + rows

    @property
    def total(self) -> int:
        return sum(self.removed.values())


# An execution no longer needed by anything live (see the module's list).
_EXECUTION_REMOVABLE = """
    e.status != 'running' AND e.learned = 1 AND e.completed_at < :cutoff
    AND e.started_at < :floor
    AND e.started_at < (SELECT MAX(n.started_at) FROM executions n
        WHERE n.playbook_id = e.playbook_id AND n.playbook_version = e.playbook_version)
    AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = e.incident_id
        AND i.closed_at IS NULL)
    AND NOT EXISTS (SELECT 1 FROM escalations s WHERE s.closed_at IS NULL
        AND e.incident_id IN (s.incident_id, s.last_incident_id))
    AND NOT EXISTS (SELECT 1 FROM learning_trials t WHERE t.status = 'running'
        AND t.playbook_id = e.playbook_id
        AND e.playbook_version IN (t.base_version, t.trial_version))
"""


class RetentionStore:
    """The deletions themselves; ``run`` applies a whole policy."""

    def __init__(self, db: Database, policy: RetentionConfig) -> None:
        self._db = db
        self._policy = policy

    async def run(self, now: datetime) -> RetentionReport:
        """Every kind whose limit is set, children before parents."""
        report = RetentionReport()
        started = time.perf_counter()
        policy = self._policy

        def cutoff(days: int) -> str:
            return isoformat(now - timedelta(days=days))

        if policy.executions_days:
            await self.executions(cutoff(policy.executions_days), report)
        if policy.commands_days:
            await self.commands(cutoff(policy.commands_days), report)
        if policy.viability_days:
            await self.viability(cutoff(policy.viability_days), report)
        if policy.escalations_days:
            await self.escalations(cutoff(policy.escalations_days), report)
        if policy.incidents_days:
            await self.incidents(cutoff(policy.incidents_days), report)
        if policy.failures_days:
            await self.failures(cutoff(policy.failures_days), report)
        if policy.analyses_days:
            await self.analyses(cutoff(policy.analyses_days), report)
        report.seconds = time.perf_counter() - started
        return report

    async def executions(self, cutoff: str, report: RetentionReport) -> None:
        """Finished, counted executions older than ``cutoff``, each with its steps in the
        same transaction, a batch of about ``batch_rows`` rows at a time."""
        batch_rows = self._policy.batch_rows
        rows_each = 1  # rows per execution (itself and its steps), from the last batch
        for playbook_id in await self._playbooks():
            floor = await self._recent_floor(playbook_id)
            while True:
                rows = await self._db.fetchall(
                    "SELECT e.id, (SELECT COUNT(*) FROM execution_steps s"  # noqa: S608 - fixed
                    " WHERE s.execution_id = e.id) AS steps FROM executions e"
                    f" WHERE e.playbook_id = :playbook AND {_EXECUTION_REMOVABLE}"
                    " ORDER BY e.started_at LIMIT :limit",
                    {
                        "playbook": playbook_id,
                        "cutoff": cutoff,
                        "floor": floor,
                        "limit": batch_rows // rows_each + 1,  # no more read than used
                    },
                )
                if not rows:
                    break
                batch: list[str] = []
                weight = 0
                for row in rows:
                    batch.append(str(row["id"]))
                    weight += 1 + int(row["steps"])
                    if weight >= batch_rows:
                        break
                rows_each = max(1, weight // len(batch))
                deleted = await self._timed(report, partial(self._delete_executions, batch, report))
                if not deleted:  # live again since the select: the next playbook's turn
                    break

    async def _playbooks(self) -> list[str]:
        rows = await self._db.fetchall("SELECT DISTINCT playbook_id FROM executions")
        return [str(row[0]) for row in rows]

    async def _recent_floor(self, playbook_id: str) -> str:
        """The start of the playbook's oldest execution among the newest kept ones: only
        older ones may go ('~' sorts after every timestamp: all may go when none is kept)."""
        keep = self._policy.keep_recent_executions
        if keep <= 0:
            return "~"
        row = await self._db.fetchone(
            "SELECT started_at FROM executions WHERE playbook_id = ?"
            " ORDER BY started_at DESC LIMIT 1 OFFSET ?",
            (playbook_id, keep - 1),
        )
        return "" if row is None else str(row[0])

    async def _delete_executions(self, ids: list[str], report: RetentionReport) -> int:
        listed = json.dumps(ids)
        statements: list[Statement] = [
            (
                "DELETE FROM execution_steps WHERE execution_id IN (SELECT e.id FROM"  # noqa: S608
                " executions e WHERE e.id IN (SELECT value FROM json_each(:ids))"
                f" AND {_EXECUTION_REMOVABLE})",
                {"ids": listed, "cutoff": "~", "floor": "~"},
            ),
            # checked again in the transaction: an escalation may have been raised since
            (
                "DELETE FROM executions AS e"  # noqa: S608 - a fixed clause
                " WHERE e.id IN (SELECT value FROM json_each(:ids))"
                f" AND {_EXECUTION_REMOVABLE}",
                {"ids": listed, "cutoff": "~", "floor": "~"},
            ),
        ]
        steps, executions = await self._db.write_together(statements)
        report.add("execution_steps", steps[0])
        report.add("executions", executions[0])
        return executions[0]

    async def commands(self, cutoff: str, report: RetentionReport) -> None:
        """Operators' commands applied before ``cutoff`` (a pending one is never removed)."""
        await self._batches(
            report,
            "execution_commands",
            "SELECT id FROM execution_commands WHERE applied_at IS NOT NULL AND applied_at < ?",
            cutoff,
            key="id",
        )

    async def viability(self, cutoff: str, report: RetentionReport) -> None:
        """Viability evaluations older than ``cutoff`` of incidents since closed."""
        await self._batches(
            report,
            "viability_evaluations",
            "SELECT v.id FROM viability_evaluations v WHERE v.evaluated_at < ?"
            " AND EXISTS (SELECT 1 FROM incidents i WHERE i.id = v.incident_id"
            " AND i.closed_at IS NOT NULL)",
            cutoff,
            key="id",
        )

    async def escalations(self, cutoff: str, report: RetentionReport) -> None:
        """Escalations closed before ``cutoff``."""
        await self._batches(
            report,
            "escalations",
            "SELECT id FROM escalations WHERE closed_at IS NOT NULL AND closed_at < ?",
            cutoff,
            key="id",
        )

    async def incidents(self, cutoff: str, report: RetentionReport) -> None:
        """Incidents closed before ``cutoff`` that no execution or escalation refers to,
        each with its viability evaluations."""
        select = (
            "SELECT i.id FROM incidents i WHERE i.closed_at IS NOT NULL AND i.closed_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.incident_id = i.id)"
            " AND NOT EXISTS (SELECT 1 FROM escalations s"
            " WHERE i.id IN (s.incident_id, s.last_incident_id))"
            " ORDER BY i.closed_at LIMIT ?"
        )
        while True:
            rows = await self._db.fetchall(select, (cutoff, self._policy.batch_rows))
            if not rows:
                return
            ids = json.dumps([str(row[0]) for row in rows])

            async def delete(listed: str = ids) -> None:
                evaluations, incidents = await self._db.write_together(
                    [
                        (
                            "DELETE FROM viability_evaluations WHERE incident_id IN"
                            " (SELECT value FROM json_each(?))",
                            (listed,),
                        ),
                        (
                            "DELETE FROM incidents WHERE id IN (SELECT value FROM json_each(?))"
                            " AND NOT EXISTS (SELECT 1 FROM executions e"
                            " WHERE e.incident_id = incidents.id)"
                            " AND NOT EXISTS (SELECT 1 FROM escalations s"
                            " WHERE incidents.id IN (s.incident_id, s.last_incident_id))",
                            (listed,),
                        ),
                    ]
                )
                report.add("viability_evaluations", evaluations[0])
                report.add("incidents", incidents[0])

            await self._timed(report, delete)
            if len(rows) < self._policy.batch_rows:
                return

    async def failures(self, cutoff: str, report: RetentionReport) -> None:
        """Failures detected before ``cutoff`` that nothing refers to any more."""
        await self._batches(
            report,
            "failures",
            "SELECT f.id FROM failures f WHERE f.detected_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.failure_id = f.id)"
            " AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.failure_id = f.id)"
            " AND NOT EXISTS (SELECT 1 FROM failure_memory m WHERE m.failure_id = f.id)",
            cutoff,
            key="id",
        )

    async def analyses(self, cutoff: str, report: RetentionReport) -> None:
        """Analysis reports finished before ``cutoff`` that no recommendation refers to."""
        await self._batches(
            report,
            "learning_analyses",
            "SELECT a.id FROM learning_analyses a WHERE a.finished_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM learning_recommendations r"
            " WHERE r.analysis_id = a.id)",
            cutoff,
            key="id",
        )

    async def _batches(
        self, report: RetentionReport, table: str, select: str, cutoff: str, *, key: str
    ) -> None:
        """Rows ``select`` names (by ``key``), deleted ``batch_rows`` at a time. The
        select runs again inside the delete, so a row that became live meanwhile stays."""
        limit = self._policy.batch_rows
        delete = f"DELETE FROM {table} WHERE {key} IN ({select} LIMIT ?)"  # noqa: S608
        while True:
            removed = await self._timed(report, lambda: self._db.execute(delete, (cutoff, limit)))
            report.add(table, removed)
            if removed < limit:
                return

    async def _timed(self, report: RetentionReport, work: Callable[[], Awaitable[_T]]) -> _T:
        started = time.perf_counter()
        result = await work()
        report.batches += 1
        report.longest_batch_s = max(report.longest_batch_s, time.perf_counter() - started)
        await asyncio.sleep(0)  # the loop, and the writes queued meanwhile, go first
        return result
