"""The admin page's JSON API under ``/api/v1``: what the pages show, and the same
decisions, for scripts. Described by OpenAPI at ``/api/v1/openapi.json``.

Authentication is the page's session cookie, or an API token
(``Authorization: Bearer TOKEN``, see ``web/auth.py``). A state change also needs
the admin or system_owner role and, with a cookie, the session's CSRF token in the
``X-CSRF-Token`` header; bodies are JSON objects of at most 16 KiB. Lists that can
grow (``/executions``, ``/events``) come in pages: ``limit`` (1 to 500) and the
``after`` cursor the previous page gave in ``X-Next-Cursor`` and ``Link``. Decisions go
through the same services as the pages and the CLI, so they are validated and
audited the same way.

Each handler's docstring is its OpenAPI description; the wrappers in ``api_guard``
hold the handlers to it (filters, ids, bodies) and document their own codes. An id
that names nothing is a 404, checked before the body's fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.states import RecommendationStatus
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.drafts import NO_BASE
from graylogic_supervisor.store.export import BadCursor, EventCursor, EventFilter, ExecutionCursor
from graylogic_supervisor.store.feedback import Feedback
from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.web.admin_data import dashboard_data
from graylogic_supervisor.web.api_guard import SCHEMAS, documented, reading, rows, text, writing
from graylogic_supervisor.web.execution_pages import (
    execution_filters,
    give_feedback,
    learning_part,
    queue_control,
)
from graylogic_supervisor.web.record_pages import (
    audit_check,
    failure_data,
    failures_data,
    learning_data,
    record_resolution,
)
from graylogic_supervisor.web.render import admin, refuse


def api_routes() -> list[Route]:
    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/api/v1/session", whoami, methods=["GET"]),
        Route("/api/v1/recommendations", recommendations, methods=["GET"]),
        Route("/api/v1/recommendations/{rec_id}", recommendation, methods=["GET"]),
        Route("/api/v1/recommendations/{rec_id}/approve", approve, methods=["POST"]),
        Route("/api/v1/recommendations/{rec_id}/reject", reject, methods=["POST"]),
        Route("/api/v1/playbooks", playbooks, methods=["GET"]),
        Route("/api/v1/playbooks/{playbook_id}", playbook, methods=["GET"]),
        Route("/api/v1/playbooks/{playbook_id}/rollback", rollback, methods=["POST"]),
        Route("/api/v1/rollbacks", rollbacks, methods=["GET"]),
        Route("/api/v1/rollbacks/{rollback_id}", rollback_report, methods=["GET"]),
        Route("/api/v1/analyses", analyses, methods=["GET"]),
        Route("/api/v1/analyses/{analysis_id}", analysis, methods=["GET"]),
        Route("/api/v1/executions", executions, methods=["GET"]),
        Route("/api/v1/events", events, methods=["GET"]),
        Route("/api/v1/executions/{execution_id}", execution, methods=["GET"]),
        Route("/api/v1/executions/{execution_id}/control", control, methods=["POST"]),
        Route("/api/v1/executions/{execution_id}/feedback", feedback, methods=["POST"]),
        Route("/api/v1/audit", audit, methods=["GET"]),
        Route("/api/v1/dashboard", dashboard, methods=["GET"]),
        Route("/api/v1/learning", learning, methods=["GET"]),
        Route("/api/v1/failures", failures, methods=["GET"]),
        Route("/api/v1/failures/{failure_id}", failure, methods=["GET"]),
        Route("/api/v1/failures/{failure_id}/resolve", resolve, methods=["POST"]),
        Route("/api/v1/safe-mode/leave", leave_safe_mode, methods=["POST"]),
        Route("/api/v1/escalations/{escalation_id}/acknowledge", acknowledge, methods=["POST"]),
    ]


@reading
async def openapi(request: Request, session: Session) -> Response:
    api = [
        route for route in request.app.routes if getattr(route, "path", "").startswith("/api/v1/")
    ]
    return JSONResponse(documented(SCHEMAS.get_schema(routes=api)))


@reading
async def whoami(request: Request, session: Session) -> Response:
    """
    responses:
      200: {description: "the logged-in user, role and CSRF token for state changes"}
      401: {description: not logged in}
    """
    return JSONResponse({"user": session.user, "role": session.role, "csrf": session.csrf})


@reading
async def recommendations(request: Request, session: Session) -> Response:
    """
    parameters:
      - name: status
        in: query
        schema:
          type: string
          enum: [pending, approved, rejected, archived, superseded, all]
    responses:
      200: {description: recommendations, newest first}
      400: {description: "an unknown status: the message names the allowed ones"}
      401: {description: not logged in}
    """
    status = request.query_params.get("status") or RecommendationStatus.PENDING
    recs = await admin(request).learning.store.listing(None if status == "all" else status)
    return JSONResponse([r.as_dict() for r in recs])


@reading
async def recommendation(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: rec_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: one recommendation}
      401: {description: not logged in}
      404: {description: no such recommendation}
    """
    rec = await admin(request).learning.store.get(request.path_params["rec_id"])
    return refuse(404, "no such recommendation") if rec is None else JSONResponse(rec.as_dict())


