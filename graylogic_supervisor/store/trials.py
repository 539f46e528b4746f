"""Trial versions (BR-WF-034) as the store keeps them.

A trial's version is a stored playbook version that is never active while the
trial runs; the base stays active and the trial version takes a share of the
incidents. A partial unique index keeps one running trial per playbook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.learning import SUCCESS, ResolutionFacts

RUNNING = "running"


@dataclass(frozen=True)
class Trial:
    id: str
    playbook_id: str
    base_version: str
    trial_version: str
    share: float
    recommendation_id: str | None
    started_at: str
    started_by: str
    status: str  # running, promoted, dropped
    decided_at: str | None
    decided_by: str | None
    reason: str | None
    statistics: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "playbook_id": self.playbook_id,
            "base_version": self.base_version,
            "trial_version": self.trial_version,
            "share": self.share,
            "recommendation_id": self.recommendation_id,
            "started_at": self.started_at,
            "started_by": self.started_by,
            "status": self.status,
            "decided_at": self.decided_at,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "statistics": self.statistics,
        }


def _trial(row: Row) -> Trial:
    return Trial(
        id=row["id"],
        playbook_id=row["playbook_id"],
        base_version=row["base_version"],
        trial_version=row["trial_version"],
        share=float(row["share"]),
        recommendation_id=row["recommendation_id"],
        started_at=row["started_at"],
        started_by=row["started_by"],
        status=row["status"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        statistics=json.loads(row["statistics"]) if row["statistics"] else None,
    )


class TrialRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(
        self,
        trial_id: str,
        playbook_id: str,
        base_version: str,
        trial_version: str,
        share: float,
        recommendation_id: str | None,
        by: str,
        now: datetime,
    ) -> bool:
        """False when the playbook already has a running trial."""
        count = await self._db.execute(
            "INSERT INTO learning_trials (id, playbook_id, base_version, trial_version, share,"
            " recommendation_id, started_at, started_by, status)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, 'running' WHERE NOT EXISTS"
            " (SELECT 1 FROM learning_trials WHERE playbook_id = ? AND status = 'running')",
            (
                trial_id,
                playbook_id,
                base_version,
                trial_version,
                share,
                recommendation_id,
                isoformat(now),
                by,
                playbook_id,
            ),
        )
        return count == 1

    async def get(self, trial_id: str) -> Trial | None:
        row = await self._db.fetchone("SELECT * FROM learning_trials WHERE id = ?", (trial_id,))
        return None if row is None else _trial(row)

    async def running(self, playbook_id: str) -> Trial | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_trials WHERE playbook_id = ? AND status = 'running'",
            (playbook_id,),
        )
        return None if row is None else _trial(row)

    async def listing(
        self, status: str | None = None, playbook_id: str | None = None, limit: int = 200
    ) -> list[Trial]:
        rows = await self._db.fetchall(
            "SELECT * FROM learning_trials WHERE (? IS NULL OR status = ?)"
            " AND (? IS NULL OR playbook_id = ?) ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (status, status, playbook_id, playbook_id, limit),
        )
        return [_trial(row) for row in rows]

    async def set_statistics(self, trial_id: str, statistics: Mapping[str, Any]) -> None:
        await self._db.execute(
            "UPDATE learning_trials SET statistics = ? WHERE id = ? AND status = 'running'",
            (json.dumps(statistics), trial_id),
        )

    async def decide(
        self,
        trial_id: str,
        status: str,
        by: str,
        reason: str,
        now: datetime,
        statistics: Mapping[str, Any] | None,
    ) -> bool:
        """End a running trial; False when it was no longer running."""
        count = await self._db.execute(
            "UPDATE learning_trials SET status = ?, decided_at = ?, decided_by = ?, reason = ?,"
            " statistics = COALESCE(?, statistics) WHERE id = ? AND status = 'running'",
            (
                status,
                isoformat(now),
                by,
                reason,
                None if statistics is None else json.dumps(statistics),
                trial_id,
            ),
        )
        return count == 1

    async def arm_rows(
        self, playbook_id: str, versions: Sequence[str], since: str
    ) -> list[ResolutionFacts]:
        """Each counted, finished playbook execution of ``versions`` started at or after
        ``since`` (both arms over the same period), as ``resolution_facts`` gives them
        (learning/resolution.py turns them into resolution times)."""
        rows = await self._db.fetchall(
            f"SELECT e.playbook_version AS version, {SUCCESS} AS success,"  # noqa: S608
            " e.duration_seconds, e.completed_at, m.outcome AS memory_outcome,"
            " json_extract(m.record, '$.resolution.resolved_at') AS memory_resolved_at"
            " FROM (SELECT * FROM executions WHERE playbook_id = ?"
            " AND playbook_version IN (SELECT value FROM json_each(?))"
            " AND kind = 'playbook' AND learned = 1"
            " AND status IN ('resolved', 'escalated', 'failed') AND started_at >= ?) AS e"
            " LEFT JOIN failure_memory m ON m.failure_id = e.failure_id"
            " ORDER BY e.started_at",
            (playbook_id, json.dumps(list(versions)), since),
        )
        return [ResolutionFacts.of(row) for row in rows]
