"""What clients may hold of the admin server, on real sockets against real uvicorn.

Issue 13: about 1,000 idle connections took every file descriptor of the daemon.
The server whose descriptors are counted runs in a process of its own
(``tests/web/server_process.py``), so the clients' sockets are not mixed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graylogic_supervisor.fdbudget import FdBudget, open_fds, raise_soft_limit
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import read_form
from graylogic_supervisor.web.server import FD_RECHECK_S, ServerLimits, serve
from tests.conftest import free_port
from tests.web.server_process import AllHealthy

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 60.0
"""Generous: what must happen, happens well within it on a loaded 2-core box."""

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class ServerProcess:
    port: int
    cap: int
    process: asyncio.subprocess.Process

    def fds(self) -> int:
        return sum(1 for _ in Path(f"/proc/{self.process.pid}/fd").iterdir())

    async def metric(self, name: str) -> float:
        async with httpx.AsyncClient(timeout=BUDGET_S) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f"graylogic_supervisor_{name}")
        )


@contextlib.asynccontextmanager
async def server_process(*options: str) -> AsyncIterator[ServerProcess]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.web.server_process",
        str(port),
        *options,
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), BUDGET_S)
        assert line.startswith(b"READY "), line
        yield ServerProcess(port, int(line.split()[1]), process)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@pytest.fixture(autouse=True)
def enough_fds_for_the_clients() -> None:
    raise_soft_limit(8192)


async def connect(port: int) -> Stream:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), BUDGET_S)


async def closed_by_server(stream: Stream) -> None:
    """Returns once the server has closed (or reset) the connection."""
    reader, _ = stream
    with contextlib.suppress(ConnectionError):
        while await reader.read(1024):
            pass


async def wait_closed(streams: list[Stream], count: int) -> list[Stream]:
    """Waits until ``count`` of ``streams`` are closed by the server; returns the open ones."""
    tasks = {asyncio.create_task(closed_by_server(s)): s for s in streams}
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUDGET_S
        done: set[asyncio.Task[None]] = set()
        while len(done) < count and loop.time() < deadline:
            finished, _ = await asyncio.wait(
                set(tasks) - done, timeout=deadline - loop.time(), return_when="FIRST_COMPLETED"
            )
            done |= finished
        assert len(done) >= count, f"only {len(done)} of {count} closed"
        return [s for t, s in tasks.items() if t not in done]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.transport.abort()


async def healthz_answered(port: int) -> int:
    """The status of GET /healthz, retried on a closed connection until the budget ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUDGET_S
    while True:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code
        except httpx.TransportError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_idle_connections_beyond_the_cap_are_closed_at_once_and_fds_stay_bounded() -> None:
    async with server_process("--max-connections", "16", "--request-timeout", "600") as server:
        assert (await healthz_answered(server.port)) == 200
        baseline = server.fds()
        streams, most = [], 0
        for _ in range(600):
            streams.append(await connect(server.port))
            most = max(most, server.fds())
        try:
            still_open = await wait_closed(streams, 600 - 16)
            assert len(still_open) == 16  # those under the cap are kept (no timeout yet)
            # The cap, the one accepted over it (closed at once), and the listing of
            # /proc/self/fd by which the server counts its descriptors.
            assert most <= baseline + 16 + 2
            assert server.fds() <= baseline + 16

            # At the cap a newcomer is closed at once too; once the idle ones go, it is served.
            with pytest.raises(httpx.TransportError):
                async with httpx.AsyncClient(timeout=BUDGET_S) as client:
                    await client.get(f"http://127.0.0.1:{server.port}/healthz")
        finally:
            close_all(streams)
        assert (await healthz_answered(server.port)) == 200
        assert await server.metric('admin_connections_closed_total{reason="cap"}') >= 600 - 16


async def trickle(stream: Stream, data: bytes) -> None:
    """Sends ``data`` a byte at a time, four a second: a slowloris."""
    _, writer = stream
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.25)


async def test_connections_that_send_nothing_or_trickle_are_closed_after_the_request_timeout() -> (
    None
):
    async with server_process("--max-connections", "64", "--request-timeout", "2") as server:
        silent = [await connect(server.port) for _ in range(30)]
        slow_head = [await connect(server.port) for _ in range(15)]
        slow_body = [await connect(server.port) for _ in range(15)]
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 100 + b"\r\n"
        body_head = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        for _, writer in slow_body:
            writer.write(body_head)
        tricklers = [asyncio.create_task(trickle(s, head)) for s in slow_head]
        tricklers += [asyncio.create_task(trickle(s, b"x" * 1000)) for s in slow_body]
        try:
            assert await wait_closed(silent + slow_head + slow_body, 60) == []
        finally:
            for task in tricklers:
                task.cancel()
            await asyncio.gather(*tricklers, return_exceptions=True)
            close_all(silent + slow_head + slow_body)
        assert (await healthz_answered(server.port)) == 200
        closed = await server.metric('admin_connections_closed_total{reason="request_timeout"}')
        assert closed >= 60
        assert await server.metric('admin_connections_closed_total{reason="cap"}') == 0


