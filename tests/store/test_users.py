"""Users and roles: passwords are stored only as Argon2id hashes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from graylogic_supervisor.passwords import PasswordPool, PasswordsBusy
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.users import UserError, UserRepository

NOW = datetime(2026, 11, 26, tzinfo=UTC)


async def test_a_password_is_kept_only_as_a_salted_argon2id_hash(db: Database) -> None:
    users = UserRepository(db)
    await users.add("ada", "admin", "correct horse battery", NOW)
    await users.add("bob", "viewer", "correct horse battery", NOW)
    rows = await db.fetchall("SELECT name, password_hash FROM users ORDER BY name")
    hashes = [row["password_hash"] for row in rows]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert hashes[0] != hashes[1]  # the same password, salted apart
    assert not any("correct horse" in h for h in hashes)


async def test_only_the_right_password_of_an_enabled_user_signs_in(db: Database) -> None:
    users = UserRepository(db)
    await users.add("ada", "admin", "correct horse battery", NOW)
    user = await users.verify("ada", "correct horse battery")
    assert user is not None and user.role == "admin"
    assert await users.verify("ada", "wrong") is None
    assert await users.verify("nobody", "correct horse battery") is None
    await users.set_password("ada", "another long one")
    assert await users.verify("ada", "correct horse battery") is None
    assert await users.verify("ada", "another long one") is not None
    await db.execute("UPDATE users SET disabled = 1 WHERE name = 'ada'")
    assert await users.verify("ada", "another long one") is None


async def test_roles_are_checked(db: Database) -> None:
    users = UserRepository(db)
    with pytest.raises(UserError, match="unknown role"):
        await users.add("eve", "root", "correct horse battery", NOW)
    await users.add("vic", "viewer", "correct horse battery", NOW)
    with pytest.raises(UserError, match="exists already"):
        await users.add("vic", "admin", "correct horse battery", NOW)
    with pytest.raises(UserError, match="admin or system_owner"):
        await users.require_approver("vic")
    await users.add("olu", "system_owner", "correct horse battery", NOW)
    assert (await users.require_approver("olu")).role == "system_owner"


async def test_hashing_a_password_never_holds_the_event_loop(db: Database) -> None:
    """Argon2 is slow by design; the health probes must keep running during a login."""
    import time

    users = UserRepository(db)
    await users.add("ada", "admin", "correct horse battery", NOW)
    ticks = 0
    longest = 0.0

    async def ticker() -> None:
        nonlocal ticks, longest
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            longest = max(longest, time.perf_counter() - before)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    assert await users.verify("ada", "wrong") is None
    took = time.perf_counter() - started
    task.cancel()
    assert ticks >= 3, (ticks, took)
    assert longest < took / 2  # the loop turned throughout, not once the hashing was over


async def test_a_new_password_ends_the_users_sessions_and_no_one_elses(db: Database) -> None:
    users, sessions = UserRepository(db), SessionRepository(db)
    await users.add("ada", "admin", "correct horse battery", NOW)
    await users.add("vic", "viewer", "correct horse battery", NOW)
    stolen, _ = await sessions.create("ada", NOW, timedelta(hours=12))
    other, _ = await sessions.create("vic", NOW, timedelta(hours=12))
    assert await users.set_password("ada", "another long one") == 1
    assert await sessions.get(stolen, NOW) is None
    assert await sessions.get(other, NOW) is not None
    with pytest.raises(UserError, match="no user"):
        await users.set_password("nobody", "another long one")


async def test_a_disabled_user_loses_sessions_and_logins_until_enabled(db: Database) -> None:
    users, sessions = UserRepository(db), SessionRepository(db)
    await users.add("ada", "admin", "correct horse battery", NOW)
    token, _ = await sessions.create("ada", NOW, timedelta(hours=12))
    assert await users.set_disabled("ada", True) == 1
    rows = await db.fetchall("SELECT token_hash FROM web_sessions")
    assert rows == [] and await sessions.get(token, NOW) is None
    assert await users.verify("ada", "correct horse battery") is None
    assert await users.set_disabled("ada", False) == 0
    assert await users.verify("ada", "correct horse battery") is not None


async def test_a_full_password_pool_refuses_without_hashing(db: Database) -> None:
    slow = PasswordHasher(time_cost=40, memory_cost=8192, parallelism=1)
    async with PasswordPool(workers=1, waiting=0, hasher=slow) as pool:
        users = UserRepository(db, pool)
        await users.add("ada", "admin", "correct horse battery", NOW)
        busy = asyncio.create_task(pool.hash("someone else's"))
        await asyncio.sleep(0)
        with pytest.raises(PasswordsBusy):
            await users.verify("ada", "correct horse battery")
        await busy
        assert pool.hashes_run == 2  # the add and the other one: the refused login hashed nothing