@writing
async def approve(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: rec_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              reason: {type: string, description: optional}
              change: {type: object}
              trial: {type: boolean, description: "run it as a trial (default: as proposed)"}
              share:
                type: number
                minimum: 0
                maximum: 1
                exclusiveMinimum: true
                exclusiveMaximum: true
                description: "a trial's share of incidents, between 0 and 1"
    responses:
      200: {description: "approved; the new active version, or the trial's"}
      400: {description: "the change does not apply or is not valid, or it is not pending"}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such recommendation}
    """
    learning = admin(request).learning
    if await learning.store.get(request.path_params["rec_id"]) is None:
        return refuse(404, "no such recommendation")
    change = data.get("change")
    if change is not None and not isinstance(change, dict):
        return refuse(400, "change is a JSON object")
    trial, share = data.get("trial"), data.get("share")
    if trial is not None and not isinstance(trial, bool):
        return refuse(400, "trial is true or false")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float)):
        return refuse(400, "share is a number between 0 and 1")
    try:
        version = await learning.approve(
            request.path_params["rec_id"],
            session.user,
            text(data, "reason"),
            change,
            trial=trial,
            share=None if share is None else float(share),
        )
    except SupervisorError as exc:
        return refuse(400, str(exc))
    rec = await learning.store.get(request.path_params["rec_id"])
    trial_run = None if rec is None else await learning.trials.running_as(rec.playbook_id, version)
    answer = {"approved": request.path_params["rec_id"], "version": version}
    if trial_run is not None:
        answer["trial"] = trial_run.id
    return JSONResponse(answer)


@writing
async def reject(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: rec_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [reason]
            properties: {reason: {type: string, minLength: 1, pattern: '\\S'}}
    responses:
      200: {description: rejected}
      400: {description: no reason, or not pending}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such recommendation}
    """
    learning = admin(request).learning
    if await learning.store.get(request.path_params["rec_id"]) is None:
        return refuse(404, "no such recommendation")
    try:
        await learning.reject(request.path_params["rec_id"], session.user, text(data, "reason"))
    except SupervisorError as exc:
        return refuse(400, str(exc))
    return JSONResponse({"rejected": request.path_params["rec_id"]})


@reading
async def playbooks(request: Request, session: Session) -> Response:
    """
    responses:
      200: {description: active playbooks with their metrics}
      401: {description: not logged in}
    """
    deps = admin(request)
    answer = []
    for book in await deps.versions.active_playbooks():
        metrics = await deps.learning.metrics.version(book.id, book.version)
        answer.append(
            {
                "id": book.id,
                "name": book.name,
                "active_version": book.version,
                "metrics": metrics.as_dict() if metrics else None,
            }
        )
    return JSONResponse(answer)


