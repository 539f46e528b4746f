"""Latency of /audit and how long it holds the event loop, at 100,000 audit entries.

The real admin app, served by uvicorn on a free loopback port, on this script's one
event loop, over a store whose audit log holds ``--entries`` (100,000) chained entries
(written with sqlite3 before the server starts, as a long-lived site accumulates
them). A loop-lag probe runs on the same loop: a coroutine that sleeps 10 ms and
records by how much each wake-up came late. The client (``httpx.AsyncClient``, same
loop, logged in as ``ada``) then asks ``GET /audit`` ``--requests`` (20) times,
``--appends`` (5) new entries appended through ``AuditLog`` before each (a site
that keeps recording), then the same for ``GET /api/v1/audit``.

Run it against any version of the package: where ``ChainWatch`` exists (the daemon's
incremental verification) it is wired as the daemon wires it (a one-thread ``audit``
executor, a head file beside the store, ``run()`` started and its first full pass
awaited before the requests, that pass measured as ``startup_full_pass``); where it
does not, the pages verify as that version does.

**Figures**: per page, ``p50_ms`` and ``max_ms`` of the request latency
(``perf_counter`` around the whole request); ``loop_lag_max_ms`` and
``loop_lag_p99_ms``: the lateness of the probe's 10 ms ticks during that page's
requests; and ``full_verify`` (``AuditLog.verify()``, what ``audit verify`` runs):
its wall time and the probe's worst lateness during it.

    PYTHONPATH=/work/main     .venv/bin/python bench/audit_view.py --json   # before
    PYTHONPATH=/work/wt-audit .venv/bin/python bench/audit_view.py --json   # after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import re
import socket
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from graylogic_supervisor.clock import SystemClock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.store.audit import AuditLog, entry_hash
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore
from graylogic_supervisor.supervisor.policy import TerminationReading
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps
from graylogic_supervisor.web.server import serve

try:
    from concurrent.futures import ThreadPoolExecutor

    from graylogic_supervisor.store.audit_head import ChainHead, HeadFile
    from graylogic_supervisor.store.audit_watch import ChainWatch
except ImportError:  # a version without the incremental watch: "before"
    ChainWatch = None  # type: ignore[assignment,misc]

PASSWORD = "correct horse battery"
TICK_S = 0.010


class LagProbe:
    """Ticks every 10 ms on the loop; a late tick is time the loop was held."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (when it was due, when it woke)

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            self.samples.append((due, time.perf_counter()))

    def between(self, start: float, end: float) -> dict[str, float]:
        """The lateness of every tick that was due or woke within [start, end] (a tick
        held through the whole window counts too)."""
        late = sorted(woke - due for due, woke in self.samples if woke >= start and due <= end)
        if not late:
            return {"loop_lag_max_ms": 0.0, "loop_lag_p99_ms": 0.0, "ticks_late_over_50ms": 0}
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        return {
            "loop_lag_max_ms": round(late[-1] * 1000, 1),
            "loop_lag_p99_ms": round(p99 * 1000, 1),
            "ticks_late_over_50ms": sum(1 for lag in late if lag > 0.050),
        }


