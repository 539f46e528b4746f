"""Recommendations, analyses and rollbacks as the store keeps them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.learning_metrics import MetricsTables
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord

PENDING = "pending"
# An execution that succeeded, as SQL over ``executions e`` (the metrics' rule).
SUCCESS = "e.status = 'resolved' AND e.healthy_after IS NOT 0"  # as Trace.succeeded


@dataclass(frozen=True)
class StoredRecommendation:
    id: str
    playbook_id: str
    base_version: str
    type: str
    priority: str
    confidence: float
    sample_size: int
    summary: str
    change: dict[str, Any]
    evidence: dict[str, Any]
    expected_impact: dict[str, Any]
    fingerprint: str
    status: str
    generated_at: str
    expires_at: str
    decided_at: str | None
    decided_by: str | None
    decision_reason: str | None
    new_version: str | None
    change_key: str | None = None  # the change, independent of the version (rejections.py)
    prediction_check: dict[str, Any] | None = None  # what the version really did (predictions.py)
    trial: bool = False  # replay cannot judge it: to be tried on a share of incidents

    def as_dict(self) -> dict[str, Any]:
        """The learning spec's "Improvement Recommendation", with its decision."""
        return {
            "id": self.id,
            "playbook_id": self.playbook_id,
            "base_version": self.base_version,
            "generated_at": self.generated_at,
            "recommendation_type": self.type,
            "priority": self.priority,
            "confidence": self.confidence,
            "sample_size": self.sample_size,
            "summary": self.summary,
            "recommendation": self.change,
            "evidence": self.evidence,
            "expected_impact": self.expected_impact,
            "trial": self.trial,
            "approval": {
                "status": self.status,
                "requires_approval_from": ["admin", "system_owner"],
                "expires_at": self.expires_at,
                "decided_at": self.decided_at,
                "decided_by": self.decided_by,
                "reason": self.decision_reason,
                "new_version": self.new_version,
            },
            "prediction_check": self.prediction_check,
        }


@dataclass(frozen=True)
class ResolutionFacts:
    """What one counted execution's resolution time is computed from
    (learning/resolution.py): whether it succeeded, how long it ran, and the failure
    memory's outcome and resolution time (None where it records none)."""

    version: str
    success: bool
    duration_seconds: float | None
    completed_at: str | None
    memory_outcome: str | None
    memory_resolved_at: str | None

    @classmethod
    def of(cls, row: Row) -> ResolutionFacts:
        return cls(
            version=row["version"],
            success=bool(row["success"]),
            duration_seconds=row["duration_seconds"],
            completed_at=row["completed_at"],
            memory_outcome=row["memory_outcome"],
            memory_resolved_at=row["memory_resolved_at"],
        )


@dataclass(frozen=True)
class RecordedCase:
    """A counted execution with its steps and what the failure memory recorded of its
    failure's resolution (None where it has none): what ``learning/cases.py`` replays."""

    execution: ExecutionRecord
    steps: tuple[StepRecord, ...]
    memory_outcome: str | None
    memory_fix: str | None
    memory_target: str | None
    memory_resolved_at: str | None


@dataclass(frozen=True)
class PatternSummary:
    """A learned pattern of the failure memory, as the learning's evidence shows it."""

    id: str
    fix_action: str
    fix_target: str | None
    failures: int
    created_at: str
    times_matched: int
    times_resolved: int


