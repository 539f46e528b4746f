"""Login, sessions, CSRF and the login rate limit for the admin page.

- A session is a random token in a cookie that is HttpOnly, SameSite=Strict and
  Secure when the page is served over HTTPS; the store keeps only its hash.
- Every state change is a POST whose form carries the session's CSRF token
  (compared in constant time). The login form, which has no session yet, uses
  a double-submit token: a cookie and a hidden field that must match.
- A user name or an address with ``MAX_FAILURES`` failed logins within
  ``FAILURE_WINDOW`` is refused (429, with ``Retry-After``) until the oldest of
  them leaves the window, whether or not the next password is right.
- Roles: ``viewer`` reads; ``admin`` and ``system_owner`` may also change things.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypedDict
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.sessions import Session, SessionRepository
from graylogic_supervisor.store.users import APPROVERS, UserRepository

logger = logging.getLogger(__name__)

SESSION_COOKIE = "gls_session"
LOGIN_CSRF_COOKIE = "gls_login_csrf"
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FORM_BYTES = 16_384


class FormError(Exception):
    """A form that cannot be read (too large, not urlencoded, not UTF-8)."""


@dataclass(frozen=True)
class AuthDeps:
    users: UserRepository
    sessions: SessionRepository
    audit: AuditLog
    clock: Clock
    session_lifetime: timedelta = timedelta(hours=12)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, first value of each field; refused beyond MAX_FORM_BYTES."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("expected a form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"unreadable form: {exc}") from exc
    return {key: values[0] for key, values in fields.items()}


def remote_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def same(secret: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(secret.encode(), given.encode())


class CookieFlags(TypedDict):
    httponly: bool
    samesite: Literal["strict"]
    secure: bool


def cookie_flags(request: Request) -> CookieFlags:
    """Every cookie we set or delete: out of scripts' reach, never sent by another
    site's page, and only over HTTPS when the page is served over HTTPS."""
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https"}


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", **cookie_flags(request))


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


async def current_session(request: Request, auth: AuthDeps) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await auth.sessions.get(token, auth.clock.now())


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


async def log_in(auth: AuthDeps, name: str, password: str, remote: str) -> tuple[str, Session]:
    """A new session, or ``LoginRefused`` (401 wrong, 429 too many failures)."""
    now = auth.clock.now()
    since = now - FAILURE_WINDOW
    by_user, by_remote = await auth.sessions.failures_since(name, remote, since)
    if by_user >= MAX_FAILURES or by_remote >= MAX_FAILURES:
        oldest = await auth.sessions.oldest_failure_since(name, remote, since)
        wait = FAILURE_WINDOW.total_seconds()
        if oldest:
            wait = (datetime.fromisoformat(oldest) + FAILURE_WINDOW - now).total_seconds()
        logger.warning("login refused for %r from %s: too many failures", name, remote)
        raise LoginRefused(429, "Too many failed logins; try again later.", max(1, int(wait) + 1))
    user = await auth.users.verify(name, password)
    await auth.sessions.record_attempt(name, remote, user is not None, now)
    if user is None:
        logger.warning("failed login for %r from %s", name, remote)
        raise LoginRefused(401, "Wrong user name or password.")
    token, session = await auth.sessions.create(user.name, now, auth.session_lifetime)
    await auth.audit.append(user.name, "session.login", "admin", {"remote": remote}, now)
    return token, session


def may_change(session: Session) -> bool:
    return session.role in APPROVERS
