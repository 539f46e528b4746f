"""Failure memory, learning activity and audit log pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_watch import ChainWatch
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
from tests.web.test_admin_auth import NOW, PASSWORD, Health1, log_in, session_csrf
from tests.web.test_admin_pages import client  # noqa: F401  # the filled store and app


async def test_a_technician_records_a_resolution_on_the_failure_page(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "ada")
    listing = await client.get("/failures?outcome=resolved_by_human")
    assert listing.status_code == 200 and "resolved_by_human" in listing.text
    failure_id = (
        await db.fetchone("SELECT failure_id FROM failure_memory ORDER BY detected_at LIMIT 1")
    )["failure_id"]
    page = await client.get(f"/failures/{failure_id}")
    assert "Record how it was resolved" in page.text
    token = session_csrf(page.text)
    missing = await client.post(
        f"/failures/{failure_id}/resolve", data={"csrf_token": token, "fix_action": "x"}
    )
    assert missing.status_code == 400
    fix = {"csrf_token": token, "target": "mosquitto", "what": "restarted by hand <b>now</b>"}
    typo = await client.post(
        f"/failures/{failure_id}/resolve", data={**fix, "fix_action": "restart_servce"}
    )
    assert typo.status_code == 400
    assert "unknown fix action &#39;restart_servce&#39;; did you mean" in typo.text
    # the supervisor resolved it: kept unless the technician replaces it on purpose
    kept = await client.post(
        f"/failures/{failure_id}/resolve", data={**fix, "fix_action": "restart_service"}
    )
    assert kept.status_code == 409
    assert "was already resolved by supervisor" in kept.text
    assert "Replace the resolution already recorded" in kept.text
    done = await client.post(
        f"/failures/{failure_id}/resolve",
        data={**fix, "fix_action": "restart_service", "force": "1"},
    )
    assert done.status_code == 303, done.text[-3000:]
    page = await client.get(f"/failures/{failure_id}")
    assert "fixed by ada" in page.text and "&lt;b&gt;now&lt;/b&gt;" in page.text
    audit = await client.get("/audit")
    assert "memory.resolve" in audit.text and "verifies" in audit.text


async def test_a_viewer_cannot_record_a_resolution(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "vic")
    failure_id = (await db.fetchone("SELECT failure_id FROM failure_memory LIMIT 1"))["failure_id"]
    page = await client.get(f"/failures/{failure_id}")
    assert "Record how it was resolved" not in page.text
    refused = await client.post(
        f"/failures/{failure_id}/resolve",
        data={"csrf_token": session_csrf(page.text), "fix_action": "x", "what": "y"},
    )
    assert refused.status_code == 403


async def test_learning_activity_shows_what_approvals_achieved(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    page = await client.get("/learning")
    assert page.status_code == 200 and "PLAY-MQTT-RECOVER-001" in page.text
    assert "Improvements applied in the last 30 days" in page.text


async def test_a_tampered_audit_log_is_shown_as_broken(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "ada")
    await db.execute("DROP TRIGGER audit_log_no_update")
    await db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    page = await client.get("/audit")
    assert "does NOT verify at entry 1" in page.text


@pytest.fixture
async def watched(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, AuditLog]]:
    """The page as the daemon wires it: the incremental watch, its own audit thread."""
    worker = ThreadPoolExecutor(1, "audit")
    clock = SystemClock()
    audit = AuditLog(db, worker)
    users = UserRepository(db)
    await users.add("ada", "admin", PASSWORD, NOW)
    app = create_app(
        WebDeps(Health1(), frozenset, Metrics("test"), "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(users, SessionRepository(db), audit, clock),
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
            audit_watch=ChainWatch(audit, clock),
        ),
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as http:
            yield http, audit
    finally:
        worker.shutdown()


async def test_the_audit_page_shows_the_head_and_a_cut_tail_even_with_the_head_file_forged(
    watched: tuple[httpx.AsyncClient, AuditLog], db: Database
) -> None:
    http, audit = watched
    for n in range(5):
        await audit.append("ada", "maintenance.start", "mqtt", {"n": n}, now=NOW)
    await log_in(http, "ada")  # one more entry: session.login
    page = await http.get("/audit")
    head = await audit.last()
    assert "The chain of 6 entries verifies" in page.text
    assert head.hash in page.text  # to compare with the retained MQTT copy
    api = (await http.get("/api/v1/audit")).json()
    assert (api["verified"], api["head"]) == (True, head.as_json())

    await db.execute("DROP TRIGGER audit_log_no_delete")
    await db.execute("DELETE FROM audit_log WHERE seq > 4")
    forged = await audit.last()
    assert audit.head_keeper is not None
    audit.head_keeper.file.path.write_text(json.dumps(forged.as_json()))
    page = await http.get("/audit")
    assert "does NOT verify at entry 5: entries 5..6 were deleted" in page.text
    api = (await http.get("/api/v1/audit")).json()
    assert (api["verified"], api["first_bad_seq"], api["head"]) == (False, 5, None)


async def test_the_audit_page_warns_when_the_head_file_is_missing(
    watched: tuple[httpx.AsyncClient, AuditLog],
) -> None:
    http, audit = watched
    await log_in(http, "ada")
    assert audit.head_keeper is not None
    audit.head_keeper.file.path.unlink()
    page = await http.get("/audit")
    assert "Warning: no head file beside the store" in page.text
    assert (await http.get("/api/v1/audit")).json()["warnings"]


async def test_a_fix_no_action_can_repeat_is_recorded_as_manual(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "ada")
    failure_id = (await db.fetchone("SELECT failure_id FROM failure_memory LIMIT 1"))["failure_id"]
    page = await client.get(f"/failures/{failure_id}")

    done = await client.post(
        f"/failures/{failure_id}/resolve",
        data={"csrf_token": session_csrf(page.text), "what": "replaced the SD card", "force": "1"},
    )

    assert done.status_code == 303
    stored = await db.fetchone(
        "SELECT outcome, record FROM failure_memory WHERE failure_id = ?", (failure_id,)
    )
    assert stored["outcome"] == "resolved_by_human"
    assert json.loads(stored["record"])["resolution"]["fix_action"] is None  # never proposed
    assert "replaced the SD card (manual )" in (await client.get(f"/failures/{failure_id}")).text


async def test_the_target_must_be_a_configured_service_or_component(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]  # the ASGI app under test
    app.state.admin = replace(app.state.admin, fix_targets=frozenset({"mosquitto", "mqtt"}))
    await log_in(client, "ada")
    failure_id = (await db.fetchone("SELECT failure_id FROM failure_memory LIMIT 1"))["failure_id"]
    page = await client.get(f"/failures/{failure_id}")

    refused = await client.post(
        f"/failures/{failure_id}/resolve",
        data={
            "csrf_token": session_csrf(page.text),
            "fix_action": "restart_service",
            "target": "mosquito",
            "what": "restarted",
            "force": "1",
        },
    )

    assert refused.status_code == 400
    assert (
        "unknown target &#39;mosquito&#39;; did you mean &#39;mosquitto&#39;? (configured"
        " services and components: mosquitto, mqtt)"
    ) in refused.text
