"""The admin page handed to the app as a function: mounted on the first request that
needs it, never answering a guarded route openly before then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.health.monitor import ComponentHealth, Health
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps

NOW = datetime(2026, 11, 26, tzinfo=UTC)


class Healthy:
    def snapshot(self) -> dict[str, ComponentHealth]:
        return {"mqtt": ComponentHealth("mqtt", Health.HEALTHY, "ok", NOW)}

    def overall(self) -> Health:
        return Health.HEALTHY


class Builds:
    """The admin page's collaborators, counting how often they are asked for."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = 0
        self.fail = False

    def __call__(self) -> AdminDeps:
        self.calls += 1
        if self.fail:
            raise RuntimeError("cannot build the admin page")
        db, clock = self.db, SystemClock()
        audit = AuditLog(db)
        return AdminDeps(
            PageStore.of(db),
            AuthDeps(UserRepository(db), SessionRepository(db), audit, clock),
            ControlRepository(db, audit),
            EscalationRepository(db, audit),
            ExecutionRepository(db),
            CommandRepository(db),
            PlaybookVersions(db),
            LearningService(
                db,
                PlaybookVersions(db),
                audit,
                builtin_specs(),
                settings=LearningConfig(),
                clock=clock,
            ),
            lambda: TerminationReading(None, 0, 0),
        )


@pytest.fixture
def builds(db: Database) -> Builds:
    return Builds(db)


@pytest.fixture
async def http(builds: Builds) -> AsyncIterator[httpx.AsyncClient]:
    deps = WebDeps(Healthy(), frozenset, Metrics("test"), "villa-7", "0.1.0")
    app = create_app(deps, builds)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


async def test_healthz_does_not_mount_the_admin_page(
    http: httpx.AsyncClient, builds: Builds
) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert builds.calls == 0


async def test_the_first_guarded_request_mounts_the_page_and_needs_a_login(
    http: httpx.AsyncClient, builds: Builds
) -> None:
    assert (await http.get("/metrics")).status_code == 401
    assert (await http.get("/api/v1/system/health")).status_code == 401
    assert (await http.get("/login")).status_code == 200
    assert builds.calls == 1


async def test_an_admin_page_that_cannot_be_built_answers_500_and_is_tried_again(
    http: httpx.AsyncClient, builds: Builds
) -> None:
    builds.fail = True
    assert (await http.get("/metrics")).status_code == 500
    builds.fail = False
    assert (await http.get("/metrics")).status_code == 401
    assert builds.calls == 2
