"""The supervisor's HTTP API: liveness, system health and Prometheus metrics.

With the admin page mounted (the daemon always mounts it), every route but
``/healthz`` needs a login: ``/api/v1/system/health`` the page's session,
``/metrics`` the session or the bearer token ``admin.metrics_token`` (for a
Prometheus scrape); both also take a user's API token. ``/healthz`` stays open,
since liveness checks carry no credentials. Without the admin page (unit tests of
the API alone) they are open.

The app is built by :func:`create_app` from the collaborators the composition
root hands it, kept on ``app.state``: nothing is imported as a singleton, so a
test builds an app around a real ``HealthMonitor`` and ``Metrics`` of its own.
The daemon hands the admin page's collaborators as a function: the page's
modules (templates, every page, the learning's analysis) are imported, and its
routes added, on the first request other than ``/healthz``, before it is routed;
a supervisor nobody looks at never holds them in memory.

Every answer is JSON, errors included: an unknown path is a 404 and a wrong
method a 405 (with ``Allow``), and an exception in a handler is logged here,
once, and answered with a bare 500 so no traceback or internal detail ever
reaches a client.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graylogic_supervisor.errors import StoreFullError
from graylogic_supervisor.health.monitor import ComponentHealth, Health, health_payload
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.store.database import DISK_ERROR_ID
from graylogic_supervisor.web.auth import api_caller, same
from graylogic_supervisor.web.headers import SecurityHeadersMiddleware

if TYPE_CHECKING:
    from graylogic_supervisor.web.render import AdminDeps

logger = logging.getLogger(__name__)


class HealthView(Protocol):
    """What the API reads of component health (``HealthMonitor`` is one)."""

    def snapshot(self) -> Mapping[str, ComponentHealth]: ...

    def overall(self) -> Health: ...


@dataclass(frozen=True)
class WebDeps:
    """The app's collaborators, built by the composition root."""

    health: HealthView
    recovering: Callable[[], frozenset[str]]
    """The components with a recovery in progress (``Supervisor.recovering``)."""
    metrics: Metrics
    site: str
    version: str


def create_app(
    deps: WebDeps, admin: AdminDeps | Callable[[], AdminDeps] | None = None
) -> Starlette:
    """The API; with ``admin``, also the admin page (login, dashboard, actions).

    ``admin`` as a function is called, and the page mounted, on the first request
    that is not ``/healthz`` (see the module's docstring).
    """
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/v1/system/health", system_health, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
    ]
    middleware = [Middleware(SecurityHeadersMiddleware), Middleware(InternalErrorMiddleware)]
    if callable(admin):
        build = admin

        def mount_admin() -> None:
            _mount_admin(app, build())

        middleware.append(Middleware(AdminOnFirstUse, mount=mount_admin))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
    )
    app.state.deps = deps
    if admin is not None and not callable(admin):
        _mount_admin(app, admin)
    return app


def _mount_admin(app: Starlette, admin: AdminDeps) -> None:
    """The admin page's routes after the API's, its collaborators and templates."""
    from graylogic_supervisor.web.admin import admin_routes
    from graylogic_supervisor.web.render import templates

    app.router.routes.extend(admin_routes())
    app.state.admin = admin
    app.state.templates = templates()


class AdminOnFirstUse:
    """Mounts the admin page before the first request that is not ``/healthz`` is routed.

    Until then no route but the API's exists and ``app.state`` holds no ``admin``;
    nothing that needs a login is answered before the page (and its login) is there.
    """

    def __init__(self, app: ASGIApp, mount: Callable[[], None]) -> None:
        self.app = app
        self._mount: Callable[[], None] | None = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._mount is not None and scope["type"] == "http" and scope["path"] != "/healthz":
            self._mount()  # synchronous: no other request runs meanwhile; if it fails,
            self._mount = None  # the request is a 500 and the next one tries again
        await self.app(scope, receive, send)


def _deps(request: Request) -> WebDeps:
    deps: WebDeps = request.app.state.deps
    return deps


async def healthz(request: Request) -> Response:
    """Liveness: the loop is turning and answering. Says nothing of the components,
    so an orchestrator never restarts the supervisor because the broker is down."""
    return JSONResponse({"status": "ok"})