def _recommendation(row: Row) -> StoredRecommendation:
    return StoredRecommendation(
        id=row["id"],
        playbook_id=row["playbook_id"],
        base_version=row["base_version"],
        type=row["type"],
        priority=row["priority"],
        confidence=float(row["confidence"]),
        sample_size=int(row["sample_size"]),
        summary=row["summary"],
        change=json.loads(row["change"]),
        evidence=json.loads(row["evidence"]),
        expected_impact=json.loads(row["expected_impact"]),
        fingerprint=row["fingerprint"],
        status=row["status"],
        generated_at=row["generated_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        decision_reason=row["decision_reason"],
        new_version=row["new_version"],
        change_key=row["change_key"],
        prediction_check=(
            json.loads(row["prediction_check"]) if row["prediction_check"] is not None else None
        ),
        trial=bool(row["trial"]),
    )


class LearningRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_analysis(
        self,
        analysis_id: str,
        started: datetime,
        finished: datetime,
        trigger: str,
        *,
        recommendations: int,
        report: Mapping[str, Any],
    ) -> None:
        await self._db.execute(
            "INSERT INTO learning_analyses (id, started_at, finished_at, trigger,"
            " recommendations, report) VALUES (?, ?, ?, ?, ?, ?)",
            (
                analysis_id,
                isoformat(started),
                isoformat(finished),
                trigger,
                recommendations,
                json.dumps(report),
            ),
        )

    async def latest_analysis(self) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_analyses ORDER BY finished_at DESC, rowid DESC LIMIT 1"
        )
        if row is None:
            return None
        return {**dict(row), "report": json.loads(row["report"])}

    async def add_recommendation(self, values: Mapping[str, Any]) -> None:
        data = dict(values)
        for key in ("change", "evidence", "expected_impact"):
            data[key] = json.dumps(data[key], sort_keys=True)
        columns = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        await self._db.execute(
            f"INSERT INTO learning_recommendations ({columns}) VALUES ({marks})",  # noqa: S608  # our own column names
            tuple(data.values()),
        )

    async def get(self, recommendation_id: str) -> StoredRecommendation | None:
        row = await self._db.fetchone(
            "SELECT * FROM learning_recommendations WHERE id = ?", (recommendation_id,)
        )
        return None if row is None else _recommendation(row)

    async def listing(
        self, status: str | None = PENDING, playbook_id: str | None = None, limit: int = 200
    ) -> list[StoredRecommendation]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if playbook_id is not None:
            clauses.append("playbook_id = ?")
            params.append(playbook_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._db.fetchall(
            f"SELECT * FROM learning_recommendations {where}"  # noqa: S608  # fixed clauses
            " ORDER BY generated_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_recommendation(row) for row in rows]

    async def pending_fingerprints(self, playbook_id: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT id, fingerprint FROM learning_recommendations"
            " WHERE playbook_id = ? AND status = 'pending'",
            (playbook_id,),
        )
        return {row["fingerprint"]: row["id"] for row in rows}

    async def supersede(self, ids: Sequence[str], now: datetime, why: str) -> None:
        await self._db.executemany(
            "UPDATE learning_recommendations SET status = 'superseded', decided_at = ?,"
            " decided_by = 'supervisor', decision_reason = ? WHERE id = ? AND status = 'pending'",
            [(isoformat(now), why, rec_id) for rec_id in ids],
        )

    async def archive_expired(self, now: datetime) -> list[str]:
        stamp = isoformat(now)
        rows = await self._db.fetchall(
            "SELECT id FROM learning_recommendations WHERE status = 'pending' AND expires_at <= ?",
            (stamp,),
        )
        ids = [row["id"] for row in rows]
        await self._db.executemany(
            "UPDATE learning_recommendations SET status = 'archived', decided_at = ?,"
            " decided_by = 'supervisor', decision_reason = 'not decided within its expiry'"
            " WHERE id = ? AND status = 'pending'",
            [(stamp, rec_id) for rec_id in ids],
        )
        return ids

    async def record_rollback(
        self,
        rollback_id: str,
        playbook_id: str,
        from_version: str,
        to_version: str,
        *,
        now: datetime,
        by: str,
        reason: str,
        report: Mapping[str, Any],
    ) -> None:
        await self._db.execute(
            "INSERT INTO version_rollbacks (id, playbook_id, from_version, to_version, at, by,"
            " reason, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rollback_id,
                playbook_id,
                from_version,
                to_version,
                isoformat(now),
                by,
                reason,
                json.dumps(report),
            ),
        )

    async def rollbacks(
        self, playbook_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Rollbacks, newest first, each with its investigation report."""
        rows = await self._db.fetchall(
            "SELECT * FROM version_rollbacks WHERE ? IS NULL OR playbook_id = ?"
            " ORDER BY at DESC, rowid DESC LIMIT ?",
            (playbook_id, playbook_id, limit),
        )
        return [{**dict(row), "report": json.loads(row["report"])} for row in rows]

    async def rollback(self, rollback_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT * FROM version_rollbacks WHERE id = ?", (rollback_id,)
        )
        return None if row is None else {**dict(row), "report": json.loads(row["report"])}

    async def pending_count(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM learning_recommendations WHERE status = 'pending'"
        )
        return int(row[0]) if row is not None else 0

    async def unresolved_executions(self, playbook_id: str, version: str, limit: int) -> list[str]:
        """The version's most recent executions that did not resolve, newest first."""
        rows = await self._db.fetchall(
            "SELECT id FROM executions WHERE playbook_id = ? AND playbook_version = ?"
            " AND status != 'resolved' ORDER BY started_at DESC LIMIT ?",
            (playbook_id, version, limit),
        )
        return [str(row["id"]) for row in rows]

    async def last_analysed_at(self, playbook_id: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT analysed_at FROM learning_playbook_analyses WHERE playbook_id = ?",
            (playbook_id,),
        )
        return None if row is None else str(row["analysed_at"])

    async def set_analysed_at(self, playbook_id: str, now: datetime) -> None:
        await self._db.execute(
            "INSERT INTO learning_playbook_analyses (playbook_id, analysed_at) VALUES (?, ?)"
            " ON CONFLICT DO UPDATE SET analysed_at = excluded.analysed_at",
            (playbook_id, isoformat(now)),
        )

    async def counted_since(self, playbook_id: str, version: str, since: str) -> int:
        """The version's playbook executions counted into the metrics, started after ``since``."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM executions WHERE playbook_id = ? AND playbook_version = ?"
            " AND learned = 1 AND kind = 'playbook' AND started_at > ?",
            (playbook_id, version, since),
        )
        return int(row[0]) if row is not None else 0

    async def cases(self, playbook_id: str, window: int) -> list[RecordedCase]:
        """The ``window`` most recent counted playbook executions that ended (of every
        version), newest first, each with its steps and its failure memory record's
        resolution."""
        rows = await self._db.fetchall(
            # The window first (by the playbook-and-time index), then its memory records.
            "SELECT e.*, m.outcome AS memory_outcome, m.fix_action AS memory_fix,"
            " m.fix_target AS memory_target,"
            " json_extract(m.record, '$.resolution.resolved_at') AS memory_resolved_at"
            " FROM (SELECT * FROM executions WHERE playbook_id = ? AND kind = 'playbook'"
            " AND learned = 1 AND status IN ('resolved', 'escalated', 'failed')"
            " ORDER BY started_at DESC LIMIT ?) AS e"
            " LEFT JOIN failure_memory m ON m.failure_id = e.failure_id"
            " ORDER BY e.started_at DESC",
            (playbook_id, window),
        )
        steps = await MetricsTables(self._db).steps_of([row["id"] for row in rows])
        return [
            RecordedCase(
                execution=ExecutionRecord.of(row),
                steps=tuple(steps[row["id"]]),
                memory_outcome=row["memory_outcome"],
                memory_fix=row["memory_fix"],
                memory_target=row["memory_target"],
                memory_resolved_at=row["memory_resolved_at"],
            )
            for row in rows
        ]

    async def memory_patterns_for(self, component: str, playbook_id: str) -> list[PatternSummary]:
        """The failure memory's learned patterns for the failures this playbook handles."""
        rows = await self._db.fetchall(
            "SELECT id, fix_action, fix_target, members, created_at, times_matched,"
            " times_resolved FROM memory_patterns WHERE component = ?"
            " AND error_id IN (SELECT DISTINCT error_id FROM executions WHERE playbook_id = ?)",
            (component, playbook_id),
        )
        return [
            PatternSummary(
                id=row["id"],
                fix_action=row["fix_action"],
                fix_target=row["fix_target"],
                failures=len(json.loads(row["members"])),
                created_at=row["created_at"],
                times_matched=int(row["times_matched"]),
                times_resolved=int(row["times_resolved"]),
            )
            for row in rows
        ]

    async def counted_executions(self, playbook_id: str) -> int:
        """The playbook's counted executions, every version: the evidence behind a change."""
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(executions), 0) FROM learning_version_metrics"
            " WHERE playbook_id = ?",
            (playbook_id,),
        )
        return int(row[0]) if row is not None else 0

    async def resolution_facts(
        self, playbook_id: str, version: str, limit: int
    ) -> list[ResolutionFacts]:
        """The version's ``limit`` most recent counted playbook executions that ended, each
        with whether it succeeded and its failure memory record's resolution
        (learning/resolution.py turns them into resolution times)."""
        rows = await self._db.fetchall(
            # SUCCESS: resolved (with issue 14's health verdict: and not unhealthy after).
            f"SELECT e.playbook_version AS version, {SUCCESS} AS success,"  # noqa: S608
            " e.duration_seconds, e.completed_at,"
            " m.outcome AS memory_outcome,"
            " json_extract(m.record, '$.resolution.resolved_at') AS memory_resolved_at"
            " FROM (SELECT * FROM executions WHERE playbook_id = ? AND playbook_version = ?"
            " AND kind = 'playbook' AND learned = 1"
            " AND status IN ('resolved', 'escalated', 'failed')"
            " ORDER BY started_at DESC LIMIT ?) AS e"
            " LEFT JOIN failure_memory m ON m.failure_id = e.failure_id",
            (playbook_id, version, limit),
        )
        return [ResolutionFacts.of(row) for row in rows]

    async def approved_with_versions(self, limit: int = 200) -> list[StoredRecommendation]:
        """Approved recommendations and the versions they made, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM learning_recommendations WHERE status = 'approved'"
            " AND new_version IS NOT NULL ORDER BY decided_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [_recommendation(row) for row in rows]

    async def by_version(self, playbook_id: str, version: str) -> StoredRecommendation | None:
        """The approved recommendation that made ``version``, if one did."""
        row = await self._db.fetchone(
            "SELECT * FROM learning_recommendations WHERE playbook_id = ? AND new_version = ?"
            " AND status = 'approved'",
            (playbook_id, version),
        )
        return None if row is None else _recommendation(row)

    async def set_prediction_check(self, recommendation_id: str, check: Mapping[str, Any]) -> None:
        await self._db.execute(
            "UPDATE learning_recommendations SET prediction_check = ? WHERE id = ?",
            (json.dumps(check, sort_keys=True), recommendation_id),
        )

    async def prediction_checks(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent prediction checks, newest first."""
        rows = await self._db.fetchall(
            "SELECT prediction_check FROM learning_recommendations"
            " WHERE prediction_check IS NOT NULL ORDER BY decided_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [json.loads(row["prediction_check"]) for row in rows]


@dataclass(frozen=True)
class HumanFix:
    """A failure a person resolved with a registered fix action (not ``manual``): what
    a draft playbook for an uncovered error id is built from (learning/drafts.py)."""

    failure_id: str
    error_id: str
    component: str
    fix_action: str
    fix_target: str | None
    fixed_by: str
    count: int  # near-identical failures this record stands for (consolidation)


@dataclass(frozen=True)
class ErrorPattern:
    """A learned pattern of the failure memory with the failure it is for."""

    id: str
    error_id: str
    component: str
    fix_action: str
    fix_target: str | None
    failures: int
    times_matched: int
    times_resolved: int


DRAFT_EVIDENCE_ROWS = 20_000  # the newest resolutions read for drafts (a site has hundreds)


class DraftEvidence:
    """What technicians fixed by hand and what the memory learned, per failure."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def human_fixes(self) -> list[HumanFix]:
        rows = await self._db.fetchall(
            "SELECT failure_id, error_id, component, fix_action, fix_target, count,"
            " json_extract(record, '$.resolution.fixed_by') AS fixed_by"
            " FROM failure_memory WHERE outcome = 'resolved_by_human'"
            " AND fix_action IS NOT NULL ORDER BY detected_at DESC LIMIT ?",
            (DRAFT_EVIDENCE_ROWS,),
        )
        return [
            HumanFix(
                failure_id=row["failure_id"],
                error_id=row["error_id"],
                component=row["component"],
                fix_action=row["fix_action"],
                fix_target=row["fix_target"],
                fixed_by=str(row["fixed_by"] or "unknown"),
                count=int(row["count"]),
            )
            for row in rows
        ]

    async def patterns(self) -> list[ErrorPattern]:
        rows = await self._db.fetchall(
            "SELECT id, error_id, component, fix_action, fix_target, members, times_matched,"
            " times_resolved FROM memory_patterns WHERE flagged_for_review = 0"
        )
        return [
            ErrorPattern(
                id=row["id"],
                error_id=row["error_id"],
                component=row["component"],
                fix_action=row["fix_action"],
                fix_target=row["fix_target"],
                failures=len(json.loads(row["members"])),
                times_matched=int(row["times_matched"]),
                times_resolved=int(row["times_resolved"]),
            )
            for row in rows
        ]

    async def draft_statuses(self, playbook_id: str) -> list[str]:
        """The statuses of every ``new_playbook`` recommendation for ``playbook_id``."""
        rows = await self._db.fetchall(
            "SELECT status FROM learning_recommendations"
            " WHERE playbook_id = ? AND type = 'new_playbook'",
            (playbook_id,),
        )
        return [str(row["status"]) for row in rows]

    async def known_playbook(self, playbook_id: str) -> bool:
        """Whether the store has any version of ``playbook_id`` (active or not)."""
        row = await self._db.fetchone(
            "SELECT 1 FROM playbook_versions WHERE playbook_id = ? LIMIT 1", (playbook_id,)
        )
        return row is not None
