"""Feedback and the human part of an execution through the JSON API and the page's form:
stored, audited, validated (the step ids are the execution's), shown to everyone."""

from __future__ import annotations

import re

import httpx

from tests.web.test_admin_auth import log_in
from tests.web.test_admin_pages import client  # noqa: F401  # the filled store and app


async def an_escalation(http: httpx.AsyncClient) -> str:
    listed = await http.get("/api/v1/executions", params={"status": "escalated", "limit": 1})
    assert listed.status_code == 200
    return str(listed.json()[0]["id"])


async def csrf_of(http: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": (await http.get("/api/v1/session")).json()["csrf"]}


async def test_feedback_through_the_api_is_stored_validated_and_shown(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await csrf_of(client)
    execution_id = await an_escalation(client)
    url = f"/api/v1/executions/{execution_id}/feedback"

    given = await client.post(
        url,
        json={
            "sufficient": False,
            "wasted_steps": ["check_broker"],
            "escalation": "too_late",
            "note": "slow",
        },
        headers=csrf,
    )
    assert given.status_code == 201, given.text
    assert given.json()["given_by"] == "ada" and given.json()["wasted_steps"] == ["check_broker"]
    for body, field in (
        ({"wasted_steps": ["nap"]}, "nap"),
        ({"sufficient": "yes"}, "sufficient"),
        ({"escalation": "whenever"}, "escalation"),
        ({"wasted_steps": "check_broker"}, "wasted_steps"),
        ({"mood": "fine"}, "mood"),
        ({}, "say something"),
    ):
        bad = await client.post(url, json=body, headers=csrf)
        assert bad.status_code == 400, body
        assert field in bad.json()["error"], (body, bad.json())
    unknown = await client.post(
        "/api/v1/executions/exec-nope/feedback", json={"sufficient": True}, headers=csrf
    )
    assert unknown.status_code == 404

    record = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    [stored] = record["feedback"]
    assert (stored["given_by"], stored["escalation"], stored["note"]) == ("ada", "too_late", "slow")
    learned = record["learning"]
    assert set(learned) >= {
        "steps_that_helped",
        "steps_that_wasted_time",
        "revealed_the_issue",
        "missing_steps",
        "per_step",
    }
    assert "check_broker" in learned["steps_that_wasted_time"]
    assert len(learned["per_step"]) == len(record["steps"])

    await log_in(client, "vic")
    viewer = await client.post(url, json={"sufficient": True}, headers=await csrf_of(client))
    assert viewer.status_code == 403
    assert len((await client.get(f"/api/v1/executions/{execution_id}")).json()["feedback"]) == 1
    audit = (await client.get("/api/v1/audit")).json()["newest"]
    assert [e["actor"] for e in audit if e["action"] == "execution.feedback"] == ["ada"]


async def test_the_pages_form_stores_feedback_and_a_resolution_reaches_the_execution(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    execution_id = await an_escalation(client)
    page = await client.get(f"/executions/{execution_id}")
    assert "What learning says of it" in page.text and "Give feedback" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    posted = await client.post(
        f"/executions/{execution_id}/feedback",
        data={"csrf_token": csrf[1], "sufficient": "no", "wasted:check_broker": "1"},
    )
    assert posted.status_code == 303
    bad = await client.post(
        f"/executions/{execution_id}/feedback",
        data={"csrf_token": csrf[1], "wasted:nap": "1"},
    )
    assert bad.status_code == 400 and "nap" in bad.text and "<h1>" in bad.text
    page = await client.get(f"/executions/{execution_id}")
    assert page.text.count('class="feedback-entry"') == 1

    record = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    failure_id = record["trigger"]["failure_id"]
    resolved = await client.post(
        f"/api/v1/failures/{failure_id}/resolve",
        json={"what": "re-seated the cable by hand", "force": True},
        headers=await csrf_of(client),
    )
    assert resolved.status_code == 200, resolved.text
    outcome = (await client.get(f"/api/v1/executions/{execution_id}")).json()["outcome"]
    assert outcome["resolved_by"] == "manual_intervention"
    assert outcome["what_fixed_it"] == "re-seated the cable by hand"
    page = await client.get(f"/executions/{execution_id}")
    assert "Resolved by <b>manual_intervention</b>: re-seated the cable by hand" in page.text
    assert "by manual_intervention (re-seated the cable by hand)" in page.text  # why
