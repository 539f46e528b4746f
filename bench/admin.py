"""Latency of the admin page under 20 concurrent clients, while the daemon supervises.

One daemon (``python -m graylogic_supervisor run``, text log) in a temporary directory,
with its own Mosquitto through the process backend on a free loopback port, its own
topic root and its own admin port, and its health probes running: ``mqtt`` as shipped
(every 5 s) and the ``database``, ``memory``, ``disk`` and ``cpu`` components of
``idle.py`` (every 5 s, thresholds nothing reaches). The clients start once every component has
been logged healthy.

**The store.** Before the daemon's first start, its store is filled with a history of
``--history`` executions (1,000): the no-op playbook of ``engine.py``, 10 steps each,
run to ``resolved`` through the real ``Runner``, 10 at a time. The dashboard shows the
10 most recent. ``--history 0`` leaves the store empty (no execution on the page).

**Logging in.** On its first start the daemon writes the ``admin`` password to
``initial-admin-password`` in its state directory and logs where (its log here).
Each client logs in as a browser does: ``GET /login``, the hidden ``csrf_token`` field
of the form, ``POST /login`` (form-encoded ``csrf_token``,
``user``, ``password``), and keeps the ``gls_session`` cookie: 20 clients, 20 sessions.
The clients log in one after the other and the logins are not timed: the daemon checks
the Argon2id hash on its event loop, about 0.5 s a login here, so 20 at once would keep
the last one waiting past the 10 s request timeout.

**A page.** ``GET /`` (the dashboard), then ``/api/v1/system/health`` and ``/healthz``
for comparison, one after the other. For each, the 20 clients (one
``httpx.AsyncClient`` each, all on this script's one event loop, redirects not
followed, one kept-alive connection each) request the page in a loop: ``--warmup`` (2 s)
that is not counted, then ``--duration`` (30 s; ``--quick`` 5 s). A request counts if it
starts within the window; its latency is ``time.perf_counter()`` from just before the
request to just after the whole body is read. Nothing is asserted of the answers.

**Figures**, per page:

- ``requests``: requests started within the window; ``requests_per_s``: that over the
  window's length;
- ``p50_ms``, ``p99_ms``: nearest-rank over the latencies of the 200 answers;
- ``errors``: answers other than 200, and requests that got no answer (an
  ``httpx.HTTPError``, such as the 10 s timeout);
- ``daemon_cpu_percent``, ``client_cpu_percent``: user + system CPU time of the daemon
  process alone (not its broker), and of this script, over the window's wall time,
  100 = one core. The clients share the machine with the daemon, so a client near one
  core is part of what the latency measures.

At the top: ``daemon_rss_mb``, the daemon's largest resident set size in MiB
(``psutil``, every 50 ms during the windows: ``RssSampler`` of ``engine.py`` pointed at
the daemon), and ``daemon_cpu_percent`` over the three windows together. Health
changes logged during the windows are listed in ``health_changes`` (a healthy site has
none) and, with every WARNING or ERROR line of the daemon's log, in ``daemon_log``.

The daemon is stopped at the end, on error, Ctrl-C or SIGTERM too: SIGTERM, then a wait
(``BenchDaemon``), and whatever it left behind is killed.

    .venv/bin/python bench/admin.py [--quick] [--json] [--duration 30] [--history 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from daemon_under_test import BenchDaemon
from engine import MIB, NoOp, RssSampler, Timeline, nearest_rank, noop_playbook, prepare
from engine import run_executions as run_history
from idle import health_changes, resource_components
from processes import BenchError, become_subreaper
from recovery import workspace

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.store.database import Database

PAGES = ("/", "/api/v1/system/health", "/healthz")
CLIENTS = 20
HISTORY_AT_ONCE = 10
REQUEST_TIMEOUT_S = 10.0
INFRA_CHECK_INTERVAL_S = 5.0
PASSWORD_FILE_LINE = r"created the admin page user 'admin'; its password is in (\S+) \("
LISTENING_LINE = r"HTTP API listening on (http://\S+)"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "gls_session"

logger = logging.getLogger("bench.admin")


class DaemonRss(RssSampler):
    """``RssSampler`` pointed at the daemon process instead of this one."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self._process = psutil.Process(pid)


