"""The weekly report's figures, read from the records of the period."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database


class WeeklyReports:
    """The weekly report's read model."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def summary(self, start: datetime, end: datetime) -> dict[str, Any]:
        """The figures of ``start`` <= time < ``end``, ready for JSON and the page."""
        return await weekly_summary(self._db, start, end)


async def weekly_summary(db: Database, start: datetime, end: datetime) -> dict[str, Any]:
    """Executions by playbook, failures, escalations, recommendations, approved versions,
    rollbacks and safe mode, for ``start`` <= time < ``end``."""
    window = (isoformat(start), isoformat(end))
    playbooks = []
    for row in await db.fetchall(
        "SELECT playbook_id, COUNT(*) AS n, SUM(status = 'resolved') AS resolved,"
        " SUM(status = 'escalated') AS escalated, SUM(status = 'failed') AS timed_out"
        " FROM executions WHERE kind = 'playbook' AND status != 'running'"
        " AND started_at >= ? AND started_at < ? GROUP BY playbook_id ORDER BY n DESC",
        window,
    ):
        times = sorted(
            r["duration_seconds"]
            for r in await db.fetchall(
                "SELECT duration_seconds FROM executions WHERE playbook_id = ?"
                " AND status = 'resolved' AND started_at >= ? AND started_at < ?",
                (row["playbook_id"], *window),
            )
        )
        playbooks.append(
            {
                "playbook_id": row["playbook_id"],
                "executions": row["n"],
                "resolved": row["resolved"],
                "escalated": row["escalated"],
                "timed_out": row["timed_out"],
                "success_rate": round(row["resolved"] / row["n"], 4),
                "mean_resolution_s": round(sum(times) / len(times), 3) if times else None,
                "p95_resolution_s": round(times[math.ceil(0.95 * len(times)) - 1], 3)
                if times
                else None,
            }
        )
    failures = await db.fetchall(
        "SELECT component, COUNT(*) AS n FROM failures WHERE detected_at >= ? AND detected_at < ?"
        " GROUP BY component ORDER BY n DESC",
        window,
    )
    escalations = await db.fetchone(
        "SELECT COUNT(*) AS raised, COUNT(acknowledged_at) AS acknowledged FROM escalations"
        " WHERE raised_at >= ? AND raised_at < ?",
        window,
    )
    recommendations = await db.fetchall(
        "SELECT status, COUNT(*) AS n FROM learning_recommendations"
        " WHERE generated_at >= ? AND generated_at < ? GROUP BY status",
        window,
    )
    versions = await db.fetchall(
        "SELECT playbook_id, version, parent_version, approved_by FROM playbook_versions"
        " WHERE recommendation_id IS NOT NULL AND created_at >= ? AND created_at < ?",
        window,
    )
    rollbacks = await db.fetchall(
        "SELECT id, playbook_id, from_version, to_version, by, reason FROM version_rollbacks"
        " WHERE at >= ? AND at < ?",
        window,
    )
    safe_mode = await db.fetchall(
        "SELECT at, actor, action FROM audit_log WHERE action LIKE 'safe_mode.%'"
        " AND at >= ? AND at < ? ORDER BY seq",
        window,
    )
    return {
        "period": {"start": window[0], "end": window[1]},
        "playbooks": playbooks,
        "failures_by_component": {r["component"]: r["n"] for r in failures},
        "escalations": dict(escalations) if escalations else {"raised": 0, "acknowledged": 0},
        "recommendations": {r["status"]: r["n"] for r in recommendations},
        "versions_approved": [dict(r) for r in versions],
        "rollbacks": [dict(r) for r in rollbacks],
        "safe_mode": [dict(r) for r in safe_mode],
    }
