"""The API keeps to its OpenAPI description: an unknown id is a 404 and a malformed one
a 400, a filter it does not know or a value outside its range is a 400 that names the
field, and every code a bad request can get is in the operation's documented responses."""

from __future__ import annotations

import re
from typing import Any

import httpx
import yaml

from graylogic_supervisor.domain.states import ExecutionStatus, RecommendationStatus
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.web import api
from graylogic_supervisor.web.api_guard import ID_SCHEMA, SCHEMAS
from graylogic_supervisor.web.record_pages import OUTCOMES
from tests.web.test_admin_auth import NOW, client, log_in  # noqa: F401  # the app and store

SOURCE = """\
id: PLAY-TEST-RECOVER-001
name: test
version: 1.0.0
trigger: {component: mqtt, error_ids: [ERR-INFRA-MQTT-001]}
steps:
  - {id: restart, name: Restart, action: restart_service, target: mqtt}
"""
PLAYBOOK = Playbook.model_validate(yaml.safe_load(SOURCE))

VALID_BODIES: dict[str, dict[str, Any] | None] = {
    "/api/v1/recommendations/{rec_id}": None,
    "/api/v1/recommendations/{rec_id}/approve": {"reason": "ok"},
    "/api/v1/recommendations/{rec_id}/reject": {"reason": "no"},
    "/api/v1/playbooks/{playbook_id}": None,
    "/api/v1/playbooks/{playbook_id}/rollback": {"version": "1.0.0", "reason": "back"},
    "/api/v1/rollbacks/{rollback_id}": None,
    "/api/v1/analyses/{analysis_id}": None,
    "/api/v1/executions/{execution_id}": None,
    "/api/v1/executions/{execution_id}/control": {"command": "pause", "reason": "look"},
    "/api/v1/executions/{execution_id}/feedback": {"sufficient": False},
    "/api/v1/failures/{failure_id}": None,
    "/api/v1/failures/{failure_id}/resolve": {"fix_action": "restart_service", "what": "hand"},
    "/api/v1/escalations/{escalation_id}/acknowledge": {},
    "/api/v1/reports/executions/{execution_id}": None,
    "/api/v1/trials/{trial_id}": None,
    "/api/v1/trials/{trial_id}/stop": {"reason": "enough"},
}
"""Every route with an id, and a body that would pass if the id named something."""


async def one_running_execution(db: Database) -> None:
    """``exec-1``, running since NOW, for mqtt's failure ``fail-1``."""
    await PlaybookVersions(db).seed(PLAYBOOK, SOURCE, "test.yaml", NOW)
    executions = ExecutionRepository(db)
    await executions.record_failure(
        "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "critical", message="down", detected_at=NOW
    )
    await executions.start_execution(
        "exec-1",
        PLAYBOOK.id,
        PLAYBOOK.version,
        "fail-1",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        started_at=NOW,
    )


