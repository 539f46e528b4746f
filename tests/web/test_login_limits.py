"""A burst of logins cannot starve supervision or guess its way in (issue 13): the attempt
is reserved before hashing, per (user, address), and the hash runs in a bounded pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.passwords import PasswordPool
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.sessions import LoginLimits, SessionRepository
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps
from tests.web.test_admin_auth import NOW, PASSWORD, Health1, log_in

LIMITS = LoginLimits()


@dataclass
class Site:
    app: Starlette
    db: Database
    pool: PasswordPool
    users: UserRepository
    metrics: Metrics

    def client(self, address: str = "10.0.0.9") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    def refused(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "graylogic_supervisor_login_refused_total", {"reason": reason}
        )
        return value or 0.0


async def build(db: Database, pool: PasswordPool) -> Site:
    clock, audit, metrics = SystemClock(), AuditLog(db), Metrics("test")
    users = UserRepository(db, pool)
    await users.add("ada", "admin", PASSWORD, NOW)
    learning = LearningService(
        db, PlaybookVersions(db), audit, builtin_specs(), settings=LearningConfig(), clock=clock
    )
    app = create_app(
        WebDeps(Health1(), frozenset, metrics, "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(users, SessionRepository(db), audit, clock, metrics=metrics),
            ControlRepository(db, audit),
            EscalationRepository(db, audit),
            ExecutionRepository(db),
            CommandRepository(db),
            PlaybookVersions(db),
            learning,
            lambda: TerminationReading(None, 0, 0),
        ),
    )
    return Site(app, db, pool, users, metrics)


@pytest.fixture
async def site(db: Database) -> AsyncIterator[Site]:
    async with PasswordPool() as pool:  # the daemon's default: 1 worker, 2 waiting
        yield await build(db, pool)


async def audited(db: Database, action: str) -> int:
    return sum(1 for e in await AuditLog(db).entries() if e["action"] == action)


async def test_150_concurrent_guesses_check_at_most_the_limit(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    hashed_before = site.pool.hashes_run
    async with site.client() as guesser:
        answers = await asyncio.gather(*(log_in(guesser, "ada", f"guess {i}") for i in range(150)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429, 503}
    assert 1 <= statuses.count(401) <= LIMITS.per_pair
    assert site.pool.hashes_run - hashed_before == statuses.count(401) <= LIMITS.per_pair
    assert all("retry-after" in a.headers for a in answers if a.status_code in (429, 503))
    # Each checked guess is audited; the refused ones are counted, and logged once.
    assert await audited(site.db, "session.login_failed") == statuses.count(401)
    refused = statuses.count(429) + statuses.count(503)
    assert site.refused("limit") + site.refused("busy") == refused
    refusal_logs = [r for r in caplog.records if "login(s) refused" in r.getMessage()]
    assert len(refusal_logs) == 1


async def test_a_guesser_at_one_address_does_not_lock_the_user_out_elsewhere(
    site: Site,
) -> None:
    async with site.client("10.0.0.9") as guesser:
        for _ in range(LIMITS.per_pair):
            assert (await log_in(guesser, "ada", "guess")).status_code == 401
        assert (await log_in(guesser, "ada")).status_code == 429  # even the right password
    async with site.client("10.0.0.2") as owner:
        answer = await log_in(owner, "ada")
        assert (answer.status_code, answer.headers["location"]) == (303, "/")


async def test_a_full_password_pool_answers_503_at_once_and_counts_nothing(db: Database) -> None:
    slow = PasswordHasher(time_cost=40, memory_cost=8192, parallelism=1)
    async with PasswordPool(workers=1, waiting=0, hasher=slow) as pool:
        site = await build(db, pool)
        busy = asyncio.create_task(pool.hash("someone else's login"))
        await asyncio.sleep(0)
        async with site.client() as owner:
            answer = await log_in(owner, "ada")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        await busy
        assert pool.hashes_run == 2  # the user's creation and the other one
        assert await db.fetchall("SELECT id FROM login_attempts") == []
        assert site.refused("busy") == 1
        async with site.client() as owner:
            assert (await log_in(owner, "ada")).status_code == 303  # room again


async def test_a_password_change_ends_a_session_already_open(site: Site) -> None:
    async with site.client() as browser:
        assert (await log_in(browser, "ada")).status_code == 303
        assert (await browser.get("/")).status_code == 200
        await site.users.set_password("ada", "a brand new password")
        assert (await browser.get("/")).status_code == 303  # back to the login
        assert (await log_in(browser, "ada", "a brand new password")).status_code == 303


async def test_a_long_user_name_is_cut_before_it_is_stored_or_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with site.client() as guesser:
        assert (await log_in(guesser, "x" * 10_000, "guess")).status_code == 401
    rows = await site.db.fetchall("SELECT user FROM login_attempts")
    assert [len(r["user"]) for r in rows] == [64]
    assert all(len(r.getMessage()) < 500 for r in caplog.records)
