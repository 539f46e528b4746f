"""The analyses on the admin page and the API, a rollback's report in words, over a
store the real simulator filled (tests/web/test_rollback_pages.py's: two analyses, an
approval the rule rolled back, a rejection)."""

from __future__ import annotations

import re

import httpx

from tests.web.test_admin_auth import log_in
from tests.web.test_rollback_pages import client  # the fixture

__all__ = ["client"]


async def test_every_verdict_is_on_the_analysis_page(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    home = await client.get("/")
    assert 'href="/analyses"' in home.text  # in the navigation
    listing = await client.get("/analyses")
    assert listing.status_code == 200
    ids = re.findall(r'href="/analyses/(analysis-[^"]+)"', listing.text)
    assert len(ids) == 2
    api = (await client.get("/api/v1/analyses")).json()
    assert [a["id"] for a in api] == ids  # newest first, both ways
    for analysis_id in ids:
        report = (await client.get(f"/api/v1/analyses/{analysis_id}")).json()["report"]
        page = (await client.get(f"/analyses/{analysis_id}")).text
        considered = [c for p in report["playbooks"] for c in p["considered"]]
        assert considered
        rows = re.findall(r'<tr class="verdict (accepted|refused)">', page)
        assert len(rows) == len(considered)
        assert rows.count("accepted") == sum(c["accepted"] for c in considered)
        for entry in considered:
            words = entry["in_words"]
            assert escaped(words) in page, words
        assert "Bottlenecks" in page and "Paths" in page
    assert (await client.get("/analyses/analysis-nope")).status_code == 404
    missing = await client.get("/analyses/analysis-nope", headers={"accept": "text/html"})
    assert "No analysis analysis-nope" in missing.text
    assert (await client.get("/api/v1/analyses/analysis-nope")).status_code == 404
    assert (await client.get("/api/v1/analyses?limit=0")).status_code == 400


async def test_each_verdict_reads_with_its_figures(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    for run in (await client.get("/api/v1/analyses")).json():
        report = (await client.get(f"/api/v1/analyses/{run['id']}")).json()["report"]
        page = (await client.get(f"/analyses/{run['id']}")).text
        for entry in (c for p in report["playbooks"] for c in p["considered"]):
            figures = entry["figures"]
            if "current_time_s" not in figures:
                continue  # not applicable, or refused by the verification guard
            assert escaped(f"expected time {figures['current_time_s']:.1f} s ->") in page
            assert f"confidence {figures['confidence']:.2f} (threshold" in page


async def test_a_rollback_reads_in_words(client: httpx.AsyncClient) -> None:
    await log_in(client, "ada")
    (rollback,) = (await client.get("/api/v1/rollbacks")).json()
    page = (await client.get(f"/rollbacks/{rollback['id']}")).text
    assert 'id="in-words"' in page
    assert (
        f"{rollback['playbook_id']} 1.1.0 was rolled back to 1.0.0" in page
        and "by the supervisor&#39;s automatic rule" in page
    )
    assert "Success rate" in page and "worse beyond the margin" in page
    assert "The trigger: the success_rate" in page
    assert "approved by ada" in page


def escaped(text: str) -> str:
    """As Jinja's autoescape writes it."""
    from markupsafe import escape

    return str(escape(text))
