"""Trial versions on the admin page and in the JSON API: approve as a trial, see both
arms on the playbook, stop it; CSRF and roles as for every other decision."""

from __future__ import annotations

import httpx

from tests.web.test_admin_auth import log_in, session_csrf
from tests.web.test_admin_pages import (
    PLAYBOOK,
    client,  # noqa: F401  # the filled store and app
    first_pending,
)


async def test_approve_as_a_trial_on_the_page_then_stop_it(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    page = await client.get(f"/recommendations/{rec_id}")
    assert "Approve as trial" in page.text and 'name="share"' in page.text
    token = session_csrf(page.text)
    forged = await client.post(
        f"/recommendations/{rec_id}/approve", data={"csrf_token": "x", "trial": "1"}
    )
    assert forged.status_code == 403
    bad_share = await client.post(
        f"/recommendations/{rec_id}/approve",
        data={"csrf_token": token, "trial": "1", "share": "lots"},
    )
    assert bad_share.status_code == 400 and "the share is a percentage" in bad_share.text
    done = await client.post(
        f"/recommendations/{rec_id}/approve",
        data={"csrf_token": token, "trial": "1", "share": "25", "reason": "try it first"},
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        f"/playbooks/{PLAYBOOK}?trial=1.0.1",
    )
    book = await client.get(done.headers["location"])
    assert '<b id="active-version">1.0.0</b>' in book.text  # the base stays active
    assert "Approved as a trial: version 1.0.1 runs on a share of incidents" in book.text
    assert "<h2>Trials</h2>" in book.text and "25 % of incidents" in book.text
    assert "base 1.0.0" in book.text and "trial 1.0.1" in book.text
    assert "waiting for 10 executions of each arm" in book.text
    trial_id = (await client.get("/api/v1/trials?status=running")).json()[0]["id"]
    stop_path = f"/playbooks/{PLAYBOOK}/trials/{trial_id}/stop"
    assert f'action="{stop_path}"' in book.text
    assert (await client.post(stop_path, data={"csrf_token": "x"})).status_code == 403
    no_reason = await client.post(stop_path, data={"csrf_token": token})
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    stopped = await client.post(stop_path, data={"csrf_token": token, "reason": "enough"})
    assert stopped.status_code == 303
    after = await client.get(f"/playbooks/{PLAYBOOK}")
    assert "<b>dropped</b>" in after.text and "stopped by ada: enough" in after.text
    assert "Stop the trial" not in after.text


async def test_a_viewer_sees_a_trial_and_cannot_stop_it(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    rec_id = await first_pending(client, "set_retry")
    token = session_csrf((await client.get(f"/recommendations/{rec_id}")).text)
    await client.post(
        f"/recommendations/{rec_id}/approve", data={"csrf_token": token, "trial": "1"}
    )
    await client.post("/logout", data={"csrf_token": token})
    await log_in(client, "vic")
    book = await client.get(f"/playbooks/{PLAYBOOK}")
    assert "<b>running</b>" in book.text and "Stop the trial" not in book.text
    [trial] = (await client.get("/api/v1/trials")).json()
    refused = await client.post(
        f"/playbooks/{PLAYBOOK}/trials/{trial['id']}/stop",
        data={"csrf_token": session_csrf(book.text), "reason": "no"},
    )
    assert refused.status_code == 403


async def test_trials_through_the_api(client: httpx.AsyncClient) -> None:  # noqa: F811
    await log_in(client, "ada")
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    recs = (await client.get("/api/v1/recommendations")).json()
    retry = next(r for r in recs if r["recommendation_type"] == "set_retry")
    assert retry["trial"] is False
    approve = f"/api/v1/recommendations/{retry['id']}/approve"
    wrong = await client.post(approve, json={"trial": "yes"}, headers=csrf)
    assert wrong.status_code == 400 and "true or false" in wrong.json()["error"]
    share = await client.post(approve, json={"trial": True, "share": 0}, headers=csrf)
    assert share.status_code == 400 and "between 0 and 1" in share.json()["error"]
    done = await client.post(approve, json={"trial": True, "share": 0.4}, headers=csrf)
    answer = done.json()
    assert (answer["version"], answer["trial"][:6]) == ("1.0.1", "trial-")
    assert (await client.get("/api/v1/trials?status=nope")).status_code == 400
    [listed] = (await client.get(f"/api/v1/trials?playbook={PLAYBOOK}")).json()
    assert (listed["id"], listed["status"], listed["share"]) == (answer["trial"], "running", 0.4)
    one = (await client.get(f"/api/v1/trials/{answer['trial']}")).json()
    assert set(one["statistics"]) >= {"base", "trial", "look", "decision", "reason"}
    assert (await client.get("/api/v1/trials/trial-nope")).status_code == 404
    stop = f"/api/v1/trials/{answer['trial']}/stop"
    assert (await client.post(stop, json={"reason": "x"})).status_code == 403
    stopped = await client.post(stop, json={"reason": "api"}, headers=csrf)
    assert stopped.status_code == 200
    assert (stopped.json()["status"], stopped.json()["active_version"]) == ("dropped", "1.0.0")
    again = await client.post(stop, json={"reason": "api"}, headers=csrf)
    assert again.status_code == 400 and "not running" in again.json()["error"]
