"""The admin page's login, sessions, CSRF, rate limit and roles, over real HTTP semantics
(httpx against the ASGI app) with a real store."""

from __future__ import annotations

import re
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
from graylogic_supervisor.store.sessions import LoginLimits, SessionRepository
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PASSWORD = "correct horse battery"


class Health1:
    def snapshot(self) -> dict[str, ComponentHealth]:
        return {
            "mqtt": ComponentHealth(
                "mqtt", Health.UNHEALTHY, "<broker down>", NOW, "ERR-INFRA-MQTT-001"
            )
        }

    def overall(self) -> Health:
        return Health.UNHEALTHY


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    clock = SystemClock()
    audit = AuditLog(db)
    users = UserRepository(db)
    await users.add("ada", "admin", PASSWORD, NOW)
    await users.add("vic", "viewer", PASSWORD, NOW)
    learning = LearningService(
        db, PlaybookVersions(db), audit, builtin_specs(), settings=LearningConfig(), clock=clock
    )
    app = create_app(
        WebDeps(Health1(), lambda: frozenset({"mqtt"}), Metrics("test"), "villa-7", "0.1.0"),
        AdminDeps(
            PageStore.of(db),
            AuthDeps(users, SessionRepository(db), audit, clock),
            ControlRepository(db, audit),
            EscalationRepository(db, audit),
            ExecutionRepository(db),
            CommandRepository(db),
            PlaybookVersions(db),
            learning,
            lambda: TerminationReading(0.125, 16, 2),
        ),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def login_form_token(http: httpx.AsyncClient) -> str:
    page = await http.get("/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


async def log_in(http: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    token = await login_form_token(http)
    return await http.post("/login", data={"csrf_token": token, "user": user, "password": password})


def session_csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


async def test_every_page_but_healthz_sends_a_stranger_to_the_login(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    dashboard = await client.get("/")
    assert (dashboard.status_code, dashboard.headers["location"]) == (303, "/login")
    for path in ("/logout", "/safe-mode/leave", "/escalations/esc-1/acknowledge"):
        refused = await client.post(path, data={"csrf_token": "x"})
        assert refused.status_code == 401, path


async def test_a_login_gives_a_strict_httponly_session_and_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    answer = await log_in(client, "ada")
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("gls_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = await client.get("/")
    assert page.status_code == 200
    assert "ada (admin)" in page.text and "villa-7" in page.text
    assert "&lt;broker down&gt;" in page.text  # escaped
    assert "12.5 %" in page.text and "<b>recovering</b>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame" not in page.text.lower() and "https://" not in page.text  # nothing external


async def test_a_wrong_password_is_refused_and_the_store_has_no_password(
    client: httpx.AsyncClient, db: Database
) -> None:
    answer = await log_in(client, "ada", "wrong")
    assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    assert (await client.get("/")).status_code == 303
    tokens = await db.fetchall("SELECT token_hash FROM web_sessions")
    assert tokens == []


async def test_the_login_form_needs_its_own_token(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    forged = await client.post(
        "/login", data={"csrf_token": "forged", "user": "ada", "password": PASSWORD}
    )
    assert forged.status_code == 403
    assert (await client.get("/")).status_code == 303


async def test_logins_are_rate_limited_even_with_the_right_password_then(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(LoginLimits().per_pair):
        assert (await log_in(client, "ada", "guess")).status_code == 401
    limited = await log_in(client, "ada")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 800
    assert (await client.get("/")).status_code == 303


async def test_a_state_change_needs_the_sessions_csrf_token(
    client: httpx.AsyncClient, db: Database
) -> None:
    await log_in(client, "ada")
    await ControlRepository(db, AuditLog(db)).set_safe_mode(True, "storm", "supervisor", NOW)
    page = await client.get("/")
    assert "Safe mode is on" in page.text and "Leave safe mode" in page.text
    no_token = await client.post("/safe-mode/leave", data={"reason": "ok"})
    assert no_token.status_code == 403
    wrong = await client.post("/safe-mode/leave", data={"reason": "ok", "csrf_token": "nope"})
    assert wrong.status_code == 403
    assert (await ControlRepository(db, AuditLog(db)).safe_mode()).active
    token = session_csrf(page.text)
    no_reason = await client.post("/safe-mode/leave", data={"csrf_token": token, "reason": " "})
    assert no_reason.status_code == 400
    left = await client.post("/safe-mode/leave", data={"csrf_token": token, "reason": "storm over"})
    assert left.status_code == 303
    assert not (await ControlRepository(db, AuditLog(db)).safe_mode()).active
    entries = await AuditLog(db).entries()
    assert ("ada", "safe_mode.leave") in [(e["actor"], e["action"]) for e in entries]


async def test_a_viewer_sees_everything_and_changes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    escalations = EscalationRepository(db, AuditLog(db))
    escalation_id = await escalations.raise_(None, "mqtt", "critical", "broker down", now=NOW)
    await ControlRepository(db, AuditLog(db)).set_safe_mode(True, "storm", "supervisor", NOW)
    await log_in(client, "vic")
    page = await client.get("/")
    assert "broker down" in page.text and "Safe mode is on" in page.text
    assert "Leave safe mode" not in page.text and "Acknowledge" not in page.text
    token = session_csrf(page.text)
    for path, data in (
        ("/safe-mode/leave", {"reason": "x"}),
        (f"/escalations/{escalation_id}/acknowledge", {}),
    ):
        refused = await client.post(path, data={"csrf_token": token, **data})
        assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    assert (await escalations.get(escalation_id))["acknowledged_at"] is None


async def test_an_admin_acknowledges_an_escalation(client: httpx.AsyncClient, db: Database) -> None:
    escalations = EscalationRepository(db, AuditLog(db))
    escalation_id = await escalations.raise_(None, "mqtt", "critical", "broker down", now=NOW)
    await log_in(client, "ada")
    token = session_csrf((await client.get("/")).text)
    done = await client.post(
        f"/escalations/{escalation_id}/acknowledge", data={"csrf_token": token}
    )
    assert done.status_code == 303
    assert (await escalations.get(escalation_id))["acknowledged_by"] == "ada"
    again = await client.post(
        f"/escalations/{escalation_id}/acknowledge", data={"csrf_token": token}
    )
    assert again.status_code == 404


async def test_logout_ends_the_session_for_good(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    page = await client.get("/")
    token = session_csrf(page.text)
    stolen = client.cookies.get("gls_session")
    out = await client.post("/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    client.cookies.set("gls_session", stolen or "")
    assert (await client.get("/")).status_code == 303


async def test_a_malformed_or_oversized_form_is_refused_cleanly(
    client: httpx.AsyncClient,
) -> None:
    big = await client.post(
        "/login",
        content=b"user=" + b"a" * 20_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 400 and "too large" in big.text
    json_body = await client.post("/login", json={"user": "ada"})
    assert json_body.status_code == 400
    binary = await client.post(
        "/login",
        content=b"\xff\xfe\x00",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert binary.status_code in (400, 403) and "Traceback" not in binary.text
