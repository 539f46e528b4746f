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

Nor does uvicorn bound what clients may hold (read in its 0.55 source): its
only timer, keep-alive, is armed after a response, so a connection that sends
nothing, or a header a byte a minute, is kept for ever; ``limit_concurrency``
answers 503 only once a whole request has come in on a socket it has already
accepted, and counts idle connections as requests. About 1,000 idle
connections took every file descriptor and the daemon with them (issue 13).
So this module adds, in as few lines as it can:

* **its own accept loop** (:meth:`_EmbeddedServer._accept`, handing each
  socket to uvicorn with ``loop.connect_accepted_socket``): beyond
  ``max_connections`` a new socket is closed at once, and while the process's
  descriptors come within the reserve kept for supervision
  (:class:`~graylogic_supervisor.fdbudget.FdBudget`) it accepts nothing, so
  waiting clients cost the kernel's backlog, not our descriptors. One socket
  is accepted at a time: the server never holds more than the cap plus two (that one,
  and the listing of ``/proc/self/fd`` that counts them).
* **a request deadline** (:class:`_GuardedH11`): from the moment it waits for a
  request (connected, or the previous answer sent) the whole request, head and
  body, must arrive within ``request_timeout_s``, however it trickles in.
* **a write deadline**: an answer the client does not read for
  ``write_timeout_s`` ends the connection.
