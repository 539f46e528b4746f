"""Trial versions (BR-WF-034) on the admin page and in the JSON API: both arms'
figures, and stopping a trial by hand.

A trial is started by approving a recommendation as a trial (``learning_pages``,
``api.approve``); the page shows it on its playbook. Stopping goes through
``LearningService.stop_trial`` (role check, reason, audit) as the CLI's does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.web.api_guard import reading, text, writing
from graylogic_supervisor.web.learning_pages import playbook_page
from graylogic_supervisor.web.render import admin, changing, refuse, see_other

STATUSES = ("running", "promoted", "dropped", "all")


def trial_routes() -> list[Route]:
    return [
        Route("/playbooks/{playbook_id}/trials/{trial_id}/stop", stop_page, methods=["POST"]),
        Route("/api/v1/trials", trials, methods=["GET"]),
        Route("/api/v1/trials/{trial_id}", trial, methods=["GET"]),
        Route("/api/v1/trials/{trial_id}/stop", stop, methods=["POST"]),
    ]


async def stop_page(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    playbook_id = request.path_params["playbook_id"]
    try:
        await admin(request).learning.stop_trial(
            request.path_params["trial_id"], session.user, form.get("reason", "")
        )
    except SupervisorError as exc:
        return await playbook_page(request, str(exc), 400)
    return see_other(f"/playbooks/{playbook_id}")


@reading
async def trials(request: Request, session: Session) -> Response:
    """
    parameters:
      - name: status
        in: query
        schema: {type: string, enum: [running, promoted, dropped, all]}
      - {name: playbook, in: query, schema: {type: string}}
    responses:
      200: {description: "trial versions, newest first, each with both arms' figures"}
      400: {description: unknown status}
      401: {description: not logged in}
    """
    status = request.query_params.get("status", "all")
    if status not in STATUSES:
        return refuse(400, "unknown status")
    keeper = admin(request).learning.trials
    found = await keeper.store.listing(
        None if status == "all" else status, request.query_params.get("playbook")
    )
    return JSONResponse([await keeper.report(t) for t in found])


@reading
async def trial(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: trial_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "one trial: live figures of both arms while it runs"}
      401: {description: not logged in}
      404: {description: no such trial}
    """
    keeper = admin(request).learning.trials
    found = await keeper.store.get(request.path_params["trial_id"])
    if found is None:
        return refuse(404, "no such trial")
    return JSONResponse(await keeper.report(found))


@writing
async def stop(request: Request, session: Session, data: dict[str, Any]) -> Response:
    """
    parameters:
      - {name: trial_id, in: path, required: true, schema: {type: string}}
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
      200: {description: stopped; the base version stays active}
      400: {description: "not running, or no reason"}
      401: {description: not logged in}
      403: {description: wrong CSRF token, or a viewer}
      404: {description: no such trial}
    """
    learning = admin(request).learning
    if await learning.trials.store.get(request.path_params["trial_id"]) is None:
        return refuse(404, "no such trial")
    try:
        stopped = await learning.stop_trial(
            request.path_params["trial_id"], session.user, text(data, "reason")
        )
    except SupervisorError as exc:
        return refuse(400, str(exc))
    return JSONResponse(stopped)
