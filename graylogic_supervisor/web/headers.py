"""The security headers every answer carries, pages, JSON, redirects and errors alike.

A page may set its own ``Content-Security-Policy`` (``render.py`` allows its
inline styles); any other answer gets one that allows nothing, since JSON, a
redirect or the metrics text never needs to load anything. Nothing here may be
framed (clickjacking), sniffed into another type, or named in a Referer sent
off site, and nothing behind a login is kept in a cache.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Cache-Control", "no-store"),
)


class SecurityHeadersMiddleware:
    """Adds each of ``DEFAULTS`` the response has not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
