"""Playbook versions (DESIGN.md contract 5): the store, not the file, is the truth.

A YAML file seeds the version it declares. Exactly one version per playbook is
active (a partial unique index enforces it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite
import yaml

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.playbooks.model import SEMVER, Playbook
from graylogic_supervisor.store.database import Database, Row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedOutcome:
    playbook_id: str
    version: str
    action: str  # "created", "added", "unchanged", "kept-store"


def semver_key(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


PARSED_KEPT = 256  # parsed versions kept (a site has tens)


class PlaybookVersions:
    def __init__(self, db: Database) -> None:
        self._db = db
        # A version's definition never changes once stored (an edited file must bump its
        # version), so each is parsed once: validating a playbook compiles its
        # expressions, milliseconds a failure would otherwise wait for every time.
        self._parsed: dict[tuple[str, str], Playbook] = {}
        self._stored: set[tuple[str, str]] = set()  # versions known to be in the store

    def _playbook(self, row: Row) -> Playbook:
        key = (str(row["playbook_id"]), str(row["version"]))
        playbook = self._parsed.get(key)
        if playbook is None:
            playbook = Playbook.model_validate_json(row["definition"])
            if len(self._parsed) >= PARSED_KEPT:
                del self._parsed[next(iter(self._parsed))]  # the oldest parsed
            self._parsed[key] = playbook
        return playbook

    async def seed(
        self, playbook: Playbook, source_yaml: str, source_file: str, now: datetime
    ) -> SeedOutcome:
        """Bring a playbook file into the store.

        A playbook the store has never seen is created at the file's version. A
        file that declares a version the store lacks adds it, and activates it
        when it is newer than the active one (an installer edited the file). A
        version the store already has is left as the store holds it.
        """
        definition = playbook.model_dump_json()
        existing = await self._db.fetchone(
            "SELECT definition FROM playbook_versions WHERE playbook_id = ? AND version = ?",
            (playbook.id, playbook.version),
        )
        if existing is not None:
            if existing["definition"] != definition:
                logger.warning(
                    "%s changed on disk but still declares version %s; the store's copy is kept"
                    " (bump the version to load the change)",
                    source_file,
                    playbook.version,
                    extra={"playbook": playbook.id},
                )
                return SeedOutcome(playbook.id, playbook.version, "kept-store")
            return SeedOutcome(playbook.id, playbook.version, "unchanged")
        active = await self.active_version(playbook.id)
        stamp = isoformat(now)
        activate = active is None or semver_key(playbook.version) > semver_key(active)
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO playbooks (id, name, created_at) VALUES (?, ?, ?)",
                (playbook.id, playbook.name, stamp),
            )
            if activate:
                await conn.execute(
                    "UPDATE playbook_versions SET active = 0 WHERE playbook_id = ?", (playbook.id,)
                )
            await conn.execute(
                "INSERT INTO playbook_versions (playbook_id, version, definition, source_yaml,"
                " source_file, active, created_at, created_by, reason, changes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'file', ?, ?)",
                (
                    playbook.id,
                    playbook.version,
                    definition,
                    source_yaml,
                    source_file,
                    int(activate),
                    stamp,
                    f"seeded from {source_file}",
                    json.dumps({"from_version": active}),
                ),
            )
        action = "created" if active is None else "added"
        logger.info(
            "playbook %s %s %s from %s%s",
            playbook.id,
            playbook.version,
            action,
            source_file,
            " and activated" if activate else "",
            extra={"playbook": playbook.id},
        )
        return SeedOutcome(playbook.id, playbook.version, action)

    async def register_inactive(
        self, playbook: Playbook, created_by: str, reason: str, now: datetime
    ) -> bool:
        """Store a version that must never be selected as a component's playbook.

        Learned fixes are stored so, so their executions are recorded like any
        other. Returns False when the version is already there: known to be, it costs
        no write (a learned fix is registered before each of its runs).
        """
        key = (playbook.id, playbook.version)
        if key in self._stored:
            return False
        stamp = isoformat(now)
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO playbooks (id, name, created_at) VALUES (?, ?, ?)",
                (playbook.id, playbook.name, stamp),
            )
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO playbook_versions (playbook_id, version, definition,"
                " source_yaml, source_file, active, created_at, created_by, reason)"
                " VALUES (?, ?, ?, ?, NULL, 0, ?, ?, ?)",
                (
                    playbook.id,
                    playbook.version,
                    playbook.model_dump_json(),
                    yaml.safe_dump(playbook.model_dump(mode="json"), sort_keys=False),
                    stamp,
                    created_by,
                    reason,
                ),
            )
        self._stored.add(key)  # versions are never deleted
        return cursor.rowcount == 1

    async def active_playbook(self, playbook_id: str) -> Playbook | None:
        row = await self._db.fetchone(
            "SELECT playbook_id, version, definition FROM playbook_versions"
            " WHERE playbook_id = ? AND active = 1",
            (playbook_id,),
        )
        return None if row is None else self._playbook(row)

    async def definition(self, playbook_id: str, version: str) -> Playbook | None:
        row = await self._db.fetchone(
            "SELECT playbook_id, version, definition FROM playbook_versions"
            " WHERE playbook_id = ? AND version = ?",
            (playbook_id, version),
        )
        return None if row is None else self._playbook(row)

    async def active_version(self, playbook_id: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT version FROM playbook_versions WHERE playbook_id = ? AND active = 1",
            (playbook_id,),
        )
        return None if row is None else str(row["version"])

    async def active_playbooks(self) -> list[Playbook]:
        rows = await self._db.fetchall(
            "SELECT playbook_id, version, definition FROM playbook_versions"
            " WHERE active = 1 ORDER BY playbook_id"
        )
        return [self._playbook(row) for row in rows]

    async def source_yaml(self, playbook_id: str, version: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT source_yaml FROM playbook_versions WHERE playbook_id = ? AND version = ?",
            (playbook_id, version),
        )
        return None if row is None else str(row["source_yaml"])

    async def add_version(
        self,
        playbook: Playbook,
        *,
        parent_version: str,
        created_by: str,
        approved_by: str,
        reason: str,
        recommendation_id: str | None,
        changes: Sequence[Mapping[str, Any]],
        now: datetime,
        activate: bool = True,
    ) -> None:
        """Store a version on its own (the learning loop's decisions store theirs in the
        transaction of the decision: ``store/decisions.py``)."""
        version = NewVersion(
            playbook,
            parent_version=parent_version,
            created_by=created_by,
            approved_by=approved_by,
            reason=reason,
            recommendation_id=recommendation_id,
            changes=changes,
            at=now,
            activate=activate,
        )
        async with self._db.transaction() as conn:
            await insert_version_in(conn, version)

    async def version_info(self, playbook_id: str, version: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT playbook_id, version, active, status, parent_version, created_at, created_by,"
            " approved_by, reason, recommendation_id, changes FROM playbook_versions"
            " WHERE playbook_id = ? AND version = ?",
            (playbook_id, version),
        )
        return None if row is None else _info(row)

    async def versions_of(self, playbook_id: str) -> list[dict[str, Any]]:
        """Every version, oldest first by number."""
        rows = await self._db.fetchall(
            "SELECT playbook_id, version, active, status, parent_version, created_at, created_by,"
            " approved_by, reason, recommendation_id, changes FROM playbook_versions"
            " WHERE playbook_id = ?",
            (playbook_id,),
        )
        return sorted((_info(row) for row in rows), key=lambda v: semver_key(v["version"]))


@dataclass(frozen=True, kw_only=True)
class NewVersion:
    """An approved change as a new version: the active one, or (``activate`` False) a
    trial's version waiting beside the active one."""

    playbook: Playbook = field(kw_only=False)
    parent_version: str | None  # None: a new playbook's first version (an approved draft)
    created_by: str
    approved_by: str
    reason: str
    recommendation_id: str | None
    changes: Sequence[Mapping[str, Any]]
    at: datetime
    activate: bool = True