async def _refused(request: Request, metrics: bool = False) -> Response | None:
    """With the admin page mounted, these routes need its session (or, for /metrics,
    the configured bearer token); None when the request may go on."""
    admin: AdminDeps | None = getattr(request.app.state, "admin", None)
    if admin is None:
        return None
    if metrics and admin.metrics_token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if same(admin.metrics_token, given):
            return None
    caller = await api_caller(request, admin.auth)  # a session, or an API token
    if isinstance(caller, Response):
        return caller
    if request.query_params:  # as the API's guard: a parameter is never dropped in silence
        name = next(iter(request.query_params))
        return JSONResponse(
            {"error": f"unknown query parameter {name!r}; this one takes: none"}, status_code=400
        )
    return None


async def system_health(request: Request) -> Response:
    """
    responses:
      200: {description: "overall and per-component health, and what is being recovered"}
      401: {description: not logged in}
    """
    refused = await _refused(request)
    if refused is not None:
        return refused
    deps = _deps(request)
    components = {
        name: _component_json(state) for name, state in sorted(deps.health.snapshot().items())
    }
    return JSONResponse(
        {
            "status": deps.health.overall().value,
            "site": deps.site,
            "version": deps.version,
            "components": components,
            "recovering": sorted(deps.recovering()),
        }
    )


def _component_json(state: ComponentHealth) -> dict[str, str]:
    """The MQTT health payload's fields, so both interfaces say the same thing
    (``error_id`` is empty unless the component is unhealthy)."""
    payload = health_payload(state)
    del payload["component"]  # it is the key
    return payload


async def prometheus_metrics(request: Request) -> Response:
    """The exposition, with component health read from the monitor at scrape time
    so the gauge can never lag behind what ``/api/v1/system/health`` says."""
    refused = await _refused(request, metrics=True)
    if refused is not None:
        return refused
    deps = _deps(request)
    for name, state in deps.health.snapshot().items():
        deps.metrics.set_component_health(name, state.health.value)
    return Response(deps.metrics.exposition(), media_type=deps.metrics.content_type)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405: JSON for the API and scripts, a small page for a person
    whose browser followed a wrong address (it asks for HTML, outside ``/api/``)."""
    assert isinstance(exc, HTTPException)
    wants_page = "text/html" in request.headers.get("accept", "")
    if wants_page and not request.url.path.startswith(("/api/", "/metrics", "/healthz")):
        page = ERROR_PAGE.format(status=exc.status_code, detail=html.escape(str(exc.detail)))
        return HTMLResponse(page, status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


# Self-contained (no template, no session): it answers before the admin page is loaded.
ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} {detail} - graylogic-supervisor</title></head>
<body>
<h1>{detail}</h1>
<p>There is no page at this address. <a href="/">Back to the dashboard</a></p>
</body></html>
"""


class InternalErrorMiddleware:
    """Turns an unhandled exception into a 500 JSON answer, logging it once.

    Starlette's own 500 handler answers and then re-raises, so uvicorn logs the
    same error a second time (and a test transport raises it); here it ends.
    A client that left in the middle of its request is nobody's error: there is
    no one to answer, and a slow-body attack must not fill the log with tracebacks.
    If the response has already started there is nothing left to answer with:
    the exception goes on to the server, which logs it and drops the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except ClientDisconnect:  # gone mid-body (the server's request deadline, or its own)
            logger.debug("client left during %s %s", scope["method"], scope["path"])
        except StoreFullError as exc:  # nothing wrong with the request: try again later
            if started:
                raise
            logger.error(
                "cannot answer %s %s, the store's disk is full: %s",
                scope["method"],
                scope["path"],
                exc,
                extra={"error_id": DISK_ERROR_ID},
            )
            response = JSONResponse(
                {"error": "the supervisor's disk is full: nothing could be recorded"},
                status_code=503,
                headers={"Retry-After": "60"},
            )
            await response(scope, receive, send)
        except Exception:
            if started:
                raise
            logger.exception("internal error answering %s %s", scope["method"], scope["path"])
            response = JSONResponse({"error": "internal error"}, status_code=500)
            await response(scope, receive, send)
