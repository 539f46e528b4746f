"""What every admin page shares: its collaborators, rendering, and the guards that
decide who may look and who may change."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.store.audit_watch import ChainWatch
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.auth import (
    AuthDeps,
    FormError,
    current_session,
    may_change,
    read_form,
    same,
)

logger = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
PAGE_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'unsafe-inline';"
    " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
"""Pages load nothing from elsewhere, run no script, post only to us, are never framed."""


@dataclass(frozen=True)
class AdminDeps:
    records: PageStore
    """The pages' reads (and a technician's resolution): no page touches the database."""
    auth: AuthDeps
    controls: ControlRepository
    escalations: EscalationRepository
    executions: ExecutionRepository
    commands: CommandRepository
    versions: PlaybookVersions
    learning: LearningService
    termination: Callable[[], TerminationReading]
    metrics_token: str | None = field(default=None, repr=False)
    """Lets a Prometheus scrape /metrics without a session; kept out of ``repr``."""
    audit_watch: ChainWatch | None = None
    """The daemon's incremental audit verification; without it /audit verifies in full."""
    fix_targets: frozenset[str] = frozenset()
    """What a recorded fix may act on (services, components); empty: not checked."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """The failure memory's thresholds: the pages show a pattern against them."""


def templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )


def admin(request: Request) -> AdminDeps:
    deps: AdminDeps = request.app.state.admin
    return deps


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    env: Environment = request.app.state.templates
    context.setdefault("site", request.app.state.deps.site)
    context.setdefault("session", None)
    page = env.get_template(name).render(**context)
    return HTMLResponse(
        page,
        status_code=status,
        # The rest (no framing, no sniffing, no cache) comes from web/headers.py.
        headers={"Content-Security-Policy": PAGE_POLICY},
    )


def to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def not_found(request: Request, session: Session, message: str) -> HTMLResponse:
    """A page for an id nobody knows: a person followed a link, so they get a page
    (with the navigation to go on from), not the API's JSON."""
    return render(request, "not_found.html", 404, session=session, message=message)


def refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def viewer(request: Request) -> Session | None:
    """The session of whoever looks; None sends them to the login."""
    return await current_session(request, admin(request).auth)


async def changing(
    request: Request, need_change_role: bool = True
) -> tuple[Session, dict[str, str]] | Response:
    """The session and form of a state change, or the refusal to send instead."""
    session = await current_session(request, admin(request).auth)
    if session is None:
        return refuse(401, "not logged in")
    try:
        form = await read_form(request)
    except FormError as exc:
        return refuse(400, str(exc))
    if not same(session.csrf, form.get("csrf_token")):
        logger.warning(
            "refused %s by %s: missing or wrong CSRF token", request.url.path, session.user
        )
        return refuse(403, "missing or wrong CSRF token")
    if need_change_role and not may_change(session):
        return refuse(403, f"a {session.role} can look but not change anything")
    return session, form
