"""The JSON API: authentication, CSRF, roles, every decision, and an OpenAPI
description that matches the routes."""

from __future__ import annotations

import re

import httpx

from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from tests.web.test_admin_auth import log_in
from tests.web.test_admin_pages import (
    NOW,
    PLAYBOOK,
    client,  # noqa: F401  # the filled store and app
)


async def schema(http: httpx.AsyncClient) -> dict:  # type: ignore[type-arg]
    answer = await http.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_the_openapi_description_and_the_routes_agree(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "vic")
    described = await schema(client)
    documented = {(p, m.upper()) for p, ops in described["paths"].items() for m in ops}
    app = client._transport.app  # type: ignore[attr-defined]  # the ASGI app under test
    routed = {
        (route.path, method)
        for route in app.routes
        if route.path.startswith("/api/v1/") and route.path != "/api/v1/openapi.json"
        for method in route.methods - {"HEAD"}
    }
    assert documented == routed
    for path, ops in described["paths"].items():
        for name in re.findall(r"\{([^}]+)\}", path):
            for operation in ops.values():
                assert any(p["name"] == name for p in operation.get("parameters", [])), path


async def test_nothing_under_api_v1_answers_a_stranger(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "vic")
    described = await schema(client)
    client.cookies.clear()
    assert (await client.get("/api/v1/openapi.json")).status_code == 401
    for path, ops in described["paths"].items():
        for method in ops:
            answer = await client.request(method, concrete(path), json={})
            assert answer.status_code == 401, (method, path)
            assert "Traceback" not in answer.text
    assert (await client.get("/api/v1/system/health")).status_code == 401
    assert (await client.get("/metrics")).status_code == 401


async def test_a_decision_needs_the_csrf_header_and_a_role(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "vic")
    me = (await client.get("/api/v1/session")).json()
    assert me["role"] == "viewer"
    [rec] = [
        r
        for r in (await client.get("/api/v1/recommendations")).json()
        if r["recommendation_type"] == "set_retry"
    ]
    no_header = await client.post(f"/api/v1/recommendations/{rec['id']}/approve", json={})
    assert no_header.status_code == 403 and "X-CSRF-Token" in no_header.json()["error"]
    viewer = await client.post(
        f"/api/v1/recommendations/{rec['id']}/approve",
        json={},
        headers={"X-CSRF-Token": me["csrf"]},
    )
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]


