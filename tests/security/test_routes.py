"""Every route of the admin page and the API, taken from the app itself, against strangers,
forged and missing CSRF tokens and viewers; and the headers and cookies every answer
carries. A route added later is covered without touching this file, unless it brings a
path parameter this file has no sample for, or is not a plain ``Route``: then it fails
and asks for one.

The store is the one the real simulator filled (``tests/web/test_admin_pages.py``),
with safe mode on, an open escalation and a failure record added, so that a refusal
that let the request through would have something to change; "nothing changed" is a
comparison of every row of every table before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from graylogic_supervisor.config import AdminConfig, default_config_path, load_config
from graylogic_supervisor.domain.memory import Environment, FailureContext, FailureRecord, Resources
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.learning import LearningRepository
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.trials import NewTrial, TrialRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.web.test_admin_auth import log_in
from tests.web.test_admin_pages import (
    NOW,
    PLAYBOOK,
    client,  # noqa: F401  # the filled store and app
)

CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# What a stranger may use, each for a reason; everything else needs a session.
PUBLIC = {
    # The way to get a session; its form carries its own double-submit CSRF token
    # (tests/web/test_admin_auth.py) and failures are rate limited.
    ("GET", "/login"),
    ("POST", "/login"),
    # Liveness for systemd or an orchestrator, which carry no credentials; it answers
    # {"status": "ok"} and nothing about the site.
    ("GET", "/healthz"),
}

# State changes a viewer may make: ending their own session.
VIEWER_MAY = {("POST", "/logout")}

# A body that would do something on every state-changing route, were it let through.
FIELDS = {
    "reason": "security test",
    "command": "cancel",
    "version": "1.0.0",
    "fix_action": "restart_service",
    "target": "mosquitto",
    "what": "restarted it",
}


def routes(http: httpx.AsyncClient) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app under test; HEAD is GET's."""
    app = http._transport.app  # type: ignore[attr-defined]  # the ASGI app under test
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r}: teach tests/security/test_routes.py it"
        assert route.methods, route.path
        for method in sorted(route.methods - {"HEAD"}):
            yield method, route.path


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


async def samples(db: Database) -> dict[str, str]:
    """A real object for each path parameter, so a request let through would change it."""
    escalation = await EscalationRepository(db, AuditLog(db)).raise_(
        None, "mqtt", "critical", "broker down", now=NOW
    )
    await ControlRepository(db, AuditLog(db)).set_safe_mode(True, "storm", "supervisor", NOW)
    context = FailureContext(
        failure_id="fail-1",
        incident_id=None,
        detected_at=NOW,
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        severity="critical",
        message="MQTT broker connection failed",
        other_health={},
        recent_events=[],
        resources=Resources(memory_percent=1, disk_percent=1, cpu_percent=1, load_per_cpu=0),
        environment=Environment(hour=1, weekday=1, uptime_s=1),
    )
    await MemoryRepository(db).save(FailureRecord(context=context), NOW)
    rec = await db.fetchone(
        "SELECT id FROM learning_recommendations WHERE status = 'pending' LIMIT 1"
    )
    execution = await db.fetchone("SELECT id FROM executions ORDER BY started_at DESC LIMIT 1")
    analysis = await db.fetchone("SELECT id FROM learning_analyses LIMIT 1")
    assert rec is not None and execution is not None and analysis is not None
    versions = PlaybookVersions(db)
    active = await versions.active_playbook(PLAYBOOK)
    assert active is not None
    await versions.add_version(
        active.model_copy(update={"version": "1.0.1"}),
        parent_version="1.0.0",
        created_by="workflow_learning",
        approved_by="ada",
        reason="on trial",
        recommendation_id=None,
        changes=[],
        now=NOW,
        activate=False,
    )
    await TrialRepository(db).start(
        NewTrial(
            id="trial-1",
            playbook_id=PLAYBOOK,
            base_version="1.0.0",
            trial_version="1.0.1",
            share=0.2,
            recommendation_id=None,
            by="ada",
            at=NOW,
        )
    )
    await LearningRepository(db).record_rollback(
        "rollback-1",
        PLAYBOOK,
        "1.0.1",
        "1.0.0",
        now=NOW,
        by="ada",
        reason="security test",
        report={"manual": True},
    )
    return {
        "rec_id": rec["id"],
        "playbook_id": PLAYBOOK,
        "execution_id": execution["id"],
        "failure_id": "fail-1",
        "escalation_id": escalation,
        "trial_id": "trial-1",
        "rollback_id": "rollback-1",
        "analysis_id": analysis["id"],
    }


def concrete(path: str, values: dict[str, str]) -> str:
    for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
        assert name in values, f"{path}: add a sample {name} to tests/security/test_routes.py"
        path = path.replace(f"{{{name}}}", values[name])
    return path


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    tables = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {
        t["name"]: [
            tuple(row) for row in await db.fetchall(f'SELECT * FROM "{t["name"]}" ORDER BY rowid')
        ]
        for t in tables
    }


async def change(
    http: httpx.AsyncClient, method: str, path: str, token: str | None
) -> httpx.Response:
    """The request a page form (urlencoded, ``csrf_token``) or a script (JSON,
    ``X-CSRF-Token``) would send; no token at all when ``token`` is None."""
    if is_api(path):
        headers = {} if token is None else {"X-CSRF-Token": token}
        return await http.request(method, path, json=FIELDS, headers=headers)
    data = FIELDS if token is None else {**FIELDS, "csrf_token": token}
    return await http.request(method, path, data=data)