@reading
async def playbook(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: playbook_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: the active version, its step metrics and paths, and every version}
      401: {description: not logged in}
      404: {description: no such playbook}
    """
    deps = admin(request)
    playbook_id = request.path_params["playbook_id"]
    active = await deps.versions.active_playbook(playbook_id)
    if active is None:
        return refuse(404, "no such playbook")
    metrics = await deps.learning.metrics.version(playbook_id, active.version)
    return JSONResponse(
        {
            "active": active.model_dump(mode="json", exclude_defaults=True),
            "metrics": metrics.as_dict() if metrics else None,
            "steps": [
                s.as_dict() for s in await deps.learning.metrics.steps(playbook_id, active.version)
            ],
            "common_paths": [
                p.as_dict() for p in await deps.learning.metrics.paths(playbook_id, active.version)
            ],
            "versions": await deps.versions.versions_of(playbook_id),
        }
    )


@writing
async def rollback(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: playbook_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [version, reason]
            properties:
              version: {type: string, minLength: 1}
              reason: {type: string, minLength: 1, pattern: '\\S'}
    responses:
      200: {description: the version is active again}
      400: {description: the rollback is refused (e.g. a draft that cannot be retired)}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such playbook, or no such version of it}
      409: {description: that version is already the active one}
    """
    deps = admin(request)
    playbook_id = request.path_params["playbook_id"]
    active = await deps.versions.active_version(playbook_id)
    if active is None:
        return refuse(404, "no such playbook")
    version = text(data, "version")
    if version == active:
        return refuse(409, f"{version} is already the active version")
    if version != NO_BASE and await deps.versions.version_info(playbook_id, version) is None:
        return refuse(404, f"{playbook_id} has no version {version}")
    try:
        previous = await deps.learning.rollback(
            playbook_id, text(data, "version"), session.user, text(data, "reason")
        )
    except SupervisorError as exc:
        return refuse(400, str(exc))
    return JSONResponse({"active": text(data, "version"), "was": previous})


@reading
async def rollbacks(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: playbook, in: query, schema: {type: string}}
    responses:
      200: {description: rollbacks, newest first, each with its investigation report}
      401: {description: not logged in}
    """
    found = await admin(request).learning.store.rollbacks(request.query_params.get("playbook"))
    return JSONResponse(found)


@reading
async def rollback_report(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: rollback_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "one rollback: versions, baseline and why, both tests, changes,
        approvals, step metrics, unresolved executions"}
      401: {description: not logged in}
      404: {description: no such rollback}
    """
    found = await admin(request).learning.store.rollback(request.path_params["rollback_id"])
    return refuse(404, "no such rollback") if found is None else JSONResponse(found)