async def test_a_request_that_arrives_in_time_is_served_on_a_kept_alive_connection() -> None:
    async with server_process("--request-timeout", "30") as server:
        reader, writer = await connect(server.port)
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), BUDGET_S)
            assert status.startswith(b"HTTP/1.1 200")
            await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), BUDGET_S)
        writer.close()


async def test_the_lowered_file_limit_lowers_the_cap_to_keep_the_reserve() -> None:
    async with server_process("--nofile", "200", "--reserve", "150") as server:
        assert 1 <= server.cap < 64
        assert server.cap <= 200 - 150 - server.fds()
        streams = [await connect(server.port) for _ in range(300)]
        try:
            await wait_closed(streams, 300 - server.cap)
            assert server.fds() <= 200 - 150  # the reserve is left untouched
        finally:
            close_all(streams)
        assert (await healthz_answered(server.port)) == 200


@contextlib.asynccontextmanager
async def serving(
    app: Starlette, limits: ServerLimits, budget: FdBudget | None = None
) -> AsyncIterator[tuple[int, Metrics]]:
    port, ready, metrics = free_port(), asyncio.Event(), Metrics("test")
    task = asyncio.create_task(
        serve(app, "127.0.0.1", port, ready=ready, limits=limits, budget=budget, metrics=metrics)
    )
    try:
        await asyncio.wait_for(ready.wait(), BUDGET_S)
        yield port, metrics
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def plain_app(slow: Callable[[], Awaitable[None]] | None = None) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def wait(request: Request) -> Response:
        if slow is not None:
            await slow()
        return JSONResponse({"waited": True})

    return Starlette(routes=[Route("/healthz", healthz), Route("/slow", wait)])


async def test_no_connection_is_accepted_while_the_fds_are_within_the_reserve() -> None:
    budget = FdBudget(open_fds() + 60, reserve=30)
    async with serving(plain_app(), ServerLimits(), budget) as (port, metrics):
        assert (await healthz_answered(port)) == 200
        hogs = [Path(os.devnull).open("rb") for _ in range(40)]  # noqa: SIM115
        try:
            first = await connect(port)  # accepted before the check saw it: closed at once
            await wait_closed([first], 1)
            close_all([first])
            reader, writer = await connect(port)  # queued in the kernel, not accepted
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), 3 * FD_RECHECK_S)
            paused = metrics.registry.get_sample_value("graylogic_supervisor_admin_accept_paused")
            assert paused == 1
        finally:
            for hog in hogs:
                hog.close()
        status = await asyncio.wait_for(reader.readline(), BUDGET_S)
        assert status.startswith(b"HTTP/1.1 200")
        writer.close()
        assert metrics.registry.get_sample_value("graylogic_supervisor_admin_accept_paused") == 0


async def test_requests_beyond_the_concurrency_limit_get_503_at_once_but_healthz_answers() -> None:
    release, inside = asyncio.Event(), asyncio.Semaphore(0)

    async def slow() -> None:
        inside.release()
        await release.wait()

    limits = ServerLimits(max_requests=2)
    async with (
        serving(plain_app(slow), limits) as (port, _),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=BUDGET_S) as c,
    ):
        held = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
        for _ in range(2):
            await asyncio.wait_for(inside.acquire(), BUDGET_S)
        busy = await c.get("/slow")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert (await c.get("/healthz")).status_code == 200
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await c.get("/slow")).status_code == 200


def test_a_low_soft_file_limit_is_raised_toward_the_hard_one_and_never_lowered() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        "from graylogic_supervisor.fdbudget import raise_soft_limit\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, hard))\n"
        "print(raise_soft_limit())\n"
    )
    for soft, expected in ((256, min(4096, hard)), (min(hard, 10_000), min(hard, 10_000))):
        out = subprocess.run(
            [sys.executable, "-c", script.replace("SOFT", str(soft))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(out.stdout) == expected


def test_the_cap_is_fitted_to_the_room_the_reserve_leaves() -> None:
    assert FdBudget(open_fds() + 10_000, reserve=100).fit(64) == 64
    lowered = FdBudget(open_fds() + 100, reserve=80).fit(64)
    assert 1 <= lowered <= 18
    assert FdBudget(open_fds() + 10, reserve=80).fit(64) == 1  # /healthz still answers


async def test_a_login_body_that_trickles_is_cut_off_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def form(request: Request) -> Response:
        return JSONResponse({"fields": len(await read_form(request))})

    app = create_app(WebDeps(AllHealthy(), frozenset, Metrics("test"), "villa-7", "0.1.0"))
    app.router.routes.append(Route("/form", form, methods=["POST"]))
    limits = ServerLimits(request_timeout_s=1.0)
    async with serving(app, limits) as (port, metrics):
        stream = await connect(port)
        stream[1].write(
            b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: 500\r\n\r\n"
        )
        slow = asyncio.create_task(trickle(stream, b"a" * 500))
        try:
            assert await wait_closed([stream], 1) == []
        finally:
            slow.cancel()
            await asyncio.gather(slow, return_exceptions=True)
            close_all([stream])
        closed = metrics.registry.get_sample_value(
            "graylogic_supervisor_admin_connections_closed_total", {"reason": "request_timeout"}
        )
        assert closed == 1
        assert (await healthz_answered(port)) == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
