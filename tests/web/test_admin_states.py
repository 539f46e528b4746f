"""What the dashboard and /escalations say of held, maintenance and acknowledged states,
learned-fix playbooks on the pages, and the HTML 404 for an unknown id: over real HTTP
semantics (httpx against the ASGI app) with a real store. The browser sees the same in
``test_browser_states.py``; these are the fast, exact checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.memory.learned import learned_playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.web.test_admin_auth import client, log_in, session_csrf

__all__ = ["client"]  # the fixture, used by name


def now() -> datetime:
    return datetime.now(UTC)  # the app's clock is the system's


async def an_incident(db: Database, incident_id: str = "inc-1") -> str:
    """An open incident of mqtt (the app's one component, unhealthy and recovering)."""
    stamp = isoformat(now())
    await db.execute(
        "INSERT INTO failures (id, component, error_id, severity, message, detected_at)"
        " VALUES (?, 'mqtt', 'ERR-INFRA-MQTT-001', 'high', 'broker down', ?)",
        (f"fail-{incident_id}", stamp),
    )
    await IncidentRepository(db).open(
        incident_id, "mqtt", "ERR-INFRA-MQTT-001", f"fail-{incident_id}", detail="", now=now()
    )
    return incident_id


async def verdict(db: Database, incident_id: str, *, allowed: bool, detail: str) -> None:
    await db.execute(
        "INSERT INTO viability_evaluations (incident_id, component, evaluated_at, allowed,"
        " reason, detail, attempts_in_window, max_attempts, termination_rate, breaker)"
        " VALUES (?, 'mqtt', ?, ?, ?, ?, 0, 3, NULL, 'closed')",
        (incident_id, isoformat(now()), int(allowed), "ok" if allowed else "safe_mode", detail),
    )


async def test_a_held_recovery_reads_held_with_why_until_a_verdict_allows_a_run(
    client: httpx.AsyncClient, db: Database
) -> None:
    await log_in(client, "ada")
    incident = await an_incident(db)
    await verdict(db, incident, allowed=False, detail="safe mode since 09:00 (rewiring)")
    page = (await client.get("/")).text
    assert "<b>held</b>: safe mode since 09:00 (rewiring)" in page
    assert "<b>recovering</b>" not in page
    assert (await client.get("/api/v1/dashboard")).json()["components"]["mqtt"]["state"] == "held"

    await verdict(db, incident, allowed=True, detail="within the budget")
    page = (await client.get("/")).text
    assert "<b>recovering</b>" in page and "<b>held</b>" not in page


async def test_a_maintenance_window_is_shown_with_its_end_and_reason_and_upcoming_ones_listed(
    client: httpx.AsyncClient, db: Database
) -> None:
    await log_in(client, "ada")
    controls = ControlRepository(db, AuditLog(db))
    await controls.start_maintenance("mqtt", 3600, "replacing the relay", by="tess", now=now())
    tomorrow = now() + timedelta(days=1)
    await db.execute(
        "INSERT INTO maintenance_windows (id, component, starts_at, ends_at, reason, created_by)"
        " VALUES ('mw-later', '*', ?, ?, 'firmware update', 'tess')",
        (isoformat(tomorrow), isoformat(tomorrow + timedelta(hours=2))),
    )
    [window] = [w for w in await controls.windows() if w["component"] == "mqtt"]
    page = (await client.get("/")).text
    assert f"<b>maintenance</b>: until {window['ends_at']}: replacing the relay (tess)" in page
    assert "firmware update" in page and "(upcoming)" in page
    data = (await client.get("/api/v1/dashboard")).json()["maintenance"]
    assert [w["id"] for w in data["current"]] == [window["id"]]
    assert [w["id"] for w in data["upcoming"]] == ["mw-later"]


async def test_an_acknowledged_escalation_stays_shown_until_its_fault_clears(
    client: httpx.AsyncClient, db: Database
) -> None:
    escalations = EscalationRepository(db, AuditLog(db))
    incident = await an_incident(db)
    escalation = await escalations.raise_(incident, "mqtt", "high", "broker down", now=now())

    await log_in(client, "vic")
    listing = await client.get("/escalations")
    assert escalation in listing.text and "Acknowledge</button>" not in listing.text
    refused = await client.post(
        f"/escalations/{escalation}/acknowledge", data={"csrf_token": session_csrf(listing.text)}
    )
    assert refused.status_code == 403

    await log_in(client, "ada")
    listing = await client.get("/escalations")
    assert "open: calling people" in listing.text and "Acknowledge</button>" in listing.text
    taken = await client.post(
        f"/escalations/{escalation}/acknowledge",
        data={"csrf_token": session_csrf(listing.text), "back": "/escalations"},
    )
    assert (taken.status_code, taken.headers["location"]) == (303, "/escalations")
    again = await client.post(
        f"/escalations/{escalation}/acknowledge",
        data={"csrf_token": session_csrf(listing.text), "back": "https://elsewhere.example/"},
    )
    assert again.status_code == 404  # taken already: nothing to redirect anywhere
    dashboard = (await client.get("/")).text
    assert "Acknowledged, the fault remains" in dashboard and "acknowledged by ada at" in dashboard

    await escalations.close_for_incident(incident, now())
    dashboard = (await client.get("/")).text
    assert "acknowledged by ada" not in dashboard
    listing = (await client.get("/escalations")).text
    closed = listing[listing.index('id="escalations-closed"') :]
    assert escalation in closed and "(acknowledged by ada at" in closed


async def test_an_acknowledgement_returns_only_to_a_page_of_ours(
    client: httpx.AsyncClient, db: Database
) -> None:
    escalations = EscalationRepository(db, AuditLog(db))
    escalation = await escalations.raise_(await an_incident(db), "mqtt", "high", "x", now=now())
    await log_in(client, "ada")
    page = (await client.get("/")).text
    taken = await client.post(
        f"/escalations/{escalation}/acknowledge",
        data={"csrf_token": session_csrf(page), "back": "https://elsewhere.example/"},
    )
    assert (taken.status_code, taken.headers["location"]) == (303, "/")


async def test_a_learned_fix_is_listed_opened_and_in_the_weekly_report(
    client: httpx.AsyncClient, db: Database
) -> None:
    fix = learned_playbook(
        "mqtt", "ERR-INFRA-MQTT-001", "restart_service", "mosquitto", actions=builtin_specs()
    )
    assert fix is not None
    await PlaybookVersions(db).register_inactive(fix, "failure-memory", "learned", now())
    await an_incident(db)
    stamp = isoformat(now())
    await db.execute(
        "INSERT INTO executions (id, playbook_id, playbook_version, failure_id, error_id,"
        " component, status, started_at, completed_at, duration_seconds, kind)"
        " VALUES ('exec-learned', ?, ?, 'fail-inc-1', 'ERR-INFRA-MQTT-001', 'mqtt',"
        " 'resolved', ?, ?, 0.2, 'learned_fix')",
        (fix.id, fix.version, stamp, stamp),
    )
    await log_in(client, "ada")
    listing = (await client.get("/playbooks")).text
    learned = listing[listing.index('id="learned-fixes"') :]
    assert f'href="/playbooks/{fix.id}"' in learned and 'href="/executions/exec-learned"' in learned
    page = await client.get(f"/playbooks/{fix.id}")
    assert page.status_code == 200 and 'id="learned-version">1.0.0<' in page.text
    assert "Roll back" not in page.text
    execution = await client.get("/executions/exec-learned")
    assert execution.status_code == 200 and f'href="/playbooks/{fix.id}"' in execution.text
    weekly = (await client.get("/reports/weekly")).text
    assert 'href="/executions/exec-learned"' in weekly[weekly.index('id="learned-fixes"') :]
    [reported] = (await client.get("/api/v1/reports/weekly")).json()["learned_fixes"]
    assert (reported["playbook_id"], reported["executions"], reported["resolved"]) == (
        fix.id,
        1,
        1,
    )
    empty_week = (await client.get("/api/v1/reports/weekly?end=2020-01-01")).json()
    assert empty_week["learned_fixes"] == []


async def test_an_unknown_id_in_a_page_address_answers_an_html_not_found_page(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "vic")
    for path in (
        "/executions/exec-nope",
        "/playbooks/PLAY-NOPE",
        "/recommendations/rec-nope",
        "/rollbacks/rb-nope",
        "/failures/fail-nope",
        "/reports/executions/exec-nope",
    ):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "<h1>Not found</h1>" in answer.text and 'href="/"' in answer.text
