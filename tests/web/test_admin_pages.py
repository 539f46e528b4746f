"""Recommendations, playbooks and executions on the admin page, over a store the real
simulator filled (150 incidents of the already-good scenario)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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

PLAYBOOK = "PLAY-MQTT-RECOVER-001"
NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    sim = await simulation(db, "already-good", seed=2)  # enough failed restarts for a retry
    await run(sim, 150)
    learning = sim.learning
    await learning.users.add("ada", "admin", PASSWORD, NOW)
    await learning.users.add("vic", "viewer", PASSWORD, NOW)
    await learning.analyze("test")
    audit = AuditLog(db)
    app = create_app(
        WebDeps(Health1(), frozenset, Metrics("test"), "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(learning.users, SessionRepository(db), audit, SystemClock()),
            ControlRepository(db, audit),
            EscalationRepository(db, audit),
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


async def first_pending(http: httpx.AsyncClient, kind: str) -> str:
    page = await http.get("/recommendations")
    assert page.status_code == 200
    ids = re.findall(r'href="/recommendations/(rec-[^"]+)">([^<]+)<', page.text)
    for rec_id, _summary in ids:
        detail = await http.get(f"/recommendations/{rec_id}")
        if f"<h1>{kind} for" in detail.text:
            return rec_id
    raise AssertionError(f"no pending {kind}: {ids}")


async def test_a_recommendation_shows_its_evidence_and_before_and_after(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "ada")
    listing = await client.get("/recommendations")
    assert "(n=150)" in listing.text and "set_retry" in listing.text
    rec_id = await first_pending(client, "set_retry")
    page = await client.get(f"/recommendations/{rec_id}")
    assert "over 150 executions" in page.text
    assert re.search(r'href="/executions/exec-[^"]+"', page.text)  # evidence links
    assert "+  retry:" in page.text  # the diff of before and after
    assert "Approve" in page.text and "Reject" in page.text


async def test_approving_on_the_page_makes_the_new_version_active(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    token = session_csrf((await client.get(f"/recommendations/{rec_id}")).text)
    done = await client.post(
        f"/recommendations/{rec_id}/approve", data={"csrf_token": token, "reason": "yes"}
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        f"/playbooks/{PLAYBOOK}?approved=1.0.1",
    )
    page = await client.get(done.headers["location"])
    assert '<b id="active-version">1.0.1</b>' in page.text
    assert "Approved: version 1.0.1 is active." in page.text
    assert "<svg" in page.text and "steps and transitions" in page.text


async def test_a_modified_change_that_does_not_validate_is_shown_and_saves_nothing(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    token = session_csrf((await client.get(f"/recommendations/{rec_id}")).text)
    for change, message in (
        ("type: [unclosed", "not readable YAML"),
        ("[" * 3_000, "nested more than"),  # a RecursionError once: a 500
        ("- a list", "a change is a mapping"),
        ("type: set_retry\nstep_id: nowhere\nretry: {attempts: 2}", "no step &#39;nowhere&#39;"),
        ("type: set_retry\nstep_id: restart\nretry: {attempts: 99}", "retry"),
    ):
        answer = await client.post(
            f"/recommendations/{rec_id}/approve",
            data={"csrf_token": token, "reason": "edited", "change": change},
        )
        assert answer.status_code == 400 and message in answer.text, change[:80]
    page = await client.get(f"/playbooks/{PLAYBOOK}")
    assert '<b id="active-version">1.0.0</b>' in page.text
    fine = await client.post(
        f"/recommendations/{rec_id}/approve",
        data={
            "csrf_token": token,
            "reason": "two more",
            "change": "type: set_retry\nstep_id: restart\nretry: {attempts: 3}",
        },
    )
    assert fine.status_code == 303


async def test_a_rejection_needs_a_reason(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    token = session_csrf((await client.get(f"/recommendations/{rec_id}")).text)
    empty = await client.post(f"/recommendations/{rec_id}/reject", data={"csrf_token": token})
    assert empty.status_code == 400 and "needs a reason" in empty.text
    done = await client.post(
        f"/recommendations/{rec_id}/reject", data={"csrf_token": token, "reason": "not now"}
    )
    assert done.status_code == 303
    assert "rejected" in (await client.get(f"/recommendations/{rec_id}")).text


async def test_a_viewer_reads_the_pages_and_decides_nothing(client: httpx.AsyncClient) -> None:
    await log_in(client, "vic")
    rec_id = await first_pending(client, "set_retry")
    page = await client.get(f"/recommendations/{rec_id}")
    assert "Approve" not in page.text
    token = session_csrf(page.text)
    refused = await client.post(f"/recommendations/{rec_id}/approve", data={"csrf_token": token})
    assert refused.status_code == 403
    playbook = await client.get(f"/playbooks/{PLAYBOOK}")
    assert playbook.status_code == 200 and "Roll back" not in playbook.text
    refused = await client.post(
        f"/playbooks/{PLAYBOOK}/rollback", data={"csrf_token": token, "version": "1.0.0"}
    )
    assert refused.status_code == 403


async def test_a_version_is_rolled_back_from_the_playbook_page(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    token = session_csrf((await client.get(f"/recommendations/{rec_id}")).text)
    await client.post(f"/recommendations/{rec_id}/approve", data={"csrf_token": token})
    page = await client.get(f"/playbooks/{PLAYBOOK}")
    assert "Roll back to 1.0.0" in page.text
    no_reason = await client.post(
        f"/playbooks/{PLAYBOOK}/rollback", data={"csrf_token": token, "version": "1.0.0"}
    )
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    back = await client.post(
        f"/playbooks/{PLAYBOOK}/rollback",
        data={"csrf_token": token, "version": "1.0.0", "reason": "test"},
    )
    assert back.status_code == 303
    page = await client.get(f"/playbooks/{PLAYBOOK}")
    assert '<b id="active-version">1.0.0</b>' in page.text
    diff = await client.get(f"/playbooks/{PLAYBOOK}?old=1.0.0&new=1.0.1")
    assert "+  retry:" in diff.text


async def test_executions_are_filtered_searched_and_explained(
    client: httpx.AsyncClient, db: Database
) -> None:
    await log_in(client, "ada")
    escalated = await client.get("/executions?status=escalated")
    statuses = re.findall(r'<td[^>]* class="(\w+)"[^>]*>\1</td>', escalated.text)
    assert statuses and set(statuses) == {"escalated"}
    ignored = await client.get("/executions?status=drop%20table&since=yesterday")
    assert (
        ignored.status_code == 200
        and len(re.findall(r'href="/executions/exec-', ignored.text)) == 50
    )
    some = (await db.fetchone("SELECT id FROM executions ORDER BY started_at LIMIT 1"))["id"]
    found = await client.get(f"/executions?q={some[-8:]}")
    assert re.findall(r'href="/executions/(exec-[^"]+)"', found.text) == [some]
    page = await client.get(f"/executions/{some}")
    assert "timeline of the steps" in page.text and "check_broker" in page.text
    assert "failure fail-" in page.text  # the decision record (why)
    assert (await client.get("/executions/exec-nope")).status_code == 404


async def test_a_running_execution_can_be_cancelled_from_its_page(
    client: httpx.AsyncClient, db: Database
) -> None:
    executions = ExecutionRepository(db)
    await executions.record_failure(
        "fail-live", "mqtt", "ERR-INFRA-MQTT-001", "critical", message="down", detected_at=NOW
    )
    await executions.start_execution(
        "exec-live",
        PLAYBOOK,
        "1.0.0",
        "fail-live",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )
    await log_in(client, "ada")
    page = await client.get("/executions/exec-live")
    assert 'http-equiv="refresh"' in page.text and "Cancel" in page.text
    token = session_csrf(page.text)
    no_reason = await client.post(
        "/executions/exec-live/control", data={"csrf_token": token, "command": "cancel"}
    )
    assert no_reason.status_code == 400
    bad = await client.post(
        "/executions/exec-live/control",
        data={"csrf_token": token, "command": "explode", "reason": "x"},
    )
    assert bad.status_code == 400
    done = await client.post(
        "/executions/exec-live/control",
        data={"csrf_token": token, "command": "cancel", "reason": "wrong target"},
    )
    assert done.status_code == 303
    [command] = await CommandRepository(db).pending()
    assert (command.execution_id, command.command, command.issued_by) == (
        "exec-live",
        "cancel",
        "ada",
    )
