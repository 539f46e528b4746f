"""Failure memory, learning activity and audit log pages."""

from __future__ import annotations

import httpx

from graylogic_supervisor.store.database import Database
from tests.web.test_admin_auth import log_in, session_csrf
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
    done = await client.post(
        f"/failures/{failure_id}/resolve",
        data={
            "csrf_token": token,
            "fix_action": "restart_service",
            "target": "mosquitto",
            "what": "restarted by hand <b>now</b>",
        },
    )
    assert done.status_code == 303
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