@reading
async def analyses(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500,
         default: 50}}
    responses:
      200: {description: "the learning analyses, newest first: id, started_at, finished_at,
        trigger, recommendations (new ones) and playbooks (analysed); no report"}
      400: {description: a limit out of its range}
      401: {description: not logged in}
    """
    limit = int(request.query_params.get("limit") or "50")
    return JSONResponse(await admin(request).learning.analyses.listing(limit))


@reading
async def analysis(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: analysis_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "one analysis with its report: per playbook the findings, every
        candidate considered with its verdict (in_words), figures and accepted, and what an
        earlier rejection held back"}
      401: {description: not logged in}
      404: {description: no such analysis}
    """
    found = await admin(request).learning.analyses.get(request.path_params["analysis_id"])
    return refuse(404, "no such analysis") if found is None else JSONResponse(found)


def _page(request: Request) -> tuple[str | None, int]:
    """The ``after`` cursor (None: the first page) and ``limit``, already in range."""
    after = request.query_params.get("after") or None
    limit = request.query_params.get("limit") or "50"
    return after, int(limit)


def _paged(items: list[dict[str, Any]], request: Request, next_cursor: str | None) -> Response:
    """A page: the items as the body; the next page's cursor in ``X-Next-Cursor`` and its
    URL in ``Link`` (rel="next"), both absent on the last page."""
    response = JSONResponse(items)
    if next_cursor is not None:
        url = request.url.include_query_params(after=next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
        response.headers["X-Next-Cursor"] = next_cursor
    return response


@reading
async def executions(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: playbook, in: query, schema: {type: string, maxLength: 100}}
      - {name: component, in: query, schema: {type: string, maxLength: 100}}
      - name: status
        in: query
        schema:
          type: string
          enum: [running, resolved, escalated, failed, interrupted]
      - {name: since, in: query, schema: {type: string, format: date-time}}
      - {name: until, in: query, schema: {type: string, format: date-time}}
      - {name: q, in: query, schema: {type: string, maxLength: 100}}
      - name: after
        in: query
        description: "the cursor of the previous page (its X-Next-Cursor)"
        schema: {type: string, pattern: '^[0-9TZ:.-]{1,40}~[0-9]{1,18}$'}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500,
         default: 50}}
    responses:
      200:
        description: "a page of the executions that match, newest first (limit, default 50)"
        headers:
          Link: {description: 'the next page: <URL>; rel="next" (absent on the last page)',
                 schema: {type: string}}
          X-Next-Cursor: {description: "the next page's after (absent on the last page)",
                          schema: {type: string}}
      400: {description: "a filter, limit or cursor that is unknown or out of its range, named"}
      401: {description: not logged in}
    """
    _, wanted = execution_filters(request)
    after_text, limit = _page(request)
    try:
        after = None if after_text is None else ExecutionCursor.parse(after_text)
    except BadCursor as exc:
        return refuse(400, f"after: {exc}")
    found = await admin(request).records.events.executions(wanted, after, limit + 1)
    more = len(found) > limit
    page = found[:limit]
    next_cursor = page[-1][1].token() if more else None
    return _paged([execution.as_row() for execution, _ in page], request, next_cursor)


@reading
async def events(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: playbook, in: query, schema: {type: string, maxLength: 100}}
      - {name: since, in: query, schema: {type: string, format: date-time},
         description: "executions started at or after (no zone: UTC)"}
      - {name: until, in: query, schema: {type: string, format: date-time},
         description: "executions started at or before (no zone: UTC)"}
      - name: after
        in: query
        description: "the cursor of the previous page (its X-Next-Cursor)"
        schema: {type: string, pattern: '^[0-9TZ:.-]{1,40}~[0-9]{1,18}~[0-9]{1,9}$'}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500,
         default: 50}}
    responses:
      200:
        description: >-
          a page of step events, oldest execution first and in order within it, in the
          shape of `executions export` (case_id, seq, activity, start, end, outcome,
          playbook_version, component, …)
        headers:
          Link: {description: 'the next page: <URL>; rel="next" (absent on the last page)',
                 schema: {type: string}}
          X-Next-Cursor: {description: "the next page's after (absent on the last page)",
                          schema: {type: string}}
      400: {description: "a filter, limit or cursor that is unknown or out of its range, named"}
      401: {description: not logged in}
    """
    query = request.query_params
    chosen = EventFilter(
        since=_utc(query.get("since")),
        until=_utc(query.get("until")),
        playbook=query.get("playbook") or None,
    )
    after_text, limit = _page(request)
    try:
        after = None if after_text is None else EventCursor.parse(after_text)
    except BadCursor as exc:
        return refuse(400, f"after: {exc}")
    found = await admin(request).records.events.events(chosen, after, limit + 1)
    page = found[:limit]
    next_cursor = page[-1].cursor.token() if len(found) > limit else None
    return _paged([event.as_row() for event in page], request, next_cursor)


