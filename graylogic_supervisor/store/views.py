"""Read-only views of the records for the admin pages and ``why``: lookups by id,
filtered listings, trends. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database, Row


@dataclass(frozen=True)
class ExecutionFilter:
    """What a person filtered the executions by; None: not filtered on."""

    playbook: str | None = None
    component: str | None = None
    status: str | None = None
    since: str | None = None  # ISO 8601, on started_at
    until: str | None = None
    text: str | None = None  # in the id, detail, what fixed it or failure id


class RecordViews:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def executions(self, chosen: ExecutionFilter, limit: int) -> list[Row]:
        """The newest executions that match ``chosen``."""
        clauses, params = ["1 = 1"], []
        for column, value in (
            ("playbook_id = ?", chosen.playbook),
            ("component = ?", chosen.component),
            ("status = ?", chosen.status),
            ("started_at >= ?", chosen.since),
            ("started_at <= ?", chosen.until),
        ):
            if value is not None:
                clauses.append(column)
                params.append(value)
        if chosen.text is not None:
            clauses.append(
                "(id LIKE ? OR detail LIKE ? OR what_fixed_it LIKE ? OR failure_id LIKE ?)"
            )
            params += [f"%{chosen.text}%"] * 4
        return await self._db.fetchall(
            f"SELECT * FROM executions WHERE {' AND '.join(clauses)}"  # noqa: S608  # fixed clauses, values bound
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )

    async def execution(self, execution_id: str) -> Row | None:
        return await self._db.fetchone("SELECT * FROM executions WHERE id = ?", (execution_id,))

    async def commands_of(self, execution_id: str, limit: int) -> list[Row]:
        """Operators' commands for the execution, newest first."""
        return await self._db.fetchall(
            "SELECT * FROM execution_commands WHERE execution_id = ? ORDER BY id DESC LIMIT ?",
            (execution_id, limit),
        )

    async def unresolved_of_playbook(self, playbook_id: str, limit: int) -> list[Row]:
        """Its most recent executions that ended without resolving."""
        return await self._db.fetchall(
            "SELECT id, playbook_version, started_at, detail FROM executions"
            " WHERE playbook_id = ? AND status != 'resolved' AND status != 'running'"
            " ORDER BY started_at DESC LIMIT ?",
            (playbook_id, limit),
        )

    async def daily_trend(self, playbook_id: str, since: datetime) -> list[Row]:
        """Per day since ``since``: playbook executions ended, resolved, mean time to resolve."""
        return await self._db.fetchall(
            "SELECT substr(started_at, 1, 10) AS day, COUNT(*) AS n,"
            " SUM(status = 'resolved') AS ok,"
            " AVG(CASE WHEN status = 'resolved' THEN duration_seconds END) AS mean_s"
            " FROM executions WHERE playbook_id = ? AND kind = 'playbook'"
            " AND status != 'running' AND started_at >= ? GROUP BY day",
            (playbook_id, isoformat(since)[:10]),
        )

    # -- why: a failure, its memory record, its incident's evaluations, its executions --

    async def failure(self, failure_id: str) -> Row | None:
        return await self._db.fetchone("SELECT * FROM failures WHERE id = ?", (failure_id,))

    async def memory_record(self, failure_id: str) -> Row | None:
        return await self._db.fetchone(
            "SELECT record, outcome FROM failure_memory WHERE failure_id = ?", (failure_id,)
        )

    async def evaluations(self, incident_id: str) -> list[Row]:
        return await self._db.fetchall(
            "SELECT * FROM viability_evaluations WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )

    async def executions_of_failure(self, failure_id: str) -> list[Row]:
        return await self._db.fetchall(
            "SELECT * FROM executions WHERE failure_id = ? ORDER BY started_at", (failure_id,)
        )

    async def failure_and_incident(self, identifier: str) -> tuple[str | None, str | None]:
        """The failure and incident an execution, incident or failure id belongs to."""
        row = await self._db.fetchone(
            "SELECT failure_id, incident_id FROM executions WHERE id = ?", (identifier,)
        )
        if row is not None:
            return row["failure_id"], row["incident_id"]
        row = await self._db.fetchone(
            "SELECT id, failure_id FROM incidents WHERE id = ?", (identifier,)
        )
        if row is not None:
            return row["failure_id"], row["id"]
        row = await self._db.fetchone(
            "SELECT id FROM failures WHERE id = ? UNION"
            " SELECT failure_id FROM failure_memory WHERE failure_id = ?",
            (identifier, identifier),
        )
        if row is None:
            return None, None
        incident = await self._db.fetchone(
            "SELECT id FROM incidents WHERE failure_id = ?", (identifier,)
        )
        return row["id"], incident["id"] if incident is not None else None

    # -- the failure memory's and learning's pages ----------------------------------------

    async def remembered_failures(self, outcome: str, limit: int) -> list[Row]:
        """The newest failures the memory keeps, of one outcome ('' for all)."""
        return await self._db.fetchall(
            "SELECT failure_id, component, error_id, detected_at, outcome, fix_action, fix_target,"
            " count FROM failure_memory WHERE ? = '' OR outcome = ?"
            " ORDER BY detected_at DESC LIMIT ?",
            (outcome, outcome, limit),
        )

    async def executions_summary_of_failure(self, failure_id: str) -> list[Row]:
        return await self._db.fetchall(
            "SELECT id, playbook_id, playbook_version, status, detail FROM executions"
            " WHERE failure_id = ? ORDER BY started_at",
            (failure_id,),
        )

    async def patterns_since(self, since: datetime) -> list[Row]:
        """Patterns the memory learned since ``since``, newest first."""
        return await self._db.fetchall(
            "SELECT id, component, error_id, fix_action, created_at FROM memory_patterns"
            " WHERE created_at >= ? ORDER BY created_at DESC",
            (isoformat(since),),
        )

    async def approved_versions_since(self, since: datetime) -> list[Row]:
        """Versions made from approved recommendations since ``since``, newest first."""
        return await self._db.fetchall(
            "SELECT playbook_id, version, parent_version, approved_by, reason, created_at"
            " FROM playbook_versions WHERE recommendation_id IS NOT NULL AND created_at >= ?"
            " ORDER BY created_at DESC",
            (isoformat(since),),
        )