async def csrf_of(http: httpx.AsyncClient) -> str:
    token = (await http.get("/api/v1/session")).json()["csrf"]
    assert isinstance(token, str) and token
    return token


async def test_a_stranger_is_sent_to_the_login_or_refused_on_every_route(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    values = await samples(db)
    every = list(routes(client))
    assert set(every) >= PUBLIC, "the allow-list names a route that no longer exists"
    before = await snapshot(db)
    for cookie in (None, "forged-session-token"):
        client.cookies.clear()
        if cookie is not None:
            client.cookies.set("gls_session", cookie)
        for method, template in every:
            if (method, template) in PUBLIC:
                continue
            path = concrete(template, values)
            answer = await change(client, method, path, "x") if method in CHANGING else None
            if answer is None:
                answer = await client.request(method, path)
            where = (method, path, cookie)
            if method == "GET" and not is_api(path):
                assert answer.status_code == 303, where
                assert answer.headers["location"] == "/login", where
            else:
                assert answer.status_code == 401, where
                assert answer.json() == {"error": "not logged in"}, where
    assert await snapshot(db) == before


async def test_a_method_a_route_does_not_have_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    values = await samples(db)
    await log_in(client, "ada")
    token = await csrf_of(client)
    before = await snapshot(db)
    declared: dict[str, set[str]] = {}
    for method, template in routes(client):
        declared.setdefault(template, set()).add(method)
    for template, methods in declared.items():
        path = concrete(template, values)
        for method in sorted(CHANGING - methods):
            answer = await change(client, method, path, token)
            assert answer.status_code == 405, (method, path)
    assert await snapshot(db) == before


async def test_no_state_change_without_the_sessions_own_csrf_token(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    values = await samples(db)
    await log_in(client, "vic")
    someone_elses = await csrf_of(client)  # valid, but for another session
    client.cookies.clear()
    await log_in(client, "ada")
    own = await csrf_of(client)
    changing = [(m, t) for m, t in routes(client) if m in CHANGING and (m, t) not in PUBLIC]
    assert changing, "no state-changing route found: the enumeration is broken"
    before = await snapshot(db)
    for method, template in changing:
        path = concrete(template, values)
        for token in (None, "", "forged", someone_elses, own[:-1]):
            answer = await change(client, method, path, token)
            assert answer.status_code == 403, (method, path, token)
            assert "CSRF" in answer.json()["error"], (method, path, token)
    assert await snapshot(db) == before
    # The same requests with the right token get past the check (so the 403 above was
    # the token's doing, not a body the route would have refused anyway); logging out last.
    for method, template in sorted(changing, key=lambda route: route[1] == "/logout"):
        path = concrete(template, values)
        answer = await change(client, method, path, own)
        assert answer.status_code not in (401, 403), (method, path, answer.text)
    assert await snapshot(db) != before


async def test_a_viewer_changes_nothing_on_any_route(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    values = await samples(db)
    await log_in(client, "vic")
    token = await csrf_of(client)
    changing = [
        (m, t)
        for m, t in routes(client)
        if m in CHANGING and (m, t) not in PUBLIC and (m, t) not in VIEWER_MAY
    ]
    before = await snapshot(db)
    for method, template in changing:
        path = concrete(template, values)
        answer = await change(client, method, path, token)
        assert answer.status_code == 403, (method, path)
        assert "viewer" in answer.json()["error"], (method, path)
    assert await snapshot(db) == before
    out = await change(client, "POST", "/logout", token)
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert (await client.get("/api/v1/session")).status_code == 401


async def test_every_answer_carries_the_security_headers_and_a_get_changes_nothing(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    values = await samples(db)
    answers = [await client.get("/login"), await client.get("/"), await client.get("/nowhere")]
    await log_in(client, "ada")
    before = await snapshot(db)
    for method, template in routes(client):
        if method == "GET" and template != "/login":
            answers.append(await client.get(concrete(template, values)))
    assert await snapshot(db) == before  # a GET changes nothing, so it needs no CSRF token
    answers.append(await change(client, "POST", "/safe-mode/leave", None))
    for answer in answers:
        where = (answer.request.url.path, answer.status_code)
        assert answer.status_code < 500, where
        headers = answer.headers
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["x-frame-options"] == "DENY", where
        assert headers["referrer-policy"] == "same-origin", where
        assert "no-store" in headers["cache-control"], where
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, where
        assert "default-src 'none'" in policy or "script-src 'none'" in policy, where
        if headers.get("content-type", "").startswith("text/html"):
            assert "form-action 'self'" in policy and "base-uri 'none'" in policy, where
            assert "<script" not in answer.text, where


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_every_cookie_is_httponly_and_strict_and_secure_over_https(
    client: httpx.AsyncClient,  # noqa: F811
    scheme: str,
) -> None:
    client.base_url = httpx.URL(f"{scheme}://test")
    answers = [await client.get("/login"), await log_in(client, "ada")]
    cookies = [c for a in answers for c in a.headers.get_list("set-cookie")]
    assert {c.split("=")[0] for c in cookies} == {"gls_login_csrf", "gls_session"}
    for cookie in cookies:
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert "httponly" in flags and "samesite=strict" in flags, cookie
        assert ("secure" in flags) == (scheme == "https"), cookie


def test_the_admin_server_binds_to_loopback_unless_told_otherwise() -> None:
    assert AdminConfig().bind == "127.0.0.1"
    assert load_config(default_config_path()).admin.bind == "127.0.0.1"