def _utc(value: str | None) -> str | None:
    """A validated ISO 8601 time as the store writes times (UTC, ``Z``); a time without
    a zone is UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return isoformat(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


@reading
async def execution(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: execution_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "the execution record with every step (the learning spec's shape),
        its learning annotations (helped, revealed the issue, wasted time, missing steps)
        and people's feedback on it"}
      401: {description: not logged in}
      404: {description: no such execution}
    """
    execution_id = request.path_params["execution_id"]
    record = await admin(request).executions.record(execution_id)
    row = await admin(request).records.views.execution(execution_id)
    if record is None or row is None:
        return refuse(404, "no such execution")
    annotations, given = await learning_part(
        request, row, await admin(request).records.views.steps(execution_id)
    )
    record["learning"] = annotations.as_json()
    for step, note in zip(record["steps"], annotations.steps, strict=True):
        if note.revealed:  # the learning spec's per-step insight
            named = step["error"] or step["result"] or step["outcome"]
            step["insight"] = f"This step revealed the issue: {named}"
    record["feedback"] = [entry.as_json() for entry in given]
    return JSONResponse(record)


@writing
async def control(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: execution_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [command, reason]
            properties:
              command: {type: string, enum: [pause, resume, cancel]}
              reason: {type: string, minLength: 1, pattern: '\\S'}
    responses:
      202: {description: queued; the daemon applies it and records the result}
      400: {description: unknown command or no reason}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such execution}
    """
    if await admin(request).records.views.execution(request.path_params["execution_id"]) is None:
        return refuse(404, "no such execution")
    queued = await queue_control(request, session, text(data, "command"), text(data, "reason"))
    if isinstance(queued, tuple):
        return refuse(*queued)
    return JSONResponse({"queued": queued}, status_code=202)


@writing
async def feedback(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: execution_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            additionalProperties: false
            properties:
              sufficient: {type: boolean, description: was the playbook enough}
              wasted_steps:
                type: array
                maxItems: 50
                items: {type: string}
                description: step ids of this execution that wasted time
              escalation:
                type: string
                enum: [too_late, too_early, right, not_escalated_should_have]
              note: {type: string, maxLength: 2000}
    responses:
      201: {description: "stored and audited; the stored feedback (several people may
        give feedback, each is kept)"}
      400: {description: "a field of the wrong type, a step id the execution did not run,
        an unknown escalation timing, or nothing said (the message names the field)"}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such execution}
    """
    if await admin(request).records.views.execution(request.path_params["execution_id"]) is None:
        return refuse(404, "no such execution")
    given = _feedback_body(data)
    if isinstance(given, str):
        return refuse(400, given)
    stored = await give_feedback(request, session, given)
    if isinstance(stored, tuple):
        return refuse(*stored)
    return JSONResponse(stored.as_json(), status_code=201)


def _feedback_body(data: dict[str, Any]) -> Feedback | str:
    """The body as a feedback, or why it is not one (naming the field)."""
    unknown = sorted(set(data) - {"sufficient", "wasted_steps", "escalation", "note"})
    if unknown:
        return (
            f"unknown field {unknown[0]!r}; feedback has sufficient, wasted_steps,"
            " escalation and note"
        )
    sufficient, wasted = data.get("sufficient"), data.get("wasted_steps", [])
    escalation, note = data.get("escalation"), data.get("note")
    if sufficient is not None and not isinstance(sufficient, bool):
        return "sufficient is true or false"
    if not isinstance(wasted, list) or not all(isinstance(step, str) for step in wasted):
        return "wasted_steps is a list of step ids"
    if escalation is not None and not isinstance(escalation, str):
        return "escalation is a string"
    if note is not None and not isinstance(note, str):
        return "note is a string"
    return Feedback(
        sufficient=sufficient,
        wasted_steps=tuple(wasted),
        escalation=escalation,
        note=note.strip() if note else None,
    )