async def described(http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def with_id(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


async def csrf_of(http: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": (await http.get("/api/v1/session")).json()["csrf"]}


async def test_an_unknown_id_is_a_404_on_every_route_that_takes_one(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await csrf_of(client)
    paths = (await described(client))["paths"]
    with_ids = {path for path in paths if "{" in path}
    assert with_ids == set(VALID_BODIES), "a new route with an id needs a line here"
    for path in sorted(with_ids):
        for method in paths[path]:
            answer = await client.request(
                method, with_id(path, "nope-0001"), json=VALID_BODIES[path], headers=csrf
            )
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"], path


async def test_a_malformed_id_is_a_400_that_says_so(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await csrf_of(client)
    paths = (await described(client))["paths"]
    for path in sorted(p for p in VALID_BODIES if p.startswith("/api/v1/") and p in paths):
        if "reports" in path:
            continue  # reports.py's routes are not behind api.py's wrappers
        for malformed in ("x" * 201, "nul%01", "c1%C2%8F", "nl%0A"):
            for method in paths[path]:
                answer = await client.request(
                    method, with_id(path, malformed), json=VALID_BODIES[path], headers=csrf
                )
                assert answer.status_code == 400, (method, path, answer.text)
                assert "malformed" in answer.json()["error"]
    for operations in paths.values():  # and the description says what malformed means
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert parameter["schema"] == ID_SCHEMA, parameter


async def test_an_unknown_status_is_a_400_naming_the_field_and_the_allowed_values(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "vic")
    for query, field, allowed in (
        ("/api/v1/executions?status=bogus", "status", set(ExecutionStatus)),
        ("/api/v1/recommendations?status=bogus", "status", set(RecommendationStatus)),
        ("/api/v1/failures?outcome=bogus", "outcome", set(OUTCOMES)),
    ):
        answer = await client.get(query)
        assert answer.status_code == 400, query
        error = answer.json()["error"]
        assert error.startswith(f"{field} must be one of") and "'bogus'" in error
        assert all(value in error for value in allowed), error
    assert (await client.get("/api/v1/executions?status=running")).status_code == 200
    # An empty value fits no choice and no date: a 400 too, as the schema says
    # (schemathesis found the two disagreeing when an empty one meant "no filter").
    for query, field in (
        ("/api/v1/executions?status=", "status"),
        ("/api/v1/reports/weekly?end=", "end"),
    ):
        empty = await client.get(query)
        assert empty.status_code == 400 and field in empty.json()["error"], query
    assert (await client.get("/api/v1/executions?q=")).status_code == 200  # free text
    # a time that has no UTC equivalent (the store keeps UTC) is refused, not a 500
    for query in ("since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:59:59-01:00"):
        beyond = await client.get(f"/api/v1/events?{query}")
        assert beyond.status_code == 400, query
    for end in ("0001-01-03", "9999-12-31"):  # a week that would leave the calendar
        assert (await client.get(f"/api/v1/reports/weekly?end={end}")).status_code == 400
    assert (await client.get("/api/v1/recommendations?status=all")).status_code == 200


async def test_no_filter_is_dropped_in_silence(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await one_running_execution(db)
    await log_in(client, "vic")
    for query, words in (
        ("/api/v1/executions?colour=red", ["'colour'", "status", "since"]),
        ("/api/v1/executions?since=someday", ["since", "ISO 8601"]),
        ("/api/v1/executions?until=2026-13-45", ["until", "ISO 8601"]),
        (f"/api/v1/executions?q={'x' * 101}", ["q is at most 100"]),
        ("/api/v1/dashboard?status=running", ["'status'", "none"]),
        ("/api/v1/failures?outcom=open", ["'outcom'", "outcome"]),
    ):
        answer = await client.get(query)
        assert answer.status_code == 400, query
        assert all(word in answer.json()["error"] for word in words), answer.text
    found = await client.get("/api/v1/executions?since=2026-11-25&status=running&component=mqtt")
    assert [x["id"] for x in found.json()] == ["exec-1"]
    later = await client.get("/api/v1/executions?since=2026-11-27T00:00:00")
    assert later.json() == []


async def test_the_described_enums_are_the_states_the_store_knows() -> None:
    def enum(handler: Any, name: str) -> set[str]:
        [parameter] = [
            p for p in SCHEMAS.parse_docstring(handler)["parameters"] if p["name"] == name
        ]
        return set(parameter["schema"]["enum"])

    assert enum(api.executions, "status") == set(ExecutionStatus)
    assert enum(api.recommendations, "status") == set(RecommendationStatus) | {"all"}
    assert enum(api.failures, "outcome") == set(OUTCOMES)


async def test_a_required_reason_is_described_as_non_blank_and_refused_blank(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    await log_in(client, "ada")
    paths = (await described(client))["paths"]
    required = [
        (path, schema)
        for path, operations in paths.items()
        for operation in operations.values()
        if "requestBody" in operation
        for schema in [operation["requestBody"]["content"]["application/json"]["schema"]]
        if "reason" in schema.get("required", [])
        if operation["requestBody"]["required"]  # no body is no reason
    ]
    assert len(required) == 5, [p for p, _ in required]
    for path, schema in required:
        assert schema["properties"]["reason"]["minLength"] == 1, path
        assert schema["properties"]["reason"]["pattern"] == r"\S", path
    await one_running_execution(db)
    csrf = await csrf_of(client)
    for path, body in (
        ("/api/v1/safe-mode/leave", {"reason": "  "}),
        ("/api/v1/executions/exec-1/control", {"command": "pause", "reason": " "}),
    ):
        answer = await client.post(path, json=body, headers=csrf)
        assert answer.status_code == 400 and "reason" in answer.json()["error"], path


async def test_a_second_acknowledgement_is_a_409_not_a_404(
    client: httpx.AsyncClient,  # noqa: F811
    db: Database,
) -> None:
    escalation = await EscalationRepository(db, AuditLog(db)).raise_(
        None, "mqtt", "critical", "down", now=NOW
    )
    await log_in(client, "ada")
    csrf = await csrf_of(client)
    path = f"/api/v1/escalations/{escalation}/acknowledge"
    assert (await client.post(path, json={}, headers=csrf)).status_code == 200
    again = await client.post(path, json={}, headers=csrf)
    assert again.status_code == 409 and "already acknowledged" in again.json()["error"]


async def test_every_code_a_bad_request_gets_is_documented(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    """Each operation of the app's own OpenAPI document, asked badly in each way a
    client can: every answer's code is among that operation's responses."""
    await log_in(client, "ada")
    paths = (await described(client))["paths"]
    seen: dict[tuple[str, str], set[int]] = {}
    for user in ("ada", "vic", None):  # an admin, a viewer, a stranger
        client.cookies.clear()
        headers: dict[str, str] = {}
        if user is not None:
            await log_in(client, user)
            headers = await csrf_of(client)
        for template, operations in paths.items():
            for method, operation in operations.items():
                for request in bad_requests(template, method, operation):
                    answer = await client.request(method, **({"headers": headers} | request))
                    assert "Traceback" not in answer.text
                    seen.setdefault((method, template), set()).add(answer.status_code)
    for (method, template), codes in sorted(seen.items()):
        documented = {int(code) for code in paths[template][method]["responses"]}
        assert codes <= documented, (method, template, codes - documented)
    every = set().union(*seen.values())
    assert {400, 401, 403, 404, 413} <= every, every


def bad_requests(template: str, method: str, operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The ways to ask ``operation`` badly: an unknown and a malformed id, an unknown
    query parameter, each described one out of range, and for a change, bodies that
    are not JSON objects, nest too deep, are too large, or lack the CSRF header."""
    path = with_id(template, "nope-0001")
    asks: list[dict[str, Any]] = [
        {"url": path, "json": {}},
        {"url": f"{path}?bogus=1", "json": {}},
    ]
    if "{" in template:
        asks.append({"url": with_id(template, "x" * 201), "json": {}})
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            asks.append({"url": f"{path}?{parameter['name']}={'%7F' * 101}", "json": {}})
    if method == "post":
        for body in (b"not json", b"[]", b"{" * 40, b" " * (17 * 1024)):
            asks.append({"url": path, "content": body})
        asks.append({"url": path, "json": {}, "headers": {}})  # no CSRF header
    return asks
