"""A draft playbook on the admin page: its fixes and who made them, the drafted playbook,
the engine's dry run; approved with the page's form, it is the new playbook's 1.0.0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps
from tests.learning.test_drafts import DRAFT, Site
from tests.web.test_admin_auth import Health1, log_in, session_csrf


@pytest.fixture
async def drafted(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    site = await Site(db).start()
    await site.fixed_by_hand("restart_service", times=2)
    await site.fixed_by_hand("restart_service", by="ben")
    await site.fixed_by_hand("start_service", by="ben")
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    audit = AuditLog(db)
    app = create_app(
        WebDeps(Health1(), frozenset, Metrics("test"), "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(site.learning.users, SessionRepository(db), audit, SystemClock()),
            ControlRepository(db, audit),
            EscalationRepository(db, audit),
            ExecutionRepository(db),
            CommandRepository(db),
            site.versions,
            site.learning,
            lambda: TerminationReading(None, 3, 0),
        ),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http, rec_id


async def test_a_draft_shows_its_evidence_and_dry_run_and_is_approved_from_the_page(
    drafted: tuple[httpx.AsyncClient, str],
) -> None:
    client, rec_id = drafted
    await log_in(client, "ada")
    page = await client.get(f"/recommendations/{rec_id}")
    assert page.status_code == 200
    text = page.text
    assert f'<h1>new_playbook for <a href="/playbooks/{DRAFT}">{DRAFT}</a> none</h1>' in text
    assert "over 4 resolutions by people" in text
    assert 'id="draft-fixes"' in text
    assert 'restart_service nvr-recorder</td><td data-label="Resolved by people">3</td>' in text
    assert "ana (2), ben (1)" in text and 'href="/failures/fail-0001"' in text
    assert '<section id="dry-run">' in text and f"dry run of {DRAFT} 1.0.0" in text
    assert "resolved by restart_service_nvr_recorder" in text
    assert "<h2>The drafted playbook</h2>" in text and "action: check_service" in text
    assert "Approve as trial" not in text  # a new playbook has nothing to be tried beside
    token = session_csrf(text)
    done = await client.post(
        f"/recommendations/{rec_id}/approve",
        data={"csrf_token": token, "trial": "0", "reason": "the recorder hangs weekly"},
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        f"/playbooks/{DRAFT}?approved=1.0.0",
    )
    book = await client.get(done.headers["location"])
    assert book.status_code == 200 and '<b id="active-version">1.0.0</b>' in book.text


async def test_a_viewer_sees_a_draft_and_cannot_approve_it(
    drafted: tuple[httpx.AsyncClient, str],
) -> None:
    client, rec_id = drafted
    await log_in(client, "vic")
    page = await client.get(f"/recommendations/{rec_id}")
    assert page.status_code == 200 and 'id="draft-fixes"' in page.text
    assert "<h2>Decide</h2>" not in page.text
    refused = await client.post(
        f"/recommendations/{rec_id}/approve", data={"csrf_token": session_csrf(page.text)}
    )
    assert refused.status_code == 403
