"""The learning loop's decisions, each ONE transaction with its rows and its audit entry.

An approval writes a new version, takes the active flag from the old one, marks
its recommendation decided (and may start a trial); a rollback moves the active
flag back, remembers the discarded changes as rejected and records itself. Each
commits together with the audit entry that says who did it, or not at all: a
crash, a full disk past the reserve or a failing audit insert leaves no active
version whose recommendation is still pending, nor a decision nobody audited.

Each use case checks, inside its ``BEGIN IMMEDIATE`` transaction, that what it
decided on still holds (the recommendation still pending, the version it
replaces still active, no other trial running). When another process or person
got there first it raises ``DecidedMeanwhile`` and the transaction rolls back:
of two approvals at once exactly one wins, with one audit entry, and nothing of
the other is left to undo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.states import RecommendationStatus, TrialStatus
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.trials import NewTrial, TrialEnd, end_in, start_in
from graylogic_supervisor.store.versions import (
    NewVersion,
    activate_in,
    active_in,
    insert_version_in,
)


class DecidedMeanwhile(SupervisorError):
    """What a decision was made on changed before it committed (another person or
    process decided first); nothing of it was written."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    """A recommendation's decision; ``change`` is the change as approved when a person
    modified it."""

    recommendation_id: str
    status: RecommendationStatus
    by: str
    reason: str
    at: datetime
    new_version: str | None = None
    change: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A change held back until its evidence grows: rejected by a person, dropped from a
    trial, or discarded by a rollback (``kind`` ``rolled_back``)."""

    playbook_id: str
    change_key: str
    recommendation_id: str
    kind: str
    version: str | None
    by: str
    at: datetime
    reason: str
    executions: int  # the playbook's counted executions at the time


@dataclass(frozen=True, kw_only=True)
class Rollback:
    """``from_version`` (which must still be active) replaced by ``to_version``;
    ``failed`` marks ``from_version`` failed (an automatic rollback)."""

    id: str
    playbook_id: str
    from_version: str
    to_version: str
    by: str
    reason: str
    at: datetime
    report: Mapping[str, Any]
    failed: bool = False
    rejections: Sequence[Rejected] = field(default_factory=tuple)


class LearningDecisions:
    """Approve, reject, roll back, start and end trials: each with its audit entry."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def approve(
        self,
        decision: Decision,
        version: NewVersion,
        *,
        trial: NewTrial | None,
        entries: Sequence[AuditEntry],
    ) -> None:
        """The recommendation approved, its version stored (and active, or on ``trial``
        beside the active one), and ``entries``; raises ``DecidedMeanwhile`` (nothing
        written) when the recommendation was decided, the active version replaced or
        another trial started meanwhile."""
        playbook_id = version.playbook.id

        async def approve(conn: aiosqlite.Connection) -> tuple[None, Sequence[AuditEntry]]:
            await _decide_in(conn, decision)
            if await active_in(conn, playbook_id) != version.parent_version:
                raise DecidedMeanwhile(
                    f"the active version of {playbook_id} is no longer"
                    f" {version.parent_version}: it changed meanwhile"
                )
            if version.parent_version is None:  # a new playbook (an approved draft)
                await _new_playbook_in(conn, version)
            await insert_version_in(conn, version)
            if trial is not None and not await start_in(conn, trial):
                raise DecidedMeanwhile(f"{playbook_id} started another trial meanwhile")
            return None, entries

        await self._audit.record(approve)

    async def reject(self, decision: Decision, rejection: Rejected, *, entry: AuditEntry) -> None:
        """The recommendation rejected, the change remembered as rejected, and ``entry``;
        ``DecidedMeanwhile`` when it was decided meanwhile."""

        async def reject(conn: aiosqlite.Connection) -> tuple[None, list[AuditEntry]]:
            await _decide_in(conn, decision)
            await _reject_in(conn, rejection)
            return None, [entry]

        await self._audit.record(reject)

    async def roll_back(self, rollback: Rollback, *, entry: AuditEntry) -> None:
        """``rollback`` made and recorded with its rejections and ``entry``;
        ``DecidedMeanwhile`` when ``from_version`` is no longer the active one."""

        async def roll_back(conn: aiosqlite.Connection) -> tuple[None, list[AuditEntry]]:
            active = await active_in(conn, rollback.playbook_id)
            if active != rollback.from_version:
                raise DecidedMeanwhile(
                    f"{rollback.playbook_id} {rollback.from_version} is no longer active"
                    f" ({active} is): it changed meanwhile"
                )
            await activate_in(
                conn,
                rollback.playbook_id,
                rollback.to_version,
                failed=rollback.from_version if rollback.failed else None,
            )
            for rejection in rollback.rejections:
                await _reject_in(conn, rejection)
            await _rollback_row_in(conn, rollback)
            return None, [entry]

        await self._audit.record(roll_back)

    async def retire(self, rollback: Rollback, *, entry: AuditEntry) -> None:
        """A new playbook's only version deactivated and marked failed (its failures are
        escalated again, as before it was approved), recorded as a rollback to
        ``to_version`` ``none`` with its rejections and ``entry``; ``DecidedMeanwhile``
        when ``from_version`` is no longer active."""

        async def retire(conn: aiosqlite.Connection) -> tuple[None, list[AuditEntry]]:
            active = await active_in(conn, rollback.playbook_id)
            if active != rollback.from_version:
                raise DecidedMeanwhile(
                    f"{rollback.playbook_id} {rollback.from_version} is no longer active"
                    f" ({active} is): it changed meanwhile"
                )
            await conn.execute(
                "UPDATE playbook_versions SET active = 0, status = 'failed'"
                " WHERE playbook_id = ? AND version = ?",
                (rollback.playbook_id, rollback.from_version),
            )
            for rejection in rollback.rejections:
                await _reject_in(conn, rejection)
            await _rollback_row_in(conn, rollback)
            return None, [entry]

        await self._audit.record(retire)

    async def start_trial(
        self, trial: NewTrial, *, version: NewVersion | None, entry: AuditEntry
    ) -> bool:
        """``trial`` started (with its ``version`` stored, when given) and ``entry``;
        False, with nothing written, when the playbook has a running trial already."""

        async def start(conn: aiosqlite.Connection) -> tuple[bool, list[AuditEntry]]:
            if version is not None:
                await insert_version_in(conn, version)
            if not await start_in(conn, trial):
                raise _NotStarted
            return True, [entry]

        try:
            return await self._audit.record(start)
        except _NotStarted:
            return False

    async def end_trial(
        self,
        end: TrialEnd,
        *,
        promote: tuple[str, str, str] | None,
        rejection: Rejected | None,
        entry: AuditEntry,
    ) -> bool:
        """A running trial decided, with ``entry``: ``promote`` (playbook, base version,
        trial version) makes its version the active one, ``rejection`` remembers a change
        judged no better. False, with nothing written, when it had ended already;
        ``DecidedMeanwhile`` when a promotion finds its base no longer active."""
        if (promote is not None) != (end.status == TrialStatus.PROMOTED):
            raise ValueError("a promotion, and only a promotion, names the version it activates")

        async def decide(conn: aiosqlite.Connection) -> tuple[bool, list[AuditEntry]]:
            if not await end_in(conn, end):
                return False, []
            if promote is not None:
                playbook_id, base, trial_version = promote
                if await active_in(conn, playbook_id) != base:
                    raise DecidedMeanwhile(f"{playbook_id} {base} was replaced meanwhile")
                await activate_in(conn, playbook_id, trial_version)
            if rejection is not None:
                await _reject_in(conn, rejection)
            return True, [entry]

        return await self._audit.record(decide)


class _NotStarted(Exception):
    """Rolls back a trial's start that found another trial running."""


