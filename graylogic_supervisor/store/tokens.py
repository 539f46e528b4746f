"""API tokens: a script's credential for ``/api/v1``, one per use, named by a label.

A token is 256 random bits (``secrets``), shown once when it is made. The store keeps
only its SHA-256: for a secret of that much entropy a fast hash is enough (no one can
guess their way to a preimage, so the slow, salted KDF passwords need buys nothing,
and a lookup by hash stays one index probe per request); a copy of the database opens
nothing. The row found by hash is compared again in constant time.

A token acts as its user, with the user's role at the time of the request: a user
disabled (or no longer there) takes their tokens' access with them. Making and
revoking a token are audited, in the same transaction as the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database, Row
from graylogic_supervisor.store.users import UserError

TOKEN_PREFIX = "gls_"  # noqa: S105  # nosec B105: a prefix, not a secret
"""Makes a leaked token recognisable to secret scanners and to the person who finds it."""
MAX_LABEL = 100


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """One token as listed: never the token itself."""

    id: str
    user: str
    label: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None

    @classmethod
    def of(cls, row: Row) -> ApiToken:
        return cls(
            id=row["id"],
            user=row["user"],
            label=row["label"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            revoked_by=row["revoked_by"],
        )

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= isoformat(now):
            return "expired"
        return "active"


@dataclass(frozen=True)
class TokenHolder:
    """Who a presented token speaks for, as the user stands now."""

    user: str
    role: str
    token_id: str
    expires_at: str | None


class TokenRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        user: str,
        label: str,
        *,
        by: str,
        now: datetime,
        lifetime: timedelta | None,
        audit: AuditLog,
    ) -> tuple[str, ApiToken]:
        """A new token for ``user`` (who must exist and be enabled); returns the token,
        to be shown once, and its row. Audited as ``token.create``."""
        label = label.strip()
        if not label or len(label) > MAX_LABEL:
            raise UserError(f"a token's label is 1 to {MAX_LABEL} characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = "tok-" + secrets.token_hex(6)
        expires = None if lifetime is None else isoformat(now + lifetime)
        made = ApiToken(token_id, user, label, isoformat(now), by, expires, None, None)

        async def insert(conn: aiosqlite.Connection) -> tuple[ApiToken, list[AuditEntry]]:
            async with conn.execute("SELECT disabled FROM users WHERE name = ?", (user,)) as cursor:
                found = await cursor.fetchone()
            if found is None or found[0]:
                raise UserError(f"no enabled user {user!r}")
            await conn.execute(
                "INSERT INTO api_tokens (id, token_hash, user, label, created_at, created_by,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, token_hash(token), user, label, made.created_at, by, expires),
            )
            detail = {"token": token_id, "label": label, "expires_at": expires}
            return made, [AuditEntry(by, "token.create", user, detail, now)]

        return token, await audit.record(insert)

    async def revoke(self, token_id: str, *, by: str, now: datetime, audit: AuditLog) -> ApiToken:
        """Revoke a token that is not revoked yet; audited as ``token.revoke``."""

        async def revoke(conn: aiosqlite.Connection) -> tuple[ApiToken, list[AuditEntry]]:
            cursor = await conn.execute(
                "UPDATE api_tokens SET revoked_at = ?, revoked_by = ?"
                " WHERE id = ? AND revoked_at IS NULL",
                (isoformat(now), by, token_id),
            )
            if cursor.rowcount != 1:
                raise UserError(f"no token {token_id!r} that is not revoked already")
            async with conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)) as rows:
                row = await rows.fetchone()
            assert row is not None
            token = ApiToken.of(row)
            detail = {"token": token_id, "label": token.label}
            return token, [AuditEntry(by, "token.revoke", token.user, detail, now)]

        return await audit.record(revoke)

    async def list(self, user: str | None = None) -> list[ApiToken]:
        """Tokens, newest first; one user's when ``user`` is given."""
        if user is None:
            rows = await self._db.fetchall(
                "SELECT * FROM api_tokens ORDER BY created_at DESC, rowid DESC"
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM api_tokens WHERE user = ? ORDER BY created_at DESC, rowid DESC",
                (user,),
            )
        return [ApiToken.of(row) for row in rows]

    async def holder(self, token: str, now: datetime) -> TokenHolder | None:
        """Whom ``token`` speaks for now, or None: unknown, revoked, expired, or its user
        disabled or gone."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = token_hash(token)
        row = await self._db.fetchone(
            "SELECT t.id, t.token_hash, t.user, t.expires_at, u.role FROM api_tokens AS t"
            " JOIN users AS u ON u.name = t.user"
            " WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.disabled = 0"
            " AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (digest, isoformat(now)),
        )
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            return None
        return TokenHolder(row["user"], row["role"], row["id"], row["expires_at"])