def fill(path: Path, entries: int) -> tuple[int, str]:
    raw = sqlite3.connect(path)
    prev, at = "0" * 64, isoformat(datetime(2026, 1, 1, tzinfo=UTC))
    rows = []
    for seq in range(1, entries + 1):
        detail = json.dumps({"n": seq, "reason": "bench"}, sort_keys=True)
        digest = entry_hash(
            prev, seq, at, "alice", action="maintenance.start", subject="mqtt", detail=detail
        )
        rows.append((seq, at, "alice", "maintenance.start", "mqtt", detail, prev, digest))
        prev = digest
    with raw:
        raw.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    raw.close()
    return entries, prev


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def log_in(http: httpx.AsyncClient) -> None:
    page = await http.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    done = await http.post(
        "/login", data={"csrf_token": token.group(1), "user": "ada", "password": PASSWORD}
    )
    assert done.status_code == 303, done.status_code


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    path = directory / "supervisor.db"
    async with Database(path):
        pass  # the schema
    last = fill(path, args.entries)
    gc.collect()  # the fill's garbage is the bench's, not the daemon's
    result: dict[str, Any] = {"entries": args.entries, "incremental_watch": ChainWatch is not None}
    probe = LagProbe()
    probe_task = asyncio.create_task(probe.run())
    clock = SystemClock()
    worker = ThreadPoolExecutor(1, "audit") if ChainWatch is not None else None
    try:
        async with Database(path) as db:
            audit = AuditLog(db, worker) if worker is not None else AuditLog(db)
            watch = None
            if ChainWatch is not None:
                HeadFile(path.with_name(path.name + ".audit-head")).create(ChainHead(*last))
                watch = ChainWatch(audit, clock)
            users = UserRepository(db)
            await users.add("ada", "admin", PASSWORD, clock.now())
            learning = LearningService(
                db,
                PlaybookVersions(db),
                audit,
                builtin_specs(),
                settings=LearningConfig(),
                clock=clock,
            )
            extra = [None, watch] if watch is not None else []
            app = create_app(
                WebDeps(_Health(), frozenset, Metrics("bench"), "bench", "0"),
                AdminDeps(
                    PageStore.of(db),
                    AuthDeps(users, SessionRepository(db), audit, clock),
                    ControlRepository(db, audit),
                    EscalationRepository(db, audit),
                    ExecutionRepository(db),
                    CommandRepository(db),
                    PlaybookVersions(db),
                    learning,
                    lambda: TerminationReading(None, 0, 0),
                    *extra,
                ),
            )
            start = time.perf_counter()
            await asyncio.sleep(1.0)
            result["idle_second"] = probe.between(start, time.perf_counter())
            port, ready = free_port(), asyncio.Event()
            server = asyncio.create_task(serve(app, "127.0.0.1", port, ready=ready))
            await ready.wait()
            watcher = None
            if watch is not None:
                start = time.perf_counter()
                watcher = asyncio.create_task(watch.run(lambda _head: None))
                while watch.verified is None:
                    await asyncio.sleep(0.005)
                end = time.perf_counter()
                result["startup_full_pass"] = {
                    "seconds": round(end - start, 3),
                    **probe.between(start, end),
                }
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=60
                ) as http:
                    await log_in(http)
                    for page in ("/audit", "/api/v1/audit"):
                        result[page] = await _requests(http, page, audit, probe, args)
                start = time.perf_counter()
                check = await audit.verify()
                end = time.perf_counter()
                await asyncio.sleep(0.1)  # the probe's held tick wakes and is counted
                result["full_verify"] = {
                    "seconds": round(end - start, 3),
                    "ok": check.ok,
                    **probe.between(start, end),
                }
            finally:
                for task in (watcher, server):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
    finally:
        probe_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe_task
        if worker is not None:
            worker.shutdown()
    return result


async def _requests(
    http: httpx.AsyncClient, page: str, audit: AuditLog, probe: LagProbe, args: argparse.Namespace
) -> dict[str, Any]:
    latencies: list[float] = []
    spans: list[tuple[float, float]] = []
    for n in range(args.requests):
        for k in range(args.appends):
            await audit.append(
                "bob", "bench.append", "site", {"n": n, "k": k}, now=datetime.now(UTC)
            )
        start = time.perf_counter()
        answer = await http.get(page)
        end = time.perf_counter()
        assert answer.status_code == 200, answer.status_code
        assert ("verifies" in answer.text) or ('"verified":true' in answer.text), answer.text[:300]
        latencies.append(end - start)
        spans.append((start, end))
    lags = [probe.between(s, e) for s, e in spans]
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "loop_lag_max_ms": max(lag["loop_lag_max_ms"] for lag in lags),
        "loop_lag_p99_ms": sorted(lag["loop_lag_p99_ms"] for lag in lags)[
            min(len(lags) - 1, int(len(lags) * 0.99))
        ],
        "ticks_late_over_50ms": sum(lag["ticks_late_over_50ms"] for lag in lags),
    }


class _Health:
    def snapshot(self) -> dict[str, Any]:
        return {}

    def overall(self) -> Any:
        from graylogic_supervisor.health.monitor import Health

        return Health.HEALTHY


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--appends", type=int, default=5, help="entries appended before each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as directory:
        result = asyncio.run(bench(args, Path(directory)))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
