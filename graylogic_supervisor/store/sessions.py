"""Admin-page sessions and login attempts.

A session token is 256 random bits handed to the browser once; the store keeps
only its SHA-256, so a copy of the database opens no session. Each session has
its own CSRF token. Login attempts are rows, so the rate limit survives a
restart and counts attempts made through any process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    csrf: str
    expires_at: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: str, now: datetime, lifetime: timedelta) -> tuple[str, Session]:
        """A new session for ``user``; returns the token (shown once) and the session."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = isoformat(now + lifetime)
        await self._db.execute(
            "INSERT INTO web_sessions (token_hash, user, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (_hash(token), user, csrf, isoformat(now), expires),
        )
        role = await self._db.fetchone("SELECT role FROM users WHERE name = ?", (user,))
        return token, Session(user, str(role["role"]) if role else "viewer", csrf, expires)

    async def get(self, token: str, now: datetime) -> Session | None:
        """The live session of an enabled user, or None."""
        row = await self._db.fetchone(
            "SELECT s.user, s.csrf, s.expires_at, u.role FROM web_sessions s"
            " JOIN users u ON u.name = s.user"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0",
            (_hash(token), isoformat(now)),
        )
        if row is None:
            return None
        return Session(row["user"], row["role"], row["csrf"], row["expires_at"])

    async def delete(self, token: str) -> None:
        await self._db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (_hash(token),))

    async def purge(self, now: datetime) -> int:
        """Drop expired sessions and login attempts older than a day."""
        count = await self._db.execute(
            "DELETE FROM web_sessions WHERE expires_at <= ?", (isoformat(now),)
        )
        await self._db.execute(
            "DELETE FROM login_attempts WHERE at <= ?", (isoformat(now - timedelta(days=1)),)
        )
        return count

    async def record_attempt(self, user: str, remote: str, ok: bool, now: datetime) -> None:
        await self._db.execute(
            "INSERT INTO login_attempts (user, remote, at, ok) VALUES (?, ?, ?, ?)",
            (user, remote, isoformat(now), int(ok)),
        )

    async def failures_since(self, user: str, remote: str, since: datetime) -> tuple[int, int]:
        """Failed attempts since ``since`` for this user name, and from this address."""
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(user = ?), 0), COALESCE(SUM(remote = ?), 0)"
            " FROM login_attempts WHERE ok = 0 AND at > ?",
            (user, remote, isoformat(since)),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def oldest_failure_since(self, user: str, remote: str, since: datetime) -> str | None:
        row = await self._db.fetchone(
            "SELECT MIN(at) FROM login_attempts WHERE ok = 0 AND at > ?"
            " AND (user = ? OR remote = ?)",
            (isoformat(since), user, remote),
        )
        return None if row is None else row[0]
