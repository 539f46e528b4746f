"""uvicorn on the daemon's own loop, as one more task of its TaskGroup.

uvicorn is made for owning a process, and four of its habits do not fit a
server embedded in the daemon:

* ``Server.serve()`` replaces the SIGINT and SIGTERM handlers for as long as
  it runs (``capture_signals``) and raises the signal again when it returns.
  The daemon owns those signals; :class:`_EmbeddedServer` makes
  ``capture_signals`` a no-op, which is the way uvicorn 0.54 allows (there is
  no setting for it).
* When it cannot bind, it logs and calls ``sys.exit(1)``; a ``SystemExit``
  raised in a task stops the whole event loop. So :func:`serve` binds the
  sockets itself and hands them to uvicorn (the ``sockets=`` path that process
  managers use), and a bind failure is a :class:`ListenError` with the address
  and the reason, raised to the caller.
* Cancelling ``serve()`` abandons it in its main loop, with the listening
  socket still open. :func:`serve` catches its own cancellation, runs
  uvicorn's shutdown (stop listening, close connections, bounded wait) and
  re-raises.
* Its main loop wakes ten times a second, to notice ``should_exit`` soon and to
  refresh the ``Date`` header each second. Stopped by cancellation, it only needs
  the latter: :class:`_EmbeddedServer` ticks once a second (``TICK_S``).

uvicorn's loggers propagate to the daemon's handlers (``log_config=None``) and
it writes no access log: a Prometheus scrape every 15 s is not news.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from graylogic_supervisor.errors import SupervisorError

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3
"""How long open connections get to finish when the server stops (uvicorn wants an int)."""

TICK_S = 1.0
"""uvicorn's tick, on the wall clock's second: the Date header is all it keeps current here."""


class ListenError(SupervisorError):
    """The web server cannot listen on its address (in use, not ours to bind, unresolvable)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(f"cannot listen on {host}:{port}: {reason}")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling, telling ``ready`` once it serves."""

    def __init__(self, config: uvicorn.Config, ready: asyncio.Event | None) -> None:
        super().__init__(config)
        self._ready = ready

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The daemon owns SIGTERM and SIGINT and stops this server by cancelling it."""
        yield

    async def main_loop(self) -> None:
        """uvicorn's tick once a second, not ten times: a third of the idle daemon's CPU."""
        while True:
            if await self.on_tick(0):  # 0: a tick that refreshes the Date header
                return
            await asyncio.sleep(TICK_S - time.time() % TICK_S)  # just after the second turns

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        logger.info("HTTP API listening on %s", ", ".join(_url(s) for s in sockets or []))
        if self._ready is not None:
            self._ready.set()


async def serve(app: ASGIApp, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
    """Serve ``app`` on ``host``:``port`` until cancelled; ``ready`` is set once it answers.

    Raises :class:`ListenError` when the address cannot be bound, before
    ``ready`` is set. Cancellation stops the server gracefully, waiting at most
    ``GRACEFUL_SHUTDOWN_S`` for open connections, and closes the sockets.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _EmbeddedServer(config, ready)
    sockets = await _bind(host, port)
    try:
        await server.serve(sockets=sockets)
    except asyncio.CancelledError:
        # serve() was abandoned in its main loop; finish it the way it would have after
        # seeing should_exit. (Setting should_exit instead would need serve() running in
        # a second task of our own, to be awaited after this one is cancelled.)
        if server.started:
            await server.shutdown(sockets=sockets)
        raise
    finally:
        for sock in sockets:
            sock.close()


async def _bind(host: str, port: int) -> list[socket.socket]:
    """A bound socket per address ``host`` resolves to, as asyncio would bind them
    (uvicorn's ``loop.create_server(sock=...)`` makes them listen)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(host, port, exc.strerror or str(exc)) from exc
    sockets: list[socket.socket] = []
    try:
        # getaddrinfo may repeat an address; binding it twice would fail as "in use".
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Else [::] would take the IPv4 port too and the IPv4 bind would fail.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(host, port, exc.strerror or str(exc)) from exc
    return sockets


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