* **a request concurrency limit** (:class:`_RequestLimit`): beyond
  ``max_requests`` requests in the app at once the answer is 503 with
  ``Retry-After``, at once; ``/healthz`` is exempt (it costs nothing, and a
  503 there could make an orchestrator restart a working supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from graylogic_supervisor.config import AdminConfig
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.fdbudget import FdBudget
from graylogic_supervisor.metrics import Metrics

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3
"""How long open connections get to finish when the server stops (uvicorn wants an int)."""

TICK_S = 1.0
"""uvicorn's tick, on the wall clock's second: the Date header is all it keeps current here."""

BACKLOG = 128
"""Connections the kernel queues for us while we do not accept (they hold none of our fds)."""

FD_RECHECK_S = 1.0
"""How often a server that stopped accepting for want of descriptors looks again."""

CAP_LOG_EVERY_S = 60.0
"""Connections closed at the cap are logged at most this often (an attack is one line a minute)."""

OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class ServerLimits:
    """What clients of the admin server may hold (``admin`` settings in the config).

    Derived, not the section itself: the connection cap is fitted to the file
    descriptors left at start-up (:func:`limits_for`).
    """

    max_connections: int = 64
    request_timeout_s: float = 10.0
    """From waiting for a request to having all of it, head and body."""
    idle_timeout_s: int = 5
    """A kept-alive connection with no new request (uvicorn's ``timeout_keep_alive``)."""
    write_timeout_s: float = 30.0
    """An answer the client does not read."""
    max_requests: int = 16
    """Requests in the app at once, ``/healthz`` aside."""


def limits_for(admin: AdminConfig, budget: FdBudget) -> ServerLimits:
    """The configured limits, with the connection cap fitted to the descriptors left."""
    return ServerLimits(
        max_connections=budget.fit(admin.max_connections),
        request_timeout_s=admin.request_timeout_s,
        idle_timeout_s=admin.idle_timeout_s,
        write_timeout_s=admin.write_timeout_s,
        max_requests=admin.max_concurrent_requests,
    )


class ListenError(SupervisorError):
    """The web server cannot listen on its address (in use, not ours to bind, unresolvable)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(f"cannot listen on {host}:{port}: {reason}")


class _GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the request and write deadlines it lacks."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        *,
        limits: ServerLimits,
        closed: Callable[[str], None],
    ) -> None:
        super().__init__(config, server_state, app_state)
        self._limits = limits
        self._closed = closed
        self._request_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:  # the whole request is in
            self._cancel_request_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may already take in a pipelined request
        if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
            self._await_request()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self._limits.write_timeout_s, self._expire, "write_timeout"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_deadline()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().connection_lost(exc)

    def _await_request(self) -> None:
        self._cancel_request_deadline()
        self._request_deadline = self.loop.call_later(
            self._limits.request_timeout_s, self._expire, "request_timeout"
        )

    def _cancel_request_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _expire(self, reason: str) -> None:
        """Drop the connection now (abort: nothing buffered is worth waiting for); an app
        still reading the body sees the client gone."""
        if not self.transport.is_closing():
            self._closed(reason)
            self.transport.abort()


class _RequestLimit:
    """At most ``limit`` requests in the app at once; more get 503 at once."""

    EXEMPT = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.running >= self.limit:
            busy = JSONResponse(
                {"error": "the server is busy; try again shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling and with its own accept loop (see the module
    docstring), telling ``ready`` once it serves."""

    def __init__(
        self,
        config: uvicorn.Config,
        ready: asyncio.Event | None,
        limits: ServerLimits,
        *,
        budget: FdBudget | None,
        metrics: Metrics | None,
    ) -> None:
        super().__init__(config)
        self._ready = ready
        self._limits = limits
        self._budget = budget
        self._metrics = metrics
        self._acceptors: list[asyncio.Task[None]] = []
        self._cap_logged_at: float | None = None
        self._closed_at_cap = 0

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
        await super().startup(sockets=[])  # uvicorn's state, without its listeners
        if not self.started:
            return
        for sock in sockets or []:
            sock.listen(BACKLOG)
            sock.setblocking(False)
            self._acceptors.append(asyncio.create_task(self._accept(sock), name="web-accept"))
        logger.info("HTTP API listening on %s", ", ".join(_url(s) for s in sockets or []))
        if self._ready is not None:
            self._ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.stop_accepting()
        await super().shutdown(sockets)

    async def stop_accepting(self) -> None:
        acceptors, self._acceptors = self._acceptors, []
        for task in acceptors:
            task.cancel()
        for task in acceptors:
            with contextlib.suppress(asyncio.CancelledError):  # ours, just cancelled
                await task

    def _protocol(self) -> _GuardedH11:
        return _GuardedH11(
            self.config,
            self.server_state,
            self.lifespan.state,
            limits=self._limits,
            closed=self._closed_by_server,
        )

    async def _accept(self, listener: socket.socket) -> None:
        """One connection at a time: wait for descriptor headroom, accept, and keep the
        socket only while under the cap."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_headroom()
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno not in OUT_OF_FDS:  # the client gave up while queued
                    continue
                logger.warning("admin server cannot accept: %s", exc)
                self._closed_by_server("out_of_fds")
                await asyncio.sleep(FD_RECHECK_S)
                continue
            if self._budget is not None and not self._budget.has_headroom():
                conn.close()  # the check before the accept was passed before it came in
                self._closed_by_server("fd_reserve")
                continue
            if len(self.server_state.connections) >= self._limits.max_connections:
                conn.close()
                self._closed_by_server("cap")
                self._log_cap()
                continue
            try:
                await loop.connect_accepted_socket(self._protocol, conn)
            except OSError as exc:
                conn.close()
                logger.debug("admin connection lost as it was accepted: %s", exc)

    async def _wait_for_headroom(self) -> None:
        if self._budget is None or self._budget.has_headroom():
            return
        logger.warning(
            "admin server stops accepting: %d file descriptors left, %d kept for supervision",
            self._budget.headroom(),
            self._budget.reserve,
        )
        if self._metrics is not None:
            self._metrics.set_admin_accept_paused(True)
        while not self._budget.has_headroom():  # noqa: ASYNC110 (no event says an fd was closed)
            await asyncio.sleep(FD_RECHECK_S)
        logger.info("admin server accepts again: %d file descriptors left", self._budget.headroom())
        if self._metrics is not None:
            self._metrics.set_admin_accept_paused(False)

    def _log_cap(self) -> None:
        """Connections closed at the cap, told at most once a minute (counted in metrics)."""
        self._closed_at_cap += 1
        now = time.monotonic()
        if self._cap_logged_at is not None and now - self._cap_logged_at < CAP_LOG_EVERY_S:
            return
        logger.warning(
            "admin server at its cap of %d connections: %d new one(s) closed since the last report",
            self._limits.max_connections,
            self._closed_at_cap,
        )
        self._cap_logged_at, self._closed_at_cap = now, 0

    def _closed_by_server(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.admin_connection_closed(reason)


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    ready: asyncio.Event | None = None,
    limits: ServerLimits | None = None,
    budget: FdBudget | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Serve ``app`` on ``host``:``port`` until cancelled; ``ready`` is set once it answers.

    ``limits`` bounds what clients may hold; ``budget`` (the process's descriptors)
    stops accepting while the reserve for supervision is reached; ``metrics`` counts
    the connections closed by the server and the pauses.

    Raises :class:`ListenError` when the address cannot be bound, before
    ``ready`` is set. Cancellation stops the server gracefully, waiting at most
    ``GRACEFUL_SHUTDOWN_S`` for open connections, and closes the sockets.
    """
    limits = limits or ServerLimits()
    config = uvicorn.Config(
        _RequestLimit(app, limits.max_requests),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.idle_timeout_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _EmbeddedServer(config, ready, limits, budget=budget, metrics=metrics)
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
        await server.stop_accepting()
        for sock in sockets:
            sock.close()


async def _bind(host: str, port: int) -> list[socket.socket]:
    """A bound socket per address ``host`` resolves to, as asyncio would bind them
    (:meth:`_EmbeddedServer.startup` makes them listen)."""
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
