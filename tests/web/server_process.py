"""The admin server alone in a process of its own, so a test can count the descriptors it
holds (``/proc/PID/fd``) apart from the clients' sockets.

    python -m tests.web.server_process PORT [--max-connections N] [--request-timeout S]
        [--nofile SOFT] [--reserve R]

Serves ``create_app`` (``/healthz``, ``/metrics``) through ``serve`` with the limits
given, wired as the daemon wires it (an ``FdBudget`` of the process, the cap fitted to
it), and prints ``READY <cap>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from collections.abc import Mapping
from datetime import UTC, datetime

from graylogic_supervisor.fdbudget import FdBudget, soft_limit
from graylogic_supervisor.health.monitor import ComponentHealth, Health
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.server import ServerLimits, serve


class AllHealthy:
    def snapshot(self) -> Mapping[str, ComponentHealth]:
        return {"mqtt": ComponentHealth("mqtt", Health.HEALTHY, "ok", datetime.now(UTC), "")}

    def overall(self) -> Health:
        return Health.HEALTHY


async def main(args: argparse.Namespace) -> None:
    if args.nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    metrics = Metrics("test")
    app = create_app(WebDeps(AllHealthy(), frozenset, metrics, "villa-7", "0.1.0"))
    budget = FdBudget(soft_limit(), args.reserve)
    limits = ServerLimits(
        max_connections=budget.fit(args.max_connections),
        request_timeout_s=args.request_timeout,
    )
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(
            app, "127.0.0.1", args.port, ready=ready, limits=limits, budget=budget, metrics=metrics
        )
    )
    await ready.wait()
    print(f"READY {limits.max_connections}", flush=True)
    await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--reserve", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
