"""A rollback's investigation report, an earlier rejection and a checked prediction, as
the admin page and the API show them, over a store the real simulator filled: a bad
change approved, rolled back by the rule, a rejection, the evidence tripled."""

from __future__ import annotations

import re
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
from tests.learning.simulated import run, simulation
from tests.web.test_admin_auth import PASSWORD, Health1, log_in, session_csrf
from tests.web.test_admin_pages import NOW, PLAYBOOK


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    sim = await simulation(db, "already-good")
    learning = sim.learning
    await run(sim, 30)
    await learning.users.add("ada", "admin", PASSWORD, NOW)
    await learning.analyze("test")
    first = (await learning.store.listing("pending"))[0]
    # A person edits a recommendation badly (the restart dropped): the rule rolls it back.
    await learning.approve(
        first.id,
        "ada",
        "trust the check",
        {"type": "remove_step", "step_id": "restart", "route_to": "verify"},
    )
    await run(sim, 12)
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    # A rejection, then the evidence triples and the change comes back beside it.
    rejected = (await learning.store.listing("pending"))[0]
    await learning.reject(rejected.id, "ada", "the night shift reads check_broker")
    await run(sim, 90)
    await learning.analyze("test")
    app = create_app(
        WebDeps(Health1(), frozenset, Metrics("test"), "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(learning.users, SessionRepository(db), AuditLog(db), SystemClock()),
            ControlRepository(db, AuditLog(db)),
            EscalationRepository(db, AuditLog(db)),
            ExecutionRepository(db),
            CommandRepository(db),
            sim.versions,
            learning,
            lambda: TerminationReading(None, 3, 0),
        ),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


async def test_a_rollback_report_is_read_on_the_page(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    listing = await client.get("/rollbacks")
    assert listing.status_code == 200
    (rollback_id,) = re.findall(r'href="/rollbacks/(rollback-[^"]+)"', listing.text)
    playbook = await client.get(f"/playbooks/{PLAYBOOK}")
    assert f'href="/rollbacks/{rollback_id}"' in playbook.text  # linked where versions are
    page = await client.get(f"/rollbacks/{rollback_id}")
    assert page.status_code == 200
    text = page.text
    assert "1.1.0 → 1.0.0" in text
    assert "1.0.0 is the closest ancestor of 1.1.0" in text  # the baseline and why
    assert "two-proportion z-test" in text and "Welch t-test" in text  # both tests
    assert "remove_step" in text and "ada" in text  # the change and who approved it
    assert "Steps of 1.0.0" in text and "Steps of 1.1.0" in text
    assert re.search(r'href="/executions/exec-[^"]+"', text)  # unresolved executions
    assert (await client.get("/rollbacks/rollback-nope")).status_code == 404


async def test_a_rollback_report_through_the_api(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/rollbacks")).status_code == 401
    await log_in(client, "ada")
    (rollback,) = (await client.get("/api/v1/rollbacks")).json()
    one = (await client.get(f"/api/v1/rollbacks/{rollback['id']}")).json()
    report = one["report"]
    assert (one["from_version"], one["to_version"], one["by"]) == ("1.1.0", "1.0.0", "supervisor")
    assert report["baseline"]["version"] == "1.0.0"
    assert report["statistics"]["success_rate"]["rollback"] is True
    assert report["versions"][0]["approved_by"] == "ada"
    assert set(report["steps"]) == {"1.0.0", "1.1.0"} and report["unresolved_executions"]
    missing = await client.get("/api/v1/rollbacks/rollback-nope")
    assert missing.status_code == 404
    mine = (await client.get(f"/api/v1/rollbacks?playbook={PLAYBOOK}")).json()
    assert [r["id"] for r in mine] == [rollback["id"]]
    assert (await client.get("/api/v1/rollbacks?playbook=PLAY-OTHER")).json() == []


async def test_a_change_proposed_again_shows_its_earlier_rejection(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "ada")
    recs = (await client.get("/api/v1/recommendations")).json()
    (back,) = [r for r in recs if "earlier_rejection" in r["evidence"]]
    earlier = back["evidence"]["earlier_rejection"]
    assert (earlier["by"], earlier["reason"]) == ("ada", "the night shift reads check_broker")
    page = await client.get(f"/recommendations/{back['id']}")
    assert 'id="earlier-rejection"' in page.text
    assert "the night shift reads check_broker" in page.text
    assert f"{earlier['executions']} executions then" in page.text
    # Deciding it is as before (CSRF-protected).
    token = session_csrf(page.text)
    done = await client.post(
        f"/recommendations/{back['id']}/reject",
        data={"csrf_token": token, "reason": "still no"},
    )
    assert done.status_code == 303


async def test_a_checked_prediction_is_shown_on_its_recommendation(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "ada")
    (approved,) = (await client.get("/api/v1/recommendations?status=approved")).json()
    check = approved["prediction_check"]
    assert (check["version"], check["baseline_version"]) == ("1.1.0", "1.0.0")
    assert check["resolution_time_s"]["realised_change"] > 1000  # technicians every time
    page = await client.get(f"/recommendations/{approved['id']}")
    assert 'id="prediction-check"' in page.text and "Predicted and realised" in page.text