async def _decide_in(conn: aiosqlite.Connection, decision: Decision) -> None:
    """The guarded decision: only a pending recommendation is decided."""
    sets = "status = ?, decided_at = ?, decided_by = ?, decision_reason = ?, new_version = ?"
    params: list[Any] = [
        decision.status,
        isoformat(decision.at),
        decision.by,
        decision.reason,
        decision.new_version,
    ]
    if decision.change is not None:
        sets += ", change = ?"
        params.append(json.dumps(decision.change, sort_keys=True))
    cursor = await conn.execute(
        f"UPDATE learning_recommendations SET {sets}"  # noqa: S608  # fixed columns
        " WHERE id = ? AND status = ?",
        (*params, decision.recommendation_id, RecommendationStatus.PENDING),
    )
    if cursor.rowcount != 1:
        raise DecidedMeanwhile(
            f"{decision.recommendation_id} was decided by someone else meanwhile"
        )


async def _rollback_row_in(conn: aiosqlite.Connection, rollback: Rollback) -> None:
    await conn.execute(
        "INSERT INTO version_rollbacks (id, playbook_id, from_version, to_version, at,"
        " by, reason, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rollback.id,
            rollback.playbook_id,
            rollback.from_version,
            rollback.to_version,
            isoformat(rollback.at),
            rollback.by,
            rollback.reason,
            json.dumps(rollback.report),
        ),
    )


async def _new_playbook_in(conn: aiosqlite.Connection, version: NewVersion) -> None:
    """A new playbook's row; ``DecidedMeanwhile`` when the store has any version of it."""
    playbook = version.playbook
    async with conn.execute(
        "SELECT 1 FROM playbook_versions WHERE playbook_id = ? LIMIT 1", (playbook.id,)
    ) as cursor:
        if await cursor.fetchone() is not None:
            raise DecidedMeanwhile(f"the store has {playbook.id} already")
    await conn.execute(
        "INSERT OR IGNORE INTO playbooks (id, name, created_at) VALUES (?, ?, ?)",
        (playbook.id, playbook.name, isoformat(version.at)),
    )


async def _reject_in(conn: aiosqlite.Connection, rejection: Rejected) -> None:
    await conn.execute(
        "INSERT INTO learning_rejections (playbook_id, change_key, recommendation_id, kind,"
        " version, by, at, reason, executions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rejection.playbook_id,
            rejection.change_key,
            rejection.recommendation_id,
            rejection.kind,
            rejection.version,
            rejection.by,
            isoformat(rejection.at),
            rejection.reason,
            rejection.executions,
        ),
    )
