"""Hostile JSON bodies to every API route that reads one: a clear 400, never a 500."""

from __future__ import annotations

import re

import httpx
import pytest

from graylogic_supervisor.web.api import api_routes
from graylogic_supervisor.web.api_guard import MAX_JSON_DEPTH
from tests.web.test_admin_auth import client, log_in  # noqa: F401  # the app and store

WRITING = sorted(
    re.sub(r"\{[^}]+\}", "x", route.path)
    for route in api_routes()
    if "POST" in (route.methods or set())
)

BODIES = {
    "100,000 [": b"[" * 100_000,
    "16,000 [": b"[" * 16_000,
    "nested objects": b'{"a":' * 2_000 + b"1" + b"}" * 2_000,
    "just past the limit": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
async def test_a_deeply_nested_body_is_a_400_on_every_route(
    client: httpx.AsyncClient,  # noqa: F811
    body: bytes,
) -> None:
    await log_in(client, "ada")
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    assert WRITING, "no API route takes a body?"
    for path in WRITING:
        answer = await client.post(path, content=body, headers=csrf)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
        assert "nested deeper than 32 levels" in answer.json()["error"]


async def test_nesting_within_the_limit_and_brackets_in_strings_are_fine(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    body = b'{"reason": "' + b"[" * 1000 + b'", "x": ' + b"[" * 30 + b"]" * 30 + b"}"
    answer = await client.post("/api/v1/safe-mode/leave", content=body, headers=csrf)
    assert answer.status_code != 500 and "nested" not in answer.text
