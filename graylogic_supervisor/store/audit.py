"""The audit log (DESIGN.md contract 7): append-only and tamper-evident.

Each entry carries the SHA-256 of its own content and of the entry before it,
so changing or removing any entry breaks every hash after it. SQLite triggers
refuse UPDATE and DELETE. Appending reads the last hash and inserts in one
``BEGIN IMMEDIATE`` transaction, so the daemon and the CLI (two processes)
never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database, Row

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, detail: str
) -> str:
    canonical = json.dumps(
        [prev_hash, seq, at, actor, action, subject, detail], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        actor: str,
        action: str,
        subject: str,
        detail: Mapping[str, Any],
        now: datetime,
    ) -> int:
        """Add an entry; returns its sequence number."""
        at = isoformat(now)
        detail_json = json.dumps(dict(detail), sort_keys=True, default=str)

        async def add(conn: aiosqlite.Connection) -> int:
            async with conn.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ) as cursor:
                last = await cursor.fetchone()
            seq = 1 if last is None else int(last[0]) + 1
            prev_hash = GENESIS if last is None else str(last[1])
            digest = entry_hash(prev_hash, seq, at, actor, action, subject, detail_json)
            await conn.execute(
                "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action, subject, detail_json, prev_hash, digest),
            )
            return seq

        # an entry is who did what: on a full disk it goes into the store's reserve
        return await self._db.run_transaction(add)

    async def entries(
        self,
        limit: int = 100,
        subject: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Row]:
        """Newest first. ``action`` matches a whole action or a prefix ending in a dot
        (``memory.`` finds every memory decision); ``since`` and ``until`` bound ``at``."""
        clauses: list[str] = []
        params: list[Any] = []
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
        if actor is not None:
            clauses.append("actor = ?")
            params.append(actor)
        if action is not None:
            if action.endswith("."):
                clauses.append("substr(action, 1, ?) = ?")
                params += [len(action), action]
            else:
                clauses.append("action = ?")
                params.append(action)
        if since is not None:
            clauses.append("at >= ?")
            params.append(isoformat(since))
        if until is not None:
            clauses.append("at < ?")
            params.append(isoformat(until))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        return await self._db.fetchall(
            f"SELECT * FROM audit_log {where}ORDER BY seq DESC LIMIT ?",  # noqa: S608 - fixed clauses
            (*params, limit),
        )

    async def verify(self) -> ChainCheck:
        """Recompute the whole chain."""
        rows = await self._db.fetchall("SELECT * FROM audit_log ORDER BY seq")
        prev_hash = GENESIS
        for expected_seq, row in enumerate(rows, start=1):
            if row["seq"] != expected_seq:
                return ChainCheck(False, len(rows), row["seq"], f"entry {expected_seq} is missing")
            if row["prev_hash"] != prev_hash:
                return ChainCheck(False, len(rows), row["seq"], "does not follow the entry before")
            digest = entry_hash(
                prev_hash,
                row["seq"],
                row["at"],
                row["actor"],
                row["action"],
                row["subject"],
                row["detail"],
            )
            if digest != row["hash"]:
                return ChainCheck(False, len(rows), row["seq"], "its content was changed")
            prev_hash = digest
        return ChainCheck(True, len(rows), None, "ok")
