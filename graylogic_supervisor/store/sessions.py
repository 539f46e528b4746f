"""Admin-page sessions and login attempts.

A session token is 256 random bits handed to the browser once; the store keeps
only its SHA-256, so a copy of the database opens no session. Each session has
its own CSRF token. Login attempts are rows, so the rate limit survives a
restart and counts attempts made through any process.

An attempt is reserved before its password is hashed (:meth:`reserve_attempt`,
one ``BEGIN IMMEDIATE`` transaction that counts and inserts), so concurrent
guesses are counted before any of them is checked: 150 at once check at most
the limit. The limit is per (user, address), so a guesser at one address cannot
lock ``admin`` out everywhere; a ceiling across all pairs bounds the guessing of
many addresses or many names, and lifts after its short window.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database


@dataclass(frozen=True)
class LoginLimits:
    per_pair: int = 5
    """Failed (or still pending) attempts of one user name from one address, per ``window``."""
    window: timedelta = timedelta(minutes=15)
    overall: int = 30
    """Failed attempts of all pairs together, per ``overall_window``: then 429 for everybody."""
    overall_window: timedelta = timedelta(minutes=1)
    pending_for: timedelta = timedelta(minutes=2)
    """How long a reserved attempt counts without an outcome (a crash left it)."""


@dataclass(frozen=True)
class Reservation:
    """A reserved attempt (``attempt_id``), or why none was (``refused``, for how long)."""

    attempt_id: int | None
    refused: Literal["limit", "global_limit"] | None = None
    retry_after_s: int = 0


# What counts toward a limit: failures, and reservations without an outcome yet that
# have not expired.
_COUNT_PAIR = (
    "SELECT COUNT(*), MIN(at) FROM login_attempts WHERE user = ? AND remote = ?"
    " AND ok = 0 AND at > ? AND (pending_until IS NULL OR pending_until > ?)"
)
_COUNT_ALL = (
    "SELECT COUNT(*), MIN(at) FROM login_attempts"
    " WHERE ok = 0 AND at > ? AND (pending_until IS NULL OR pending_until > ?)"
)


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

    async def reserve_attempt(
        self, user: str, remote: str, now: datetime, limits: LoginLimits
    ) -> Reservation:
        """Count this pair's failures and everybody's, and reserve an attempt if both are
        under their limit, in one transaction; the reservation counts as a failure
        until :meth:`finish_attempt`."""
        stamp = isoformat(now)
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                _COUNT_PAIR,
                (user, remote, isoformat(now - limits.window), stamp),
            )
            pair = await cursor.fetchone()
            if pair is not None and pair[0] >= limits.per_pair:
                return Reservation(None, "limit", _wait(pair[1], limits.window, now))
            cursor = await conn.execute(
                _COUNT_ALL,
                (isoformat(now - limits.overall_window), stamp),
            )
            overall = await cursor.fetchone()
            if overall is not None and overall[0] >= limits.overall:
                return Reservation(
                    None, "global_limit", _wait(overall[1], limits.overall_window, now)
                )
            cursor = await conn.execute(
                "INSERT INTO login_attempts (user, remote, at, ok, pending_until)"
                " VALUES (?, ?, ?, 0, ?)",
                (user, remote, stamp, isoformat(now + limits.pending_for)),
            )
            assert cursor.lastrowid is not None
            return Reservation(cursor.lastrowid)

    async def finish_attempt(self, attempt_id: int, ok: bool) -> None:
        """The outcome of a reserved attempt: a success no longer counts."""
        await self._db.execute(
            "UPDATE login_attempts SET ok = ?, pending_until = NULL WHERE id = ?",
            (int(ok), attempt_id),
        )

    async def drop_attempt(self, attempt_id: int) -> None:
        """A reserved attempt that was never checked (the password pool was full)."""
        await self._db.execute("DELETE FROM login_attempts WHERE id = ?", (attempt_id,))

    async def unlock(self, user: str, remote: str | None = None) -> int:
        """Forget ``user``'s failed attempts (from ``remote`` only, when given); returns
        how many were forgotten."""
        if remote is None:
            return await self._db.execute(
                "DELETE FROM login_attempts WHERE ok = 0 AND user = ?", (user,)
            )
        return await self._db.execute(
            "DELETE FROM login_attempts WHERE ok = 0 AND user = ? AND remote = ?", (user, remote)
        )


def _wait(oldest: str | None, window: timedelta, now: datetime) -> int:
    """Whole seconds until the oldest counted attempt leaves the window (at least 1)."""
    if oldest is None:
        return int(window.total_seconds())
    return max(1, int((datetime.fromisoformat(oldest) + window - now).total_seconds()) + 1)
