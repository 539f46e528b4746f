"""The learning analyses as the store keeps them: each run's report (findings and the
verdict on every candidate), which recommendations it made, and the pending ones by
priority (what /metrics and the dashboards count)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from graylogic_supervisor.store.database import Database

PRIORITIES = ("high", "medium", "low")


class AnalysisRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def listing(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest analyses first, without their reports (a report can be large)."""
        rows = await self._db.fetchall(
            "SELECT id, started_at, finished_at, trigger, recommendations,"
            " json_array_length(report, '$.playbooks') AS playbooks"
            " FROM learning_analyses ORDER BY finished_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [dict(row) for row in rows]

    async def get(self, analysis_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_analyses WHERE id = ?", (analysis_id,)
        )
        return None if row is None else {**dict(row), "report": json.loads(row["report"])}

    async def link(self, analysis_id: str, recommendation_ids: Sequence[str]) -> None:
        """Record which analysis made each recommendation (stored before the analysis)."""
        await self._db.executemany(
            "UPDATE learning_recommendations SET analysis_id = ? WHERE id = ?",
            [(analysis_id, rec_id) for rec_id in recommendation_ids],
        )

    async def of_recommendation(self, recommendation_id: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT analysis_id FROM learning_recommendations WHERE id = ?",
            (recommendation_id,),
        )
        return None if row is None else row["analysis_id"]

    async def pending_by_priority(self) -> dict[str, int]:
        """Pending recommendations per priority, every priority present (0 when none)."""
        rows = await self._db.fetchall(
            "SELECT priority, COUNT(*) AS n FROM learning_recommendations"
            " WHERE status = 'pending' GROUP BY priority"
        )
        counts = dict.fromkeys(PRIORITIES, 0)
        counts.update({row["priority"]: int(row["n"]) for row in rows})
        return counts
