"""What every handler of the JSON API can trust before it runs, and what the OpenAPI
description says of it: a session or an API token (401), for a change by session the
CSRF header (a token needs none: it is never sent by a browser on its own), a role that
may change and a JSON object body of at most 16 KiB (403, 413, 400), an id that could
be one and a query that the handler's docstring describes (400, naming the field).

Each handler's docstring is its OpenAPI description, and these wrappers hold the
handler to it: a query parameter the docstring does not name, or a value outside its
``enum``, ``maxLength``, ``pattern``, integer range or ``date``/``date-time`` format,
is a 400 that names the field; an id that cannot be one (over 200 characters, or a
control character) is a 400, so that a 404 always means an id that names nothing.
``documented`` adds the codes the wrappers answer with to every operation.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.schemas import SchemaGenerator

from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.web.auth import MAX_FORM_BYTES, api_caller, may_change, same
from graylogic_supervisor.web.render import admin, refuse

SCHEMAS = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {"title": "graylogic-supervisor admin API", "version": "1"},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "gls_session"},
                "token": {"type": "http", "scheme": "bearer"},
            }
        },
        "security": [{"session": []}, {"token": []}],
    }
)


Reading = Callable[[Request, Session], Awaitable[Response]]
Writing = Callable[[Request, Session, dict[str, Any]], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def reading(handler: Reading) -> Endpoint:
    """An endpoint for anyone logged in; 401 otherwise. Keeps the handler's docstring,
    which is its OpenAPI description, and refuses an id or a query it does not describe
    (``malformed_id``, ``unknown_query``)."""
    queries = query_parameters(handler)

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        caller = await api_caller(request, admin(request).auth)
        if isinstance(caller, Response):
            return caller
        problem = malformed_id(request) or unknown_query(request, queries)
        if problem is not None:
            return refuse(400, problem)
        return await handler(request, caller.session)

    return endpoint


def writing(handler: Writing) -> Endpoint:
    """An endpoint that changes something: the CSRF header, a role that may change,
    and a JSON object body (``writer``); then the id and query as ``reading``."""
    queries = query_parameters(handler)

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        checked = await writer(request)
        if isinstance(checked, Response):
            return checked
        problem = malformed_id(request) or unknown_query(request, queries)
        if problem is not None:
            return refuse(400, problem)
        return await handler(request, *checked)

    return endpoint


MAX_ID = 200
"""No id we make is longer; a longer one is malformed, not unknown."""
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No id we make holds a control character; the same pattern in Python and OpenAPI."""
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": ID_PATTERN}


def malformed_id(request: Request) -> str | None:
    """Why a path's id cannot name anything (a 400), or None."""
    for name, value in request.path_params.items():
        if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value) or len(value) > MAX_ID:
            return f"{name} is malformed: at most {MAX_ID} characters, no control characters"
    return None


def query_parameters(handler: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    """The query parameters ``handler``'s docstring describes, with their schemas."""
    return {
        parameter["name"]: parameter.get("schema", {})
        for parameter in SCHEMAS.parse_docstring(handler).get("parameters", [])
        if parameter["in"] == "query"
    }


def unknown_query(request: Request, described: dict[str, dict[str, Any]]) -> str | None:
    """Why the query does not fit the described parameters (a 400), or None: a filter
    is never dropped in silence. An empty value is no filter for free text only; a value
    with a form (a choice, a pattern, a date, a number) must have it, as the schema says
    (the API is read by scripts; the pages parse their own forms)."""
    for name, value in request.query_params.multi_items():
        schema = described.get(name)
        if schema is None:
            allowed = ", ".join(described) or "none"
            return f"unknown query parameter {name!r}; this one takes: {allowed}"
        if value == "" and not FORMED.intersection(schema):
            continue
        if "enum" in schema and value not in schema["enum"]:
            return f"{name} must be one of {', '.join(schema['enum'])}, not {value!r}"
        if len(value) > schema.get("maxLength", len(value)):
            return f"{name} is at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            return f"{name} does not have the form {schema['pattern']}"
        if schema.get("format") == "date-time":
            try:  # in UTC too, as the store keeps times: year 1 at +01:00 is not
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is not None:
                    moment.astimezone(UTC)
            except (ValueError, OverflowError):
                return f"{name} is an ISO 8601 date or time, e.g. 2026-11-29T08:00:00"
        if schema.get("format") == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                return f"{name} is a date, e.g. 2026-11-29"
        if schema.get("type") == "integer":
            problem = out_of_range(name, value, schema)
            if problem is not None:
                return problem
    return None


FORMED = frozenset({"enum", "pattern", "format", "minimum", "maximum"})  # "" cannot fit


def out_of_range(name: str, value: str, schema: dict[str, Any]) -> str | None:
    """Why ``value`` is not an integer within the schema's bounds, or None."""
    low, high = schema.get("minimum"), schema.get("maximum")
    bounds = f" from {low} to {high}" if low is not None and high is not None else ""
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", value.strip()):
        return f"{name} is an integer{bounds}"
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        return f"{name} is an integer{bounds}, not {number}"
    return None


WRAPPERS_ANSWER = {
    400: "a malformed id, or a query parameter that is unknown or out of its range",
    401: "not logged in, or an API token that is unknown, revoked or expired",
}
WRITERS_ANSWER = {
    400: "the body is not a JSON object, or is nested deeper than 32 levels",
    401: "not logged in, or an API token that is unknown, revoked or expired",
    403: "wrong CSRF token, or a viewer",
    413: "the body is over 16 KiB",
}


def documented(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the codes the wrappers answer with added to each operation
    (a handler's own description of a code is kept), and every id described as the
    wrappers take it (``ID_SCHEMA``)."""
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter["schema"] = dict(ID_SCHEMA)
            responses = operation.setdefault("responses", {})
            added = dict(WRAPPERS_ANSWER)
            if method == "post":
                added |= WRITERS_ANSWER
            for code, description in added.items():
                if code not in responses and str(code) not in responses:
                    responses[code] = {"description": description}
    return schema


async def writer(request: Request) -> tuple[Session, dict[str, Any]] | Response:
    """The session and JSON body of a state change, or the refusal."""
    caller = await api_caller(request, admin(request).auth)
    if isinstance(caller, Response):
        return caller
    session = caller.session
    if not caller.by_token and not same(session.csrf, request.headers.get("x-csrf-token")):
        return refuse(403, "missing or wrong X-CSRF-Token header")
    if not may_change(session):
        return refuse(403, f"a {session.role} can look but not change anything")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            if nested_deeper_than(body, MAX_JSON_DEPTH):  # the more useful thing to say
                return refuse(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
            return refuse(413, "body too large")
    if nested_deeper_than(body, MAX_JSON_DEPTH):
        return refuse(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return refuse(400, "the body is not JSON")
    if not isinstance(data, dict):
        return refuse(400, "the body is a JSON object")
    return session, data


MAX_JSON_DEPTH = 32
"""No change needs more; 16 KiB of ``[`` would otherwise reach json's recursion limit
(a 500) or, under it, every later walk of the data."""


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether brackets in ``body`` (outside strings) nest deeper than ``limit``,
    found before anything is parsed."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif byte in b"]}":
            depth -= 1
    return False


def rows(items: list[Any]) -> list[dict[str, Any]]:
    return [dict(item) for item in items]


def text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    return value if isinstance(value, str) else ""