async def test_approve_reject_and_roll_back_through_the_api(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    recs = (await client.get("/api/v1/recommendations")).json()
    retry = next(r for r in recs if r["recommendation_type"] == "set_retry")
    others = [r for r in recs if r["id"] != retry["id"]]
    bad = await client.post(
        f"/api/v1/recommendations/{retry['id']}/approve",
        json={"change": {"type": "set_retry", "step_id": "nope", "retry": {"attempts": 2}}},
        headers=csrf,
    )
    assert bad.status_code == 400 and "nope" in bad.json()["error"]
    not_json = await client.post(
        f"/api/v1/recommendations/{retry['id']}/approve", content=b"\xff{", headers=csrf
    )
    assert not_json.status_code == 400
    done = await client.post(
        f"/api/v1/recommendations/{retry['id']}/approve", json={"reason": "api"}, headers=csrf
    )
    assert done.json() == {"approved": retry["id"], "version": "1.0.1"}
    if others:
        no_reason = await client.post(
            f"/api/v1/recommendations/{others[0]['id']}/reject", json={}, headers=csrf
        )
        assert no_reason.status_code == 400
    book = (await client.get(f"/api/v1/playbooks/{PLAYBOOK}")).json()
    assert book["active"]["version"] == "1.0.1" and len(book["versions"]) == 2
    back = await client.post(
        f"/api/v1/playbooks/{PLAYBOOK}/rollback",
        json={"version": "1.0.0", "reason": "api"},
        headers=csrf,
    )
    assert back.json() == {"active": "1.0.0", "was": "1.0.1"}
    for version, status in (("1.0.0", 409), ("9.9.9", 404)):  # the active one; none such
        refused = await client.post(
            f"/api/v1/playbooks/{PLAYBOOK}/rollback",
            json={"version": version, "reason": "api"},
            headers=csrf,
        )
        assert refused.status_code == status and version in refused.json()["error"]
    audit = (await client.get("/api/v1/audit")).json()
    assert audit["verified"] is True
    assert {"recommendation.approve", "playbook.rollback"} <= {e["action"] for e in audit["newest"]}


async def test_executions_are_listed_read_and_controlled_through_the_api(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
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
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    running = (await client.get("/api/v1/executions?status=running")).json()
    assert [x["id"] for x in running] == ["exec-live"]
    some = (await client.get("/api/v1/executions?status=resolved")).json()[0]["id"]
    record = (await client.get(f"/api/v1/executions/{some}")).json()
    assert record["steps"] and record["outcome"]["status"] == "resolved"
    assert (await client.get("/api/v1/executions/nope")).status_code == 404
    queued = await client.post(
        "/api/v1/executions/exec-live/control",
        json={"command": "pause", "reason": "look"},
        headers=csrf,
    )
    assert queued.status_code == 202
    refused = await client.post(
        "/api/v1/executions/exec-live/control", json={"command": "pause"}, headers=csrf
    )
    assert refused.status_code == 400
    health = await client.get("/api/v1/system/health")
    assert health.status_code == 200 and health.json()["site"] == "villa-7"


async def test_reports_print_and_answer_in_json(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "ada")
    first = (await db.fetchone("SELECT MAX(started_at) FROM executions"))[0][:10]
    weekly = (await client.get(f"/api/v1/reports/weekly?end={first}")).json()
    [book] = weekly["playbooks"]
    rows = await db.fetchall(
        "SELECT status FROM executions WHERE started_at >= ?", (weekly["period"]["start"],)
    )
    assert book["executions"] == len(rows)
    assert book["resolved"] == sum(1 for r in rows if r["status"] == "resolved")
    assert weekly["failures_by_component"]["mqtt"] == len(rows)
    page = await client.get(f"/reports/weekly?end={first}")
    assert page.status_code == 200 and "@media print" in page.text
    assert (await client.get("/api/v1/reports/weekly?end=someday")).status_code == 400
    some = (await db.fetchone("SELECT id FROM executions LIMIT 1"))["id"]
    report = (await client.get(f"/api/v1/reports/executions/{some}")).json()
    assert report["execution"]["id"] == some and report["why"]
    assert "Execution report" in (await client.get(f"/reports/executions/{some}")).text


async def test_the_dashboard_memory_and_learning_through_the_api(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    from graylogic_supervisor.store.audit import AuditLog
    from graylogic_supervisor.store.controls import ControlRepository
    from graylogic_supervisor.store.escalations import EscalationRepository

    escalation = await EscalationRepository(db, AuditLog(db)).raise_(
        None, "mqtt", "critical", "down", now=NOW
    )
    await ControlRepository(db, AuditLog(db)).set_safe_mode(True, "storm", "supervisor", NOW)
    await log_in(client, "ada")
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    dashboard = (await client.get("/api/v1/dashboard")).json()
    assert dashboard["safe_mode"]["active"] is True and dashboard["pending_recommendations"] >= 1
    assert [e["id"] for e in dashboard["escalations"]] == [escalation]
    assert len(dashboard["executions"]) == 10
    acked = await client.post(
        f"/api/v1/escalations/{escalation}/acknowledge", json={}, headers=csrf
    )
    assert acked.json() == {"acknowledged": escalation}
    no_reason = await client.post("/api/v1/safe-mode/leave", json={}, headers=csrf)
    assert no_reason.status_code == 400
    left = await client.post("/api/v1/safe-mode/leave", json={"reason": "calm"}, headers=csrf)
    assert left.json() == {"left": True}
    memory = (await client.get("/api/v1/failures?outcome=resolved_by_human")).json()
    assert memory["failures"] and {f["outcome"] for f in memory["failures"]} == {
        "resolved_by_human"
    }
    failure_id = memory["failures"][0]["failure_id"]
    detail = (await client.get(f"/api/v1/failures/{failure_id}")).json()
    assert detail["record"]["context"]["failure_id"] == failure_id and detail["executions"]
    missing = await client.post(
        f"/api/v1/failures/{failure_id}/resolve", json={"fix_action": "manual"}, headers=csrf
    )
    assert missing.status_code == 400  # what was done is always asked
    unknown = await client.post(
        f"/api/v1/failures/{failure_id}/resolve",
        json={"fix_action": "restart_servce", "what": "by hand"},
        headers=csrf,
    )
    assert unknown.status_code == 400
    assert "unknown fix action 'restart_servce'; did you mean 'restart_service'?" in unknown.text
    kept = await client.post(
        f"/api/v1/failures/{failure_id}/resolve",
        json={"fix_action": "restart_service", "what": "by hand"},
        headers=csrf,
    )
    assert kept.status_code == 409  # a person resolved it already
    assert "already resolved by" in kept.text and 'send \\"force\\": true' in kept.text
    done = await client.post(
        f"/api/v1/failures/{failure_id}/resolve",
        json={"fix_action": "restart_service", "what": "by hand", "force": True},
        headers=csrf,
    )
    assert done.json() == {"resolved": failure_id}
    assert (await client.get("/api/v1/failures/fail-nope")).status_code == 404
    learning = (await client.get("/api/v1/learning")).json()
    assert learning["since_first_version"][0]["playbook_id"] == PLAYBOOK
