"""Read-only views of the records for the admin pages and ``why``: lookups by id,
filtered listings, trends. Nothing here writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.export import EventLog
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord, record_of
from graylogic_supervisor.store.reports import WeeklyReports

_R = TypeVar("_R")


@dataclass(frozen=True)
class ExecutionFilter:
    """What a person filtered the executions by; None: not filtered on."""

    playbook: str | None = None
    component: str | None = None
    status: str | None = None
    since: str | None = None  # ISO 8601, on started_at
    until: str | None = None
    text: str | None = None  # in the id, detail, what fixed it or failure id

    def where(self) -> tuple[list[str], list[Any]]:
        """The WHERE clauses on ``executions`` and their bound values (the page's list and
        the API's pages filter alike)."""
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        for clause, value in (
            ("playbook_id = ?", self.playbook),
            ("component = ?", self.component),
            ("status = ?", self.status),
            ("started_at >= ?", self.since),
            ("started_at <= ?", self.until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if self.text is not None:
            clauses.append(
                "(id LIKE ? OR detail LIKE ? OR what_fixed_it LIKE ? OR failure_id LIKE ?)"
            )
            params += [f"%{self.text}%"] * 4
        return clauses, params


@dataclass(frozen=True)
class CommandEntry:
    """One operator's command for an execution (``execution_commands``)."""

    id: int
    execution_id: str
    command: str
    step_id: str | None
    outcome: str | None
    issued_by: str
    reason: str
    issued_at: str
    applied_at: str | None
    result: str | None


@dataclass(frozen=True)
class UnresolvedRun:
    """An execution of a playbook that ended without resolving."""

    id: str
    playbook_version: str
    started_at: str
    detail: str | None


@dataclass(frozen=True)
class DayTrend:
    """One day of a playbook's executions: how many ended, resolved, and the mean time
    of those resolved (None: none resolved)."""

    day: str
    n: int
    ok: int
    mean_s: float | None


@dataclass(frozen=True)
class FailureEntry:
    """One row of ``failures``."""

    id: str
    component: str
    error_id: str
    severity: str
    message: str
    detected_at: str
    symptom_of: str | None
    expected: bool


@dataclass(frozen=True)
class RememberedFailure:
    """What the failure memory keeps of one failure: its record (parsed) and outcome."""

    record: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class Evaluation:
    """One viability evaluation of an incident: whether the policy allowed a run, why."""

    id: int
    incident_id: str
    component: str
    evaluated_at: str
    allowed: bool
    reason: str
    detail: str
    attempts_in_window: int
    max_attempts: int
    termination_rate: float | None
    breaker: str


@dataclass(frozen=True)
class AuditNote:
    """An audit entry's action and its detail (parsed)."""

    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class FailureListing:
    """A failure of the memory's list: what it was, how it ended, what fixed it."""

    failure_id: str
    component: str
    error_id: str
    detected_at: str
    outcome: str
    fix_action: str | None
    fix_target: str | None
    count: int


@dataclass(frozen=True)
class ExecutionSummary:
    """An execution of a failure, in brief."""

    id: str
    playbook_id: str
    playbook_version: str
    status: str
    detail: str | None


@dataclass(frozen=True)
class PatternLearned:
    """A pattern the failure memory learned."""

    id: str
    component: str
    error_id: str
    fix_action: str
    created_at: str


@dataclass(frozen=True)
class ApprovedVersion:
    """A version made from an approved recommendation."""

    playbook_id: str
    version: str
    parent_version: str | None
    approved_by: str | None
    reason: str
    created_at: str


@dataclass(frozen=True)
class EscalationEntry:
    """An escalation as the pages show it, with the failure its incident was about."""

    id: str
    incident_id: str | None
    failure_id: str | None
    component: str
    severity: str
    message: str
    raised_at: str
    level: int
    occurrences: int
    last_detail: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    closed_at: str | None

    @property
    def state(self) -> str:
        """closed (its fault cleared), acknowledged (someone took it; the fault remains) or open."""
        if self.closed_at is not None:
            return "closed"
        return "open" if self.acknowledged_at is None else "acknowledged"


@dataclass(frozen=True)
class HeldRecovery:
    """A component whose open incident's newest viability verdict denied a recovery."""

    component: str
    incident_id: str
    reason: str
    detail: str
    evaluated_at: str


@dataclass(frozen=True)
class LearnedFixPlaybook:
    """A playbook the failure memory built from a fix that worked before (never active),
    with what its runs did in the period asked (all time for the playbooks list)."""

    playbook_id: str
    name: str
    version: str
    created_at: str
    reason: str
    executions: int
    resolved: int
    last_execution_id: str | None
    last_started_at: str | None


_ESCALATION = (
    "SELECT e.id, e.incident_id, i.failure_id, e.component, e.severity, e.message, e.raised_at,"
    " e.level, e.occurrences, e.last_detail, e.acknowledged_at, e.acknowledged_by, e.closed_at"
    " FROM escalations AS e LEFT JOIN incidents AS i ON i.id = e.incident_id"
)
_ESCALATION_STATES = {
    "open": "e.closed_at IS NULL AND e.acknowledged_at IS NULL",
    "acknowledged": "e.closed_at IS NULL AND e.acknowledged_at IS NOT NULL",
    "closed": "e.closed_at IS NOT NULL",
}
ESCALATION_STATES = tuple(_ESCALATION_STATES)


def _records(cls: type[_R], rows: list[Row]) -> list[_R]:
    return [record_of(cls, row) for row in rows]


class RecordViews:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def executions(self, chosen: ExecutionFilter, limit: int) -> list[ExecutionRecord]:
        """The newest executions that match ``chosen``."""
        clauses, params = chosen.where()
        rows = await self._db.fetchall(
            f"SELECT * FROM executions WHERE {' AND '.join(clauses)}"  # noqa: S608  # fixed clauses, values bound
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [ExecutionRecord.of(row) for row in rows]

    async def execution(self, execution_id: str) -> ExecutionRecord | None:
        row = await self._db.fetchone("SELECT * FROM executions WHERE id = ?", (execution_id,))
        return None if row is None else ExecutionRecord.of(row)

    async def running_executions(self) -> list[ExecutionRecord]:
        """Executions whose end was never recorded (the supervisor stopped during them)."""
        rows = await self._db.fetchall(
            "SELECT * FROM executions WHERE status = 'running' ORDER BY started_at"
        )
        return [ExecutionRecord.of(row) for row in rows]

    async def steps(self, execution_id: str) -> list[StepRecord]:
        """The execution's steps in the order they ran."""
        rows = await self._db.fetchall(
            "SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq", (execution_id,)
        )
        return [StepRecord.of(row) for row in rows]

    async def commands_of(self, execution_id: str, limit: int) -> list[CommandEntry]:
        """Operators' commands for the execution, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM execution_commands WHERE execution_id = ? ORDER BY id DESC LIMIT ?",
            (execution_id, limit),
        )
        return _records(CommandEntry, rows)

    async def unresolved_of_playbook(self, playbook_id: str, limit: int) -> list[UnresolvedRun]:
        """Its most recent executions that ended without resolving."""
        rows = await self._db.fetchall(
            "SELECT id, playbook_version, started_at, detail FROM executions"
            " WHERE playbook_id = ? AND status != 'resolved' AND status != 'running'"
            " ORDER BY started_at DESC LIMIT ?",
            (playbook_id, limit),
        )
        return _records(UnresolvedRun, rows)

    async def daily_trend(self, playbook_id: str, since: datetime) -> list[DayTrend]:
        """Per day since ``since``: playbook executions ended, resolved, mean time to resolve."""
        rows = await self._db.fetchall(
            "SELECT substr(started_at, 1, 10) AS day, COUNT(*) AS n,"
            " SUM(status = 'resolved') AS ok,"
            " AVG(CASE WHEN status = 'resolved' THEN duration_seconds END) AS mean_s"
            " FROM executions WHERE playbook_id = ?"
            " AND status != 'running' AND started_at >= ? GROUP BY day",
            (playbook_id, isoformat(since)[:10]),
        )
        return [DayTrend(row["day"], int(row["n"]), int(row["ok"]), row["mean_s"]) for row in rows]

    # -- why: a failure, its memory record, its incident's evaluations, its executions --

    async def failure(self, failure_id: str) -> FailureEntry | None:
        row = await self._db.fetchone("SELECT * FROM failures WHERE id = ?", (failure_id,))
        if row is None:
            return None
        return record_of(FailureEntry, row)

    async def memory_record(self, failure_id: str) -> RememberedFailure | None:
        row = await self._db.fetchone(
            "SELECT record, outcome FROM failure_memory WHERE failure_id = ?", (failure_id,)
        )
        return None if row is None else RememberedFailure(json.loads(row["record"]), row["outcome"])

    async def notes(self, subject: str, limit: int) -> list[AuditNote]:
        """The ``limit`` newest audit entries about ``subject``, newest first."""
        rows = await self._db.fetchall(
            "SELECT action, detail FROM audit_log WHERE subject = ? ORDER BY seq DESC LIMIT ?",
            (subject, limit),
        )
        return [AuditNote(row["action"], json.loads(row["detail"])) for row in rows]

    async def evaluations(self, incident_id: str) -> list[Evaluation]:
        rows = await self._db.fetchall(
            "SELECT * FROM viability_evaluations WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return _records(Evaluation, rows)

    async def executions_of_failure(self, failure_id: str) -> list[ExecutionRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM executions WHERE failure_id = ? ORDER BY started_at", (failure_id,)
        )
        return [ExecutionRecord.of(row) for row in rows]

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

    async def remembered_failures(self, outcome: str, limit: int) -> list[FailureListing]:
        """The newest failures the memory keeps, of one outcome ('' for all)."""
        rows = await self._db.fetchall(
            "SELECT failure_id, component, error_id, detected_at, outcome, fix_action, fix_target,"
            " count FROM failure_memory WHERE ? = '' OR outcome = ?"
            " ORDER BY detected_at DESC LIMIT ?",
            (outcome, outcome, limit),
        )
        return _records(FailureListing, rows)

    async def executions_summary_of_failure(self, failure_id: str) -> list[ExecutionSummary]:
        rows = await self._db.fetchall(
            "SELECT id, playbook_id, playbook_version, status, detail FROM executions"
            " WHERE failure_id = ? ORDER BY started_at",
            (failure_id,),
        )
        return _records(ExecutionSummary, rows)

    async def patterns_since(self, since: datetime) -> list[PatternLearned]:
        """Patterns the memory learned since ``since``, newest first."""
        rows = await self._db.fetchall(
            "SELECT id, component, error_id, fix_action, created_at FROM memory_patterns"
            " WHERE created_at >= ? ORDER BY created_at DESC",
            (isoformat(since),),
        )
        return _records(PatternLearned, rows)

    async def approved_versions_since(self, since: datetime) -> list[ApprovedVersion]:
        """Versions made from approved recommendations since ``since``, newest first."""
        rows = await self._db.fetchall(
            "SELECT playbook_id, version, parent_version, approved_by, reason, created_at"
            " FROM playbook_versions WHERE recommendation_id IS NOT NULL AND created_at >= ?"
            " ORDER BY created_at DESC",
            (isoformat(since),),
        )
        return _records(ApprovedVersion, rows)

    # -- what the dashboard and the escalations page show ----------------------------------

    async def escalations(self, state: str, limit: int) -> list[EscalationEntry]:
        """Escalations in ``state`` (one of ``ESCALATION_STATES``), newest first."""
        where = _ESCALATION_STATES[state]
        rows = await self._db.fetchall(
            f"{_ESCALATION} WHERE {where} ORDER BY e.raised_at DESC, e.id DESC LIMIT ?",
            (limit,),
        )
        return _records(EscalationEntry, rows)

    async def held_recoveries(self) -> dict[str, HeldRecovery]:
        """Per component, its open incident whose newest verdict held the recovery back.

        A verdict that allowed a run, or an incident closed since, is not a hold.
        """
        rows = await self._db.fetchall(
            "SELECT i.component, i.id AS incident_id, v.reason, v.detail, v.evaluated_at"
            " FROM incidents AS i JOIN viability_evaluations AS v ON v.id ="
            " (SELECT MAX(id) FROM viability_evaluations WHERE incident_id = i.id)"
            " WHERE i.closed_at IS NULL AND v.allowed = 0 ORDER BY i.opened_at"
        )
        return {row["component"]: record_of(HeldRecovery, row) for row in rows}

    async def learned_fixes(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[LearnedFixPlaybook]:
        """Learned-fix playbooks (stored, never active), with their runs between ``since``
        and ``until`` (None: unbounded); for a period, only those that ran in it."""
        low = isoformat(since) if since is not None else ""
        high = isoformat(until) if until is not None else "9999"
        rows = await self._db.fetchall(
            "SELECT v.playbook_id, p.name, v.version, v.created_at, v.reason,"
            " COUNT(x.id) AS executions, COALESCE(SUM(x.status = 'resolved'), 0) AS resolved,"
            " (SELECT id FROM executions WHERE playbook_id = v.playbook_id"
            "  AND started_at >= ? AND started_at < ?"
            "  ORDER BY started_at DESC, rowid DESC LIMIT 1) AS last_execution_id,"
            " MAX(x.started_at) AS last_started_at"
            " FROM playbook_versions AS v JOIN playbooks AS p ON p.id = v.playbook_id"
            " LEFT JOIN executions AS x ON x.playbook_id = v.playbook_id"
            "  AND x.playbook_version = v.version AND x.kind = 'learned_fix'"
            "  AND x.status != 'running' AND x.started_at >= ? AND x.started_at < ?"
            " WHERE v.active = 0 AND NOT EXISTS (SELECT 1 FROM playbook_versions AS a"
            "  WHERE a.playbook_id = v.playbook_id AND a.active = 1)"
            " AND EXISTS (SELECT 1 FROM executions AS k"
            "  WHERE k.playbook_id = v.playbook_id AND k.kind = 'learned_fix')"
            " GROUP BY v.playbook_id, v.version"
            " HAVING ? = '' OR COUNT(x.id) > 0"
            " ORDER BY last_started_at DESC, v.playbook_id",
            (low, high, low, high, low),
        )
        return _records(LearnedFixPlaybook, rows)

    async def newest_version(self, playbook_id: str) -> str | None:
        """The newest stored version of a playbook, active or not: a learned fix has no
        active version, yet its executions link to it."""
        row = await self._db.fetchone(
            "SELECT version FROM playbook_versions WHERE playbook_id = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (playbook_id,),
        )
        return None if row is None else str(row["version"])


@dataclass(frozen=True)
class PageStore:
    """What the admin pages and ``why`` read, and the one record a page writes besides
    the use cases (a technician's resolution, through the failure memory's repository)."""

    views: RecordViews
    reports: WeeklyReports
    memory: MemoryRepository
    events: EventLog  # the API's paged executions and step events

    @classmethod
    def of(cls, db: Database) -> PageStore:
        return cls(RecordViews(db), WeeklyReports(db), MemoryRepository(db), EventLog(db))
