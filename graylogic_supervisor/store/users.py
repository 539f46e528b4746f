"""People who may use the admin page and approve changes, with their roles.

Passwords are hashed with Argon2id (argon2-cffi's ``PasswordHasher``: a
memory-hard KDF with a random salt per hash) in a
:class:`~graylogic_supervisor.passwords.PasswordPool`, never in the default
executor; the store never sees them. A new password or a disabled account ends
the user's sessions in the same transaction.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import aiosqlite

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.passwords import PasswordPool
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database

ROLES = ("admin", "system_owner", "viewer")
APPROVERS = frozenset({"admin", "system_owner"})
USER_NAME = r"^[a-z_][a-z0-9_.-]{0,31}$"


class UserError(SupervisorError):
    """An unknown user, a role that may not do this, or a name already taken."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: str
    disabled: bool


class UserRepository:
    def __init__(self, db: Database, passwords: PasswordPool | None = None) -> None:
        self._db = db
        self.passwords = passwords or PasswordPool()
        """Where passwords are hashed (its own when none is given: never the default executor)."""

    async def add(self, name: str, role: str, password: str, now: datetime) -> User:
        """A user, unaudited (tests and simulations); people are added with
        ``add_audited``."""
        _check_role(role)
        if await self.get(name) is not None:
            raise UserError(f"user {name!r} exists already")
        password_hash = await self.passwords.hash(password)
        async with self._db.transaction() as conn:
            await _insert_in(conn, name, role, password_hash, now=now)
        return User(name, role, isoformat(now), False)

    async def add_audited(
        self,
        name: str,
        role: str,
        password: str,
        *,
        by: str,
        now: datetime,
        audit: AuditLog,
        first_run: bool = False,
    ) -> User | None:
        """The user and its ``user.add`` entry in one transaction. ``first_run``: only
        while there is no user at all, else None (of two processes starting on an empty
        store at once, one creates it)."""
        _check_role(role)
        password_hash = await self.passwords.hash(password)  # hashed before the lock

        async def add(conn: aiosqlite.Connection) -> tuple[User | None, list[AuditEntry]]:
            if first_run:
                async with conn.execute("SELECT 1 FROM users LIMIT 1") as cursor:
                    if await cursor.fetchone() is not None:
                        return None, []
            else:
                async with conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)) as cursor:
                    if await cursor.fetchone() is not None:
                        raise UserError(f"user {name!r} exists already")
            await _insert_in(conn, name, role, password_hash, now=now)
            detail: dict[str, object] = {"role": role}
            if first_run:
                detail["first_run"] = True
            return User(name, role, isoformat(now), False), [
                AuditEntry(by, "user.add", name, detail, now)
            ]

        return await audit.record(add)

    async def set_password(self, name: str, password: str) -> int:
        """The new password, and the user's sessions ended with it (a stolen session does
        not outlive the password it came from); returns how many sessions ended."""
        password_hash = await self.passwords.hash(password)
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )
            if cursor.rowcount != 1:
                raise UserError(f"no user {name!r}")
            cursor = await conn.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
            return cursor.rowcount

    async def set_disabled(self, name: str, disabled: bool) -> int:
        """Disable (ending the user's sessions in the same transaction) or enable again;
        returns how many sessions ended."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name)
            )
            if cursor.rowcount != 1:
                raise UserError(f"no user {name!r}")
            if not disabled:
                return 0
            cursor = await conn.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
            return cursor.rowcount

    async def get(self, name: str) -> User | None:
        row = await self._db.fetchone(
            "SELECT name, role, created_at, disabled FROM users WHERE name = ?", (name,)
        )
        if row is None:
            return None
        return User(row["name"], row["role"], row["created_at"], bool(row["disabled"]))

    async def all(self) -> list[User]:
        rows = await self._db.fetchall(
            "SELECT name, role, created_at, disabled FROM users ORDER BY name"
        )
        return [User(r["name"], r["role"], r["created_at"], bool(r["disabled"])) for r in rows]

    async def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right (and the account enabled), else None.

        Raises :class:`~graylogic_supervisor.passwords.PasswordsBusy`, having hashed
        nothing, when the pool is full.
        """
        row = await self._db.fetchone(
            "SELECT password_hash FROM users WHERE name = ? AND disabled = 0", (name,)
        )
        if row is None:
            await self.passwords.hash(password)  # the same work as a wrong password: no timing tell
            return None
        if not await self.passwords.verify(row["password_hash"], password):
            return None
        return await self.get(name)

    async def require_approver(self, name: str) -> User:
        """The user, who must exist, be enabled and hold ``admin`` or ``system_owner``."""
        user = await self.get(name)
        if user is None or user.disabled:
            raise UserError(f"no user {name!r} (add one with: graylogic-supervisor user add)")
        if user.role not in APPROVERS:
            raise UserError(
                f"{name} is a {user.role}; approving, rejecting and rolling back need the"
                " admin or system_owner role"
            )
        return user


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


async def _insert_in(
    conn: aiosqlite.Connection, name: str, role: str, password_hash: str, *, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
        (name, role, password_hash, isoformat(now)),
    )


INITIAL_PASSWORD_FILE = "initial-admin-password"  # noqa: S105  # nosec B105: a file name
"""In the state directory: the first admin's password, root-only, until it is changed."""


async def ensure_first_admin(
    users: UserRepository,
    audit: AuditLog,
    clock: Clock,
    state_dir: Path,
    *,
    out: TextIO | None = None,
) -> str | None:
    """On the first run (no user at all), create ``admin`` with a random password.

    The password goes to ``<state_dir>/initial-admin-password`` (mode 0600 from its
    creation), never to the log: under systemd stderr is the journal, which other users
    of the controller may read. Only the file's path is printed on ``out``. The file is
    complete before its name appears, and removed by ``user passwd admin``
    (:func:`forget_first_admin_password`). Returns the password when one was made."""
    if await users.all():
        return None
    password = secrets.token_urlsafe(15)
    final = state_dir / INITIAL_PASSWORD_FILE
    staged = _write_private(state_dir, password)
    try:
        added = await users.add_audited(
            "admin",
            "admin",
            password,
            by="supervisor",
            now=clock.now(),
            audit=audit,
            first_run=True,
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if added is None:  # another process made the first user meanwhile
        staged.unlink(missing_ok=True)
        return None
    staged.replace(final)
    print(
        "graylogic-supervisor: first run: created the admin page user 'admin'; its password"
        f" is in {final} (readable by root only; `graylogic-supervisor user passwd admin`"
        " sets a new one and removes the file)",
        file=out or sys.stderr,
        flush=True,
    )
    return password


def forget_first_admin_password(state_dir: Path) -> Path | None:
    """Remove the first admin's password file once that password no longer works;
    returns its path when there was one."""
    path = state_dir / INITIAL_PASSWORD_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def _write_private(directory: Path, text: str) -> Path:
    """A new file holding ``text``, created 0600 (O_EXCL: never someone else's, never
    wider, not even for an instant), flushed to disk; the caller renames it into place."""
    path = directory / f".{INITIAL_PASSWORD_FILE}.{secrets.token_hex(4)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