@reading
async def audit(request: Request, session: Session) -> Response:
    """
    responses:
      200: {description: "the newest 100 audit entries, whether the chain verifies, and its head"}
      401: {description: not logged in}
    """
    check = await audit_check(request)
    return JSONResponse(
        {
            "verified": check.ok,
            "entries": check.entries,
            "problem": None if check.ok else check.problem,
            "first_bad_seq": check.first_bad_seq,
            "head": check.head.as_json() if check.ok and check.head else None,
            "warnings": list(check.warnings),
            "notes": list(check.notes),
            "newest": rows(await admin(request).auth.audit.entries(limit=100)),
        }
    )


@reading
async def dashboard(request: Request, session: Session) -> Response:
    """
    responses:
      200: {description: "health, safe mode, escalations, recommendations, executions"}
      401: {description: not logged in}
    """
    return JSONResponse(await dashboard_data(request))


@reading
async def learning(request: Request, session: Session) -> Response:
    """
    responses:
      200: {description: "patterns this week, improvements this month, progress"}
      401: {description: not logged in}
    """
    return JSONResponse(await learning_data(request))


@reading
async def failures(request: Request, session: Session) -> Response:
    """
    parameters:
      - name: outcome
        in: query
        schema:
          type: string
          enum: [open, resolved_by_supervisor, resolved_by_human, unresolved]
    responses:
      200: {description: the newest failure records and the learned patterns}
      400: {description: "an unknown outcome: the message names the allowed ones"}
      401: {description: not logged in}
    """
    return JSONResponse(await failures_data(request))


@reading
async def failure(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: failure_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: the failure memory's record and the executions for it}
      401: {description: not logged in}
      404: {description: no such failure}
    """
    data = await failure_data(request)
    return refuse(404, "no such failure") if data is None else JSONResponse(data)


@writing
async def resolve(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: failure_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [what]
            properties:
              fix_action:
                type: string
                description: "a fix action of this site; omit it, or 'manual', for a fix
                  no action can repeat (recorded, never proposed automatically)"
              target: {type: string, description: a configured service or component}
              what: {type: string, minLength: 1, pattern: '\\S'}
              root_cause: {type: string}
              force: {type: boolean, description: replace a resolution already recorded}
    responses:
      200: {description: the resolution is recorded}
      400: {description: "what missing, or an unknown action or target (the message lists the
        known ones)"}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such failure}
      409: {description: already resolved (by the supervisor or a person); send force true}
    """
    if await admin(request).records.views.memory_record(request.path_params["failure_id"]) is None:
        return refuse(404, "the failure memory has no such failure")
    fields = {key: text(data, key) for key in ("fix_action", "target", "what", "root_cause")}
    fields["force"] = "1" if data.get("force") is True else ""
    problem = await record_resolution(request, session, fields, force_hint='send "force": true')
    if problem is not None:
        return refuse(*problem)
    return JSONResponse({"resolved": request.path_params["failure_id"]})


@writing
async def leave_safe_mode(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [reason]
            properties: {reason: {type: string, minLength: 1, pattern: '\\S'}}
    responses:
      200: {description: "safe mode is off (left: false when it was not on)"}
      400: {description: no reason}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
    """
    reason = text(data, "reason").strip()
    if not reason:
        return refuse(400, "leaving safe mode needs a reason")
    deps = admin(request)
    left = await deps.controls.set_safe_mode(False, reason, session.user, deps.auth.clock.now())
    return JSONResponse({"left": left})


@writing
async def acknowledge(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: escalation_id, in: path, required: true, schema: {type: string}}
      - {name: X-CSRF-Token, in: header, schema: {type: string}}
    responses:
      200: {description: acknowledged}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such escalation}
      409: {description: someone has already acknowledged it}
    """
    deps = admin(request)
    escalation_id = request.path_params["escalation_id"]
    if not await deps.escalations.acknowledge(escalation_id, session.user, deps.auth.clock.now()):
        if await deps.escalations.get(escalation_id) is None:
            return refuse(404, f"no escalation {escalation_id}")
        return refuse(409, f"escalation {escalation_id} is already acknowledged")
    return JSONResponse({"acknowledged": escalation_id})