@dataclass
class Window:
    """What the clients saw of one page within the counted window."""

    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self, duration_s: float) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "requests_per_s": round(self.requests / duration_s, 1),
            "p50_ms": round(nearest_rank(ordered, 50), 2) if ordered else None,
            "p99_ms": round(nearest_rank(ordered, 99), 2) if ordered else None,
            "errors": sum(self.errors.values()),
        }


async def seed_history(db_path: Path, executions: int) -> int:
    """``executions`` resolved no-op executions in the daemon's store; how many were kept."""
    book = noop_playbook()
    async with Database(db_path) as db:
        repository, failures = await prepare(db, book, HISTORY_AT_ONCE, executions)
        runner = Runner(ActionRegistry([NoOp(Timeline())]), repository, SystemClock())
        _, raised = await run_history(runner, book, failures, HISTORY_AT_ONCE)
        row = await db.fetchone("SELECT count(*) FROM executions WHERE status = 'resolved'")
    for exc in raised[:3]:  # an execution id drawn twice in a second; see engine.py
        logger.warning("a history execution raised: %r", exc)
    return int(row[0]) if row is not None else 0


async def log_in(client: httpx.AsyncClient, password: str) -> None:
    """As a browser does: the form's CSRF token, then the form; the session cookie stays."""
    try:
        form = await client.get("/login")
        found = CSRF_FIELD.search(form.text)
        if form.status_code != 200 or found is None:
            raise BenchError(f"GET /login answered {form.status_code} without a csrf_token field")
        answer = await client.post(
            "/login", data={"csrf_token": found[1], "user": "admin", "password": password}
        )
    except httpx.HTTPError as exc:
        raise BenchError(f"logging in: {exc!r}") from exc
    if answer.status_code != 303 or SESSION_COOKIE not in client.cookies:
        raise BenchError(f"POST /login answered {answer.status_code} and set no session")


async def client_loop(
    client: httpx.AsyncClient, path: str, counted_from: float, until: float, window: Window
) -> None:
    while (started := time.perf_counter()) < until:
        try:
            answer = await client.get(path)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        else:
            outcome = str(answer.status_code)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if started < counted_from:
            continue
        window.requests += 1
        if outcome == "200":
            window.latencies_ms.append(elapsed_ms)
        else:
            window.errors[outcome] += 1


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure_page(
    clients: list[httpx.AsyncClient],
    path: str,
    daemon: psutil.Process,
    warmup_s: float,
    duration_s: float,
) -> tuple[dict[str, Any], float]:
    """One page's figures, and the daemon's CPU seconds within its window."""
    window = Window()
    counted_from = time.perf_counter() + warmup_s
    until = counted_from + duration_s
    loops = [client_loop(client, path, counted_from, until, window) for client in clients]
    gathered = asyncio.gather(*loops)
    await asyncio.sleep(max(counted_from - time.perf_counter(), 0.0))
    me = psutil.Process()
    daemon_before, me_before = cpu_seconds(daemon), cpu_seconds(me)
    wall_before = time.perf_counter()
    await asyncio.sleep(max(until - time.perf_counter(), 0.0))
    daemon_used, me_used = cpu_seconds(daemon) - daemon_before, cpu_seconds(me) - me_before
    wall = time.perf_counter() - wall_before
    await gathered  # the requests started before the end finish outside the CPU figures
    if window.errors:
        logger.warning("%s: answers other than 200: %s", path, dict(window.errors))
    figures = {
        **window.summary(duration_s),
        "daemon_cpu_percent": round(100 * daemon_used / wall, 1),
        "client_cpu_percent": round(100 * me_used / wall, 1),
    }
    return figures, daemon_used


