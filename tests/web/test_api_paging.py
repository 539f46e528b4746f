"""Paging of the API's executions and step events by keyset cursor, over a store filled
by real engine runs (the simulator), and the guard on the routes that used to bypass it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.export import (
    EVENT_CURSOR,
    EXECUTION_CURSOR,
    EventFilter,
    EventLog,
)
from tests.learning.simulated import run, simulation
from tests.web.test_admin_auth import client, log_in  # noqa: F401  # the app and store

INCIDENTS = 23


@pytest.fixture
async def http(client: httpx.AsyncClient, db: Database) -> httpx.AsyncClient:  # noqa: F811
    """Logged in as a viewer, on a store of ``INCIDENTS`` simulated runs."""
    sim = await simulation(db, "mqtt-mixed-causes")
    await run(sim, INCIDENTS)
    await log_in(client, "vic")
    return client


async def every_page(http: httpx.AsyncClient, url: str) -> tuple[list[dict[str, Any]], int]:
    """Follow the pages' Link headers from ``url``; every item, and how many pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        answer = await http.get(next_url)
        assert answer.status_code == 200, answer.text
        items += answer.json()
        pages += 1
        link = answer.headers.get("link")
        if link is None:
            assert "x-next-cursor" not in answer.headers
            next_url = None
        else:
            assert link.endswith('>; rel="next"')
            next_url = link[1 : link.index(">")]
            after = parse_qs(urlsplit(next_url).query)["after"]
            assert after == [answer.headers["x-next-cursor"]]
    return items, pages


async def test_event_pages_add_up_to_the_export_in_order(
    http: httpx.AsyncClient, db: Database
) -> None:
    exported = [event.as_row() async for event in EventLog(db).stream(EventFilter())]
    paged, pages = await every_page(http, "/api/v1/events?limit=7")
    assert paged == exported
    assert pages == -(-len(exported) // 7)  # the last page full or not, none empty after it
    one, _ = await every_page(http, "/api/v1/events?limit=500")
    assert one == exported


async def test_execution_pages_are_newest_first_without_a_gap_or_a_repeat(
    http: httpx.AsyncClient,
) -> None:
    paged, pages = await every_page(http, "/api/v1/executions?limit=5")
    assert pages == 5
    whole = (await http.get("/api/v1/executions?limit=500")).json()
    assert [e["id"] for e in paged] == [e["id"] for e in whole]
    assert len({e["id"] for e in paged}) == INCIDENTS
    starts = [e["started_at"] for e in paged]
    assert starts == sorted(starts, reverse=True)
    first_page = (await http.get("/api/v1/executions")).json()
    assert len(first_page) == min(50, INCIDENTS)  # the default limit


async def test_a_page_keeps_its_filters_to_the_end(http: httpx.AsyncClient) -> None:
    escalated, _ = await every_page(http, "/api/v1/executions?status=escalated&limit=2")
    assert escalated and {e["status"] for e in escalated} == {"escalated"}
    assert not (await http.get("/api/v1/events?playbook=PLAY-NONE")).json()
    assert not (await http.get("/api/v1/events?since=2099-01-01T00:00:00")).json()
    middle = escalated[len(escalated) // 2]["started_at"]
    later, _ = await every_page(http, f"/api/v1/events?since={middle}&limit=3")
    assert later and all(e["case_status"] for e in later)
    everything, _ = await every_page(http, "/api/v1/events?limit=500")
    starts = {
        e["id"]: e["started_at"] for e in (await http.get("/api/v1/executions?limit=500")).json()
    }
    assert {e["case_id"] for e in later} == {
        e["case_id"] for e in everything if starts[e["case_id"]] >= middle
    }


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("after=not-a-cursor", "after"),
        ("after=2026-01-05T08:00:00.000Z", "after"),  # no rowid
        ("bogus=1", "bogus"),
    ],
)
async def test_a_bad_limit_or_cursor_is_a_400_naming_it(
    http: httpx.AsyncClient, query: str, named: str
) -> None:
    for path in ("/api/v1/events", "/api/v1/executions"):
        answer = await http.get(f"{path}?{query}")
        assert answer.status_code == 400, (path, query)
        assert named in answer.json()["error"]


async def test_a_cursor_of_one_list_is_refused_by_the_other(http: httpx.AsyncClient) -> None:
    events = await http.get("/api/v1/events?limit=1")
    executions = await http.get("/api/v1/executions?limit=1")
    wrong = await http.get(f"/api/v1/executions?after={events.headers['x-next-cursor']}")
    assert wrong.status_code == 400
    wrong = await http.get(f"/api/v1/events?after={executions.headers['x-next-cursor']}")
    assert wrong.status_code == 400


async def test_the_reports_and_health_keep_to_the_guard(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/reports/executions/exec-none")).status_code == 404
    assert (await http.get("/api/v1/reports/executions/" + "x" * 300)).status_code == 400
    assert (await http.get("/api/v1/reports/weekly?bogus=1")).status_code == 400
    assert (await http.get("/api/v1/reports/weekly?end=someday")).status_code == 400
    assert (await http.get("/api/v1/reports/weekly?end=2026-01-11")).status_code == 200
    assert (await http.get("/api/v1/system/health?verbose=1")).status_code == 400
    assert (await http.get("/api/v1/system/health")).status_code == 200


async def test_a_well_formed_cursor_never_fails_it_starts_where_it_sorts(
    http: httpx.AsyncClient,
) -> None:
    """So any cursor the schema allows is a 200 (schemathesis' positive data)."""
    assert (await http.get("/api/v1/events?after=0~0~0")).json() != []
    assert (await http.get("/api/v1/events?after=9999~0~0")).json() == []
    assert (await http.get("/api/v1/executions?after=9999~0")).json() != []
    assert (await http.get("/api/v1/executions?after=0~0")).json() == []


async def test_paging_is_described_in_the_openapi(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/api/v1/openapi.json")).json()
    for path, pattern in (
        ("/api/v1/events", EVENT_CURSOR),
        ("/api/v1/executions", EXECUTION_CURSOR),
    ):
        operation = schema["paths"][path]["get"]
        limit = next(p for p in operation["parameters"] if p["name"] == "limit")
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
        after = next(p for p in operation["parameters"] if p["name"] == "after")
        assert after["schema"]["pattern"] == pattern
        assert {"Link", "X-Next-Cursor"} <= set(operation["responses"]["200"]["headers"])