async def insert_version_in(conn: aiosqlite.Connection, version: NewVersion) -> None:
    """Store ``version`` (and make it the active one) inside the caller's transaction."""
    playbook = version.playbook
    if version.activate:
        await conn.execute(
            "UPDATE playbook_versions SET active = 0 WHERE playbook_id = ?", (playbook.id,)
        )
    await conn.execute(
        "INSERT INTO playbook_versions (playbook_id, version, definition, source_yaml,"
        " source_file, active, created_at, created_by, reason, recommendation_id,"
        " changes, parent_version, approved_by)"
        " VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            playbook.id,
            playbook.version,
            playbook.model_dump_json(),
            playbook_yaml(playbook),
            int(version.activate),
            isoformat(version.at),
            version.created_by,
            version.reason,
            version.recommendation_id,
            json.dumps({"from_version": version.parent_version, "changes": list(version.changes)}),
            version.parent_version,
            version.approved_by,
        ),
    )


async def activate_in(
    conn: aiosqlite.Connection, playbook_id: str, version: str, *, failed: str | None = None
) -> None:
    """Make ``version`` the active one inside the caller's transaction; ``failed`` names
    a version to mark failed."""
    await conn.execute(
        "UPDATE playbook_versions SET active = 0 WHERE playbook_id = ?", (playbook_id,)
    )
    cursor = await conn.execute(
        "UPDATE playbook_versions SET active = 1 WHERE playbook_id = ? AND version = ?",
        (playbook_id, version),
    )
    if cursor.rowcount != 1:
        raise KeyError(f"{playbook_id} has no version {version}")
    if failed is not None:
        await conn.execute(
            "UPDATE playbook_versions SET status = 'failed' WHERE playbook_id = ? AND version = ?",
            (playbook_id, failed),
        )


async def active_in(conn: aiosqlite.Connection, playbook_id: str) -> str | None:
    """The active version as the caller's transaction sees it."""
    async with conn.execute(
        "SELECT version FROM playbook_versions WHERE playbook_id = ? AND active = 1",
        (playbook_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else str(row[0])


def _info(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["active"] = bool(data["active"])
    data["changes"] = json.loads(data["changes"]) if data["changes"] else None
    return data


def playbook_yaml(playbook: Playbook) -> str:
    """A version as the YAML an installer would write: defaults left out."""
    return yaml.safe_dump(playbook.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