async def load(
    base_url: str, password: str, pid: int, clients: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    daemon = psutil.Process(pid)
    async with contextlib.AsyncExitStack() as stack:
        logged_in = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S)
            )
            for _ in range(clients)
        ]
        for client in logged_in:  # one at a time: see the module's docstring
            await log_in(client, password)
        logger.info("%d clients logged in, %d sessions", clients, clients)
        pages: dict[str, Any] = {}
        cpu_used = 0.0
        async with DaemonRss(pid) as rss:
            for path in PAGES:
                logger.info("%s: %g s warm-up, then %g s", path, warmup_s, duration_s)
                pages[path], used = await measure_page(
                    logged_in, path, daemon, warmup_s, duration_s
                )
                cpu_used += used
                logger.info(
                    "  %.1f requests/s, p50 %s ms, p99 %s ms, %d errors",
                    pages[path]["requests_per_s"],
                    pages[path]["p50_ms"],
                    pages[path]["p99_ms"],
                    pages[path]["errors"],
                )
    return {
        "pages": pages,
        "daemon_rss_mb": round(rss.peak_bytes / MIB, 1),
        "daemon_cpu_percent": round(100 * cpu_used / (duration_s * len(PAGES)), 1),
    }


def measure(args: argparse.Namespace, duration_s: float) -> dict[str, Any]:
    with workspace("admin", args.keep) as workdir:
        daemon = BenchDaemon(workdir, components=resource_components(INFRA_CHECK_INTERVAL_S))
        history = 0
        if args.history:
            logger.info("filling the store with %d executions", args.history)
            history = asyncio.run(seed_history(daemon.db_path, args.history))
        logger.info("starting the daemon")
        try:
            with daemon:
                password = Path(daemon.wait_for_log(PASSWORD_FILE_LINE)[1]).read_text().strip()
                base_url = daemon.wait_for_log(LISTENING_LINE)[1]
                for component in ("mqtt", *daemon.components):
                    daemon.wait_for_log(rf"{component} is healthy")
                offset = daemon.log_size()
                results = asyncio.run(
                    load(base_url, password, daemon.pid, args.clients, args.warmup, duration_s)
                )
                changes = health_changes(daemon, offset)
                daemon.check_running()
        except (
            BenchError,
            OSError,
            psutil.Error,
            httpx.HTTPError,
            subprocess.SubprocessError,
        ) as exc:
            logger.error("%s", exc)
            return {"error": f"{type(exc).__name__}: {exc}", **daemon.findings()}
        for line in changes:
            logger.warning("health changed while measuring: %s", line)
        return {
            "clients": args.clients,
            "duration_s": duration_s,
            **results,
            "warmup_s": args.warmup,
            "history_executions": history,
            "sessions": args.clients,
            "health_changes": changes,
            **daemon.findings(),
        }


def table(results: dict[str, Any]) -> str:
    if "error" in results:
        return f"error: {results['error']}"
    lines = [
        f"{'page':<24}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}"
        f"{'daemon CPU':>12}{'client CPU':>12}"
    ]
    for path, r in results["pages"].items():
        lines.append(
            f"{path:<24}{r['requests']:>9}{r['requests_per_s']:>9.1f}{r['p50_ms']:>9}"
            f"{r['p99_ms']:>9}{r['errors']:>7}{r['daemon_cpu_percent']:>10.1f} %"
            f"{r['client_cpu_percent']:>10.1f} %"
        )
    lines.append(
        f"{results['clients']} clients, one session each, {results['duration_s']:g} s a page after"
        f" a {results['warmup_s']:g} s warm-up; {results['history_executions']} executions in"
        f" the store; daemon RSS max {results['daemon_rss_mb']:.1f} MiB, CPU"
        f" {results['daemon_cpu_percent']:.1f} % of one core over the three windows"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 s a page (30 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--duration", type=float, help="seconds counted a page (30; --quick 5)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds a page before counting (2)"
    )
    parser.add_argument("--clients", type=int, default=CLIENTS, help="clients at once (20)")
    parser.add_argument(
        "--history", type=int, default=1000, help="executions in the store before start (1,000)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir and logs")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.warmup < 0 or args.clients < 1 or args.history < 0:
        parser.error("--warmup and --history must be >= 0 and --clients at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally on SIGTERM
    become_subreaper()  # a daemon that dies leaves its children to us, to kill and reap at once
    duration_s = args.duration or (5.0 if args.quick else 30.0)
    try:
        results = measure(args, duration_s)
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    print(json.dumps(results) if args.json else table(results))
    return 0 if "error" not in results else 1


if __name__ == "__main__":
    sys.exit(main())
