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

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.states import TrialStatus
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.learning import SUCCESS, ResolutionFacts


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
    status: TrialStatus
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
        status=TrialStatus(row["status"]),
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        statistics=json.loads(row["statistics"]) if row["statistics"] else None,
    )


@dataclass(frozen=True, kw_only=True)
class NewTrial:
    """A trial to start: ``trial_version`` (already stored) beside the active ``base_version``."""

    id: str
    playbook_id: str
    base_version: str
    trial_version: str
    share: float
    recommendation_id: str | None
    by: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TrialEnd:
    """A running trial's decision: ``statistics`` None keeps the figures it had."""

    trial_id: str
    status: TrialStatus
    by: str
    reason: str
    at: datetime
    statistics: Mapping[str, Any] | None


async def start_in(conn: aiosqlite.Connection, trial: NewTrial) -> bool:
    """Start ``trial`` inside the caller's transaction; False when the playbook already
    has a running trial (nothing written)."""
    cursor = await conn.execute(
        "INSERT INTO learning_trials (id, playbook_id, base_version, trial_version, share,"
        " recommendation_id, started_at, started_by, status)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
        " (SELECT 1 FROM learning_trials WHERE playbook_id = ? AND status = ?)",
        (
            trial.id,
            trial.playbook_id,
            trial.base_version,
            trial.trial_version,
            trial.share,
            trial.recommendation_id,
            isoformat(trial.at),
            trial.by,
            TrialStatus.RUNNING,
            trial.playbook_id,
            TrialStatus.RUNNING,
        ),
    )
    return cursor.rowcount == 1


async def end_in(conn: aiosqlite.Connection, end: TrialEnd) -> bool:
    """End a running trial inside the caller's transaction; False when it was no longer
    running (nothing written)."""
    statistics = None if end.statistics is None else json.dumps(end.statistics)
    cursor = await conn.execute(
        "UPDATE learning_trials SET status = ?, decided_at = ?, decided_by = ?, reason = ?,"
        " statistics = COALESCE(?, statistics) WHERE id = ? AND status = ?",
        (
            end.status,
            isoformat(end.at),
            end.by,
            end.reason,
            statistics,
            end.trial_id,
            TrialStatus.RUNNING,
        ),
    )
    return cursor.rowcount == 1


class TrialRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, trial: NewTrial) -> bool:
        """Start a trial on its own (a decision starts its trial in its own transaction:
        ``store/decisions.py``); False when the playbook already has a running trial."""
        async with self._db.transaction() as conn:
            return await start_in(conn, trial)

    async def get(self, trial_id: str) -> Trial | None:
        row = await self._db.fetchone("SELECT * FROM learning_trials WHERE id = ?", (trial_id,))
        return None if row is None else _trial(row)

    async def running(self, playbook_id: str) -> Trial | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_trials WHERE playbook_id = ? AND status = ?",
            (playbook_id, TrialStatus.RUNNING),
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
            "UPDATE learning_trials SET statistics = ? WHERE id = ? AND status = ?",
            (json.dumps(statistics), trial_id, TrialStatus.RUNNING),
        )

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
