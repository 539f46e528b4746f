"""Incidents (one component's failure, from detection to its end) and viability evaluations.

Phases: ``detected`` → ``executing`` ⇄ ``recovering`` (between executions, or
waiting for a breaker) → ``resolved``, ``escalated`` or ``failed``. An
escalated incident is not closed: it stays open, waiting for a trial attempt
or for a human, until the component is healthy again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.states import IncidentPhase
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.records import IncidentRecord


class Evaluation(Protocol):
    """A viability verdict as the store keeps it (the policy's ``Verdict`` is one)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> object: ...
    @property
    def detail(self) -> str: ...
    @property
    def attempts_in_window(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def termination_rate(self) -> float | None: ...
    @property
    def breaker(self) -> object: ...


PHASES = frozenset(IncidentPhase)
CLOSING = frozenset({IncidentPhase.RESOLVED, IncidentPhase.FAILED})


class IncidentRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(
        self,
        incident_id: str,
        component: str,
        error_id: str,
        failure_id: str,
        *,
        detail: str,
        now: datetime,
    ) -> None:
        stamp = isoformat(now)
        await self._db.execute(
            "INSERT INTO incidents (id, component, error_id, failure_id, phase, detail,"
            " opened_at, updated_at) VALUES (?, ?, ?, ?, 'detected', ?, ?, ?)",
            (incident_id, component, error_id, failure_id, detail, stamp, stamp),
        )

    async def set_phase(
        self,
        incident_id: str,
        phase: str,
        detail: str,
        now: datetime,
        *,
        attempts: int | None = None,
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown incident phase {phase!r}")
        stamp = isoformat(now)
        await self._db.execute(
            "UPDATE incidents SET phase = ?, detail = ?, updated_at = ?,"
            " attempts = COALESCE(?, attempts),"
            " closed_at = CASE WHEN ? THEN ? ELSE closed_at END WHERE id = ?",
            (phase, detail, stamp, attempts, phase in CLOSING, stamp, incident_id),
        )

    async def close_escalated(self, incident_id: str, detail: str, now: datetime) -> None:
        """The component recovered without us (a technician, or by itself)."""
        stamp = isoformat(now)
        await self._db.execute(
            "UPDATE incidents SET detail = ?, updated_at = ?, closed_at = ? WHERE id = ?",
            (detail, stamp, stamp, incident_id),
        )

    async def record_evaluation(
        self, incident_id: str, component: str, verdict: Evaluation, now: datetime
    ) -> None:
        await self._db.execute(
            "INSERT INTO viability_evaluations (incident_id, component, evaluated_at, allowed,"
            " reason, detail, attempts_in_window, max_attempts, termination_rate, breaker)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                incident_id,
                component,
                isoformat(now),
                int(verdict.allowed),
                str(verdict.reason),
                verdict.detail,
                verdict.attempts_in_window,
                verdict.max_attempts,
                verdict.termination_rate,
                str(verdict.breaker),
            ),
        )

    async def get(self, incident_id: str) -> IncidentRecord | None:
        row = await self._db.fetchone("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return None if row is None else IncidentRecord.of(row)

    async def close_all_open(self, detail: str, now: datetime) -> int:
        """At start-up: incidents of a previous run are over (health is checked anew)."""
        stamp = isoformat(now)
        return await self._db.execute(
            "UPDATE incidents SET phase = CASE WHEN phase IN ('escalated') THEN phase"
            " ELSE 'failed' END, detail = ?, updated_at = ?, closed_at = ?"
            " WHERE closed_at IS NULL",
            (detail, stamp, stamp),
        )

    async def allowed_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(component, when) of every attempt the policy allowed at or after ``since``."""
        rows = await self._db.fetchall(
            "SELECT component, evaluated_at FROM viability_evaluations"
            " WHERE allowed = 1 AND evaluated_at >= ? ORDER BY id",
            (isoformat(since),),
        )
        return [
            (
                str(row["component"]),
                datetime.fromisoformat(row["evaluated_at"].replace("Z", "+00:00")),
            )
            for row in rows
        ]
