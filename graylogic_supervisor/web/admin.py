"""The admin page: login, the dashboard, and the actions it offers.

Every page here needs a session (``auth.py``); a browser without one is sent to
``/login``. A state change is a POST with the session's CSRF token, refused
for a ``viewer``, and lands in the audit log through the repository it calls.
Pages are rendered on the server with Jinja2 (autoescaped); there is no
JavaScript and no external asset, since the controller is offline.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from graylogic_supervisor.store.views import ESCALATION_STATES
from graylogic_supervisor.web.admin_data import dashboard_data
from graylogic_supervisor.web.analysis_pages import analysis_routes
from graylogic_supervisor.web.api import api_routes
from graylogic_supervisor.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FormError,
    LoginRefused,
    cookie_flags,
    current_session,
    log_in,
    may_change,
    new_login_csrf,
    read_form,
    remote_of,
    same,
    set_session_cookie,
)
from graylogic_supervisor.web.execution_pages import execution_routes
from graylogic_supervisor.web.learning_pages import learning_routes
from graylogic_supervisor.web.record_pages import record_routes
from graylogic_supervisor.web.render import admin, changing, refuse, render, to_login, viewer
from graylogic_supervisor.web.reports import report_routes
from graylogic_supervisor.web.trial_pages import trial_routes

logger = logging.getLogger(__name__)
LISTED = 50  # escalations shown per state
BACK = ("/", "/escalations")  # where an acknowledgement may return to


def admin_routes() -> list[Route]:
    return [
        Route("/", dashboard, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/safe-mode/leave", leave_safe_mode, methods=["POST"]),
        Route("/escalations", escalations, methods=["GET"]),
        Route("/escalations/{escalation_id}/acknowledge", acknowledge, methods=["POST"]),
        *learning_routes(),
        *analysis_routes(),
        *trial_routes(),
        *execution_routes(),
        *record_routes(),
        *api_routes(),
        *report_routes(),
    ]


async def login_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    csrf = new_login_csrf()
    response = render(request, "login.html", status, csrf=csrf, message=message)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, path="/login", **cookie_flags(request))
    return response


async def login(request: Request) -> Response:
    deps = admin(request)
    try:
        form = await read_form(request)
    except FormError as exc:
        return await login_page(request, str(exc), 400)
    if not same(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get("csrf_token")) or not (
        request.cookies.get(LOGIN_CSRF_COOKIE)
    ):
        return await login_page(request, "The form expired; please log in again.", 403)
    try:
        token, session = await log_in(
            deps.auth, form.get("user", ""), form.get("password", ""), remote_of(request)
        )
    except LoginRefused as refused:
        response = await login_page(request, refused.message, refused.status)
        if refused.retry_after_s is not None:
            response.headers["Retry-After"] = str(refused.retry_after_s)
        return response
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, token, int(deps.auth.session_lifetime.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", **cookie_flags(request))
    logger.info("%s logged in from %s", session.user, remote_of(request))
    return response


async def logout(request: Request) -> Response:
    checked = await changing(request, need_change_role=False)
    if isinstance(checked, Response):
        return checked
    deps = admin(request)
    await deps.auth.sessions.delete(request.cookies[SESSION_COOKIE])
    response = to_login()
    response.delete_cookie(SESSION_COOKIE, path="/", **cookie_flags(request))
    return response


async def leave_safe_mode(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    reason = form.get("reason", "").strip()
    if not reason:
        return refuse(400, "leaving safe mode needs a reason")
    deps = admin(request)
    await deps.controls.set_safe_mode(False, reason, session.user, deps.auth.clock.now())
    return RedirectResponse("/", status_code=303)


async def acknowledge(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    deps = admin(request)
    escalation_id = request.path_params["escalation_id"]
    if not await deps.escalations.acknowledge(escalation_id, session.user, deps.auth.clock.now()):
        return refuse(404, f"no open escalation {escalation_id}")
    back = form.get("back", "/")
    return RedirectResponse(back if back in BACK else "/", status_code=303)


async def escalations(request: Request) -> Response:
    """Every escalation by state: open (calling people), acknowledged (someone has it,
    the fault remains), closed (the fault cleared)."""
    session = await viewer(request)
    if session is None:
        return to_login()
    views = admin(request).records.views
    return render(
        request,
        "escalations.html",
        session=session,
        may_change=may_change(session),
        by_state={state: await views.escalations(state, LISTED) for state in ESCALATION_STATES},
    )


async def dashboard(request: Request) -> Response:
    session = await current_session(request, admin(request).auth)
    if session is None:
        return to_login()
    return render(
        request,
        "dashboard.html",
        session=session,
        may_change=may_change(session),
        escalations_open=await admin(request).records.views.escalations("open", LISTED),
        **await dashboard_data(request),
    )
