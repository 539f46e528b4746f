"""Login, sessions, CSRF and the login rate limit for the admin page.

- A session is a random token in a cookie that is HttpOnly, SameSite=Strict and
  Secure when the page is served over HTTPS; the store keeps only its hash.
- Every state change is a POST whose form carries the session's CSRF token
  (compared in constant time). The login form, which has no session yet, uses
  a double-submit token: a cookie and a hidden field that must match.
- A login reserves its attempt in the store before the password is hashed
  (``SessionRepository.reserve_attempt``). A user name from one address with
  ``LoginLimits.per_pair`` (5) failed or pending attempts within 15 minutes is
  refused (429, with ``Retry-After``) until the oldest leaves the window,
  whether or not the next password is right; past ``LoginLimits.overall`` (30)
  failures of all pairs within a minute everybody gets 429 until that minute
  has passed. ``graylogic-supervisor user unlock NAME`` forgets the failures.
- The hash runs in the daemon's password pool; when it is full the login gets
  503 with ``Retry-After`` at once, having hashed nothing and counted nothing.
- A failed login is audited (at most the limit's worth); a refused one is
  counted in ``login_refused_total`` and logged at most once a minute.
- Roles: ``viewer`` reads; ``admin`` and ``system_owner`` may also change things.
- Scripts use an API token (``Authorization: Bearer TOKEN``, made with
  ``graylogic-supervisor user token create``) on ``/api/v1`` and ``/metrics`` only,
  never on the pages. It acts as its user with the user's role; it needs no CSRF token,
  since a browser never sends it on its own as it sends a cookie. A token that is
  unknown, revoked, expired or whose user is disabled is a 401 with
  ``WWW-Authenticate``; a bearer header is never passed over for the cookie.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypedDict
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.passwords import PasswordsBusy
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.sessions import LoginLimits, Session, SessionRepository
from graylogic_supervisor.store.tokens import TokenRepository
from graylogic_supervisor.store.users import APPROVERS, UserRepository

logger = logging.getLogger(__name__)

SESSION_COOKIE = "gls_session"
LOGIN_CSRF_COOKIE = "gls_login_csrf"
MAX_FORM_BYTES = 16_384
MAX_NAME_CHARS = 64
"""A longer user name cannot exist (``USER_NAME``); it is cut before it is stored or logged."""
REFUSAL_LOG_EVERY = timedelta(minutes=1)


class FormError(Exception):
    """A form that cannot be read (too large, not urlencoded, not UTF-8)."""


class RefusalLog:
    """Logins refused by the limit or a full pool: each counted, logged at most once a
    minute (a guessing burst must not flood the journal)."""

    def __init__(self) -> None:
        self._logged_at: datetime | None = None
        self._unlogged = 0

    def note(self, reason: str, name: str, remote: str, now: datetime) -> None:
        self._unlogged += 1
        if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_EVERY:
            return
        logger.warning(
            "%d login(s) refused (%s) since the last report; the latest for %r from %s",
            self._unlogged,
            reason,
            name,
            remote,
        )
        self._logged_at, self._unlogged = now, 0


@dataclass(frozen=True)
class AuthDeps:
    users: UserRepository
    """Its ``passwords`` pool hashes every login."""
    sessions: SessionRepository
    audit: AuditLog
    clock: Clock
    session_lifetime: timedelta = timedelta(hours=12)
    limits: LoginLimits = field(default_factory=LoginLimits)
    metrics: Metrics | None = None
    refusals: RefusalLog = field(default_factory=RefusalLog)
    tokens: TokenRepository | None = None
    """API tokens; None: no bearer token is accepted."""


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


BEARER = "Bearer "
CHALLENGE = 'Bearer realm="graylogic-supervisor"'


@dataclass(frozen=True)
class ApiCaller:
    """Who calls the API: a session, from its cookie or from an API token (``by_token``;
    its ``csrf`` is empty, as no CSRF token applies)."""

    session: Session
    by_token: bool


def unauthorized(message: str, token_error: bool = False) -> Response:
    """401 with the challenge that says a bearer token is accepted here."""
    challenge = f'{CHALLENGE}, error="invalid_token"' if token_error else CHALLENGE
    return JSONResponse(
        {"error": message}, status_code=401, headers={"WWW-Authenticate": challenge}
    )


async def api_caller(request: Request, auth: AuthDeps) -> ApiCaller | Response:
    """The caller of an ``/api/v1`` route (or ``/metrics``): the bearer token when the
    request has one, else the session cookie; else the 401 to answer."""
    header = request.headers.get("authorization")
    if header is not None and header[: len(BEARER)].lower() == BEARER.lower():
        token = header[len(BEARER) :].strip()
        now = auth.clock.now()
        holder = None if auth.tokens is None else await auth.tokens.holder(token, now)
        if holder is None:
            return unauthorized("unknown, revoked or expired token", token_error=True)
        expires = holder.expires_at or ""
        return ApiCaller(Session(holder.user, holder.role, "", expires), by_token=True)
    session = await current_session(request, auth)
    if session is None:
        return unauthorized("not logged in")
    return ApiCaller(session, by_token=False)


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


async def log_in(auth: AuthDeps, name: str, password: str, remote: str) -> tuple[str, Session]:
    """A new session, or ``LoginRefused``: 401 wrong, 429 too many failures, 503 the
    password pool is full. Only an attempt reserved in the store is hashed."""
    name = name[:MAX_NAME_CHARS]
    now = auth.clock.now()
    if not auth.users.passwords.has_room():  # spares the store a reservation to drop
        raise _refused(auth, "busy", name, remote, now=now)
    reservation = await auth.sessions.reserve_attempt(name, remote, now, auth.limits)
    if reservation.attempt_id is None:
        assert reservation.refused is not None
        raise _refused(
            auth,
            reservation.refused,
            name,
            remote,
            now=now,
            retry_after_s=reservation.retry_after_s,
        )
    try:
        user = await auth.users.verify(name, password)
    except PasswordsBusy:
        await auth.sessions.drop_attempt(reservation.attempt_id)
        raise _refused(auth, "busy", name, remote, now=now) from None
    # Anything else (a crash, a cancelled request) leaves the reservation pending: it
    # counts as a failure until it expires, which errs on the side of the limit.
    await auth.sessions.finish_attempt(reservation.attempt_id, user is not None)
    if user is None:
        logger.warning("failed login for %r from %s", name, remote)
        await auth.audit.append(
            "anonymous", "session.login_failed", name, {"remote": remote}, now=auth.clock.now()
        )
        raise LoginRefused(401, "Wrong user name or password.")
    token, session = await auth.sessions.create(user.name, now, auth.session_lifetime)
    await auth.audit.append(user.name, "session.login", "admin", {"remote": remote}, now=now)
    return token, session


def _refused(
    auth: AuthDeps, reason: str, name: str, remote: str, *, now: datetime, retry_after_s: int = 0
) -> LoginRefused:
    if auth.metrics is not None:
        auth.metrics.login_refused(reason)
    auth.refusals.note(reason, name, remote, now)
    if reason == "busy":
        return LoginRefused(
            503, "Too many logins at once; try again in a moment.", PasswordsBusy.retry_after_s
        )
    return LoginRefused(429, "Too many failed logins; try again later.", retry_after_s)


def may_change(session: Session) -> bool:
    return session.role in APPROVERS
