"""Look-up latency of the failure memory: ``MemoryIndex.similar()`` over 1,000 and 10,000 records.

The memory is synthetic but shaped like a site's: 12 error ids, each with its own
message templates and a few components it usually strikes (one time in ten any
of the 30); messages with random numbers, addresses and a few random words; every
other component's health, mostly healthy; up to eight recent events; resources,
hour and uptime at random; detected over the last two years; resolved by the
supervisor (55 %), by a person (20 %), closed without a fix action (10 %) or
unresolved (15 %); one record in five merged (``count`` 2 or 5). Queries are 1,000 fresh
failures from the same generator, asked with ``limit=3`` at the end of the
two years. Everything is seeded (``--seed``). The same queries are then asked
again as if from an error id and a component never seen before (``novel_*``),
the worst case for the index's pruning.

**Method.** Each query is timed alone with ``time.perf_counter()``; p50 and p99
are nearest-rank over the 1,000. Build time is ``MemoryIndex(records)`` from
records already in memory. Memory is what ``tracemalloc`` sees allocated by a
second, traced build: the index's own structures, not the records it points to.

    .venv/bin/python bench/memory.py [--seed 1] [--queries 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    RecentEvent,
    Resolution,
    Resources,
)
from graylogic_supervisor.memory.similarity import MemoryIndex

SIZES = (1000, 10000)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=730)

COMPONENTS = [
    "mosquitto",
    "database",
    "disk",
    "memory",
    "cpu",
    "core",
    "web",
    "scheduler",
    *(f"knx-bridge-{i}" for i in range(1, 5)),
    *(f"dali-bridge-{i}" for i in range(1, 5)),
    *(f"modbus-bridge-{i}" for i in range(1, 5)),
    *(f"bacnet-bridge-{i}" for i in range(1, 4)),
    *(f"sonos-bridge-{i}" for i in range(1, 3)),
    "ntp",
    "vpn",
    "backup",
    "ups",
    "weather",
]
ERRORS: dict[str, tuple[list[str], list[str]]] = {  # templates, usual components
    "E-BROKER-DOWN": (
        [
            "broker on {ip}:{port} refused connection after {n} retries",
            "mosquitto exited with status {n}",
        ],
        ["mosquitto"],
    ),
    "E-BROKER-SLOW": (["CONNACK took {ms} ms on port {port}"], ["mosquitto", "cpu"]),
    "E-BRIDGE-SILENT": (
        ["no heartbeat for {n} s from {hex}", "heartbeat stale: last seen {n} s ago"],
        ["knx-bridge-1", "knx-bridge-2", "dali-bridge-1", "modbus-bridge-1"],
    ),
    "E-BRIDGE-CRASH": (
        ["bridge process {pid} exited with signal {n}", "bridge restarted {n} times in {ms} ms"],
        ["knx-bridge-3", "dali-bridge-2", "bacnet-bridge-1", "sonos-bridge-1"],
    ),
    "E-BUS-ERROR": (
        ["bus {ip} telegram queue overflow at {n} frames", "bus coupler {ip} not responding"],
        ["knx-bridge-1", "knx-bridge-4", "modbus-bridge-2"],
    ),
    "E-DB-SLOW": (["quick_check took {ms} ms, limit {n} ms"], ["database", "disk"]),
    "E-DB-LOCKED": (["database is locked after {ms} ms by pid {pid}"], ["database", "core"]),
    "E-DISK-FULL": (["only {n} MB free on /var, need {ms} MB"], ["disk", "backup"]),
    "E-MEMORY": (["memory at {n} percent, {pid} using {ms} MB"], ["memory", "core", "web"]),
    "E-CPU": (["load {n}.{n} per cpu for {ms} s"], ["cpu", "scheduler"]),
    "E-SERVICE-DOWN": (
        ["unit {hex} failed with result exit-code {n}", "service did not start in {n} s"],
        ["core", "web", "scheduler", "vpn", "backup"],
    ),
    "E-CLOCK": (["clock offset {ms} ms from {ip}"], ["ntp", "core"]),
}
WORDS = [
    "timeout",
    "reset",
    "refused",
    "lost",
    "stale",
    "overflow",
    "retry",
    "slow",
    "blocked",
    "dropped",
    "partial",
    "corrupt",
    "checksum",
    "handshake",
    "tls",
    "certificate",
    "expired",
    "unreachable",
    "route",
    "gateway",
    "dns",
    "buffer",
    "socket",
    "pipe",
    "broken",
    "permission",
    "denied",
    "quota",
    "journal",
    "fsync",
    "wal",
    "vacuum",
    "index",
    "lock",
    "contention",
    "spike",
    "burst",
    "firmware",
    "coupler",
    "segment",
    "frame",
    "parity",
    "baud",
    "echo",
    "loop",
    "storm",
    "flood",
]
HEALTH = ["unhealthy", "unknown"]
EVENT_SUBJECTS = [*COMPONENTS, "PLAY-BROKER-001", "PLAY-BRIDGE-002", "alice", "bob"]


def fill(template: str, rng: random.Random) -> str:
    return template.format(
        ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        port=rng.choice([1883, 8883, 9001]),
        n=rng.randrange(1, 500),
        ms=rng.randrange(1, 100000),
        pid=rng.randrange(100, 65536),
        hex=f"{rng.getrandbits(48):012x}",
    )


def failure(rng: random.Random, failure_id: str) -> FailureContext:
    error_id = rng.choice(list(ERRORS))
    templates, usual = ERRORS[error_id]
    component = rng.choice(usual) if rng.random() < 0.9 else rng.choice(COMPONENTS)
    words = rng.sample(WORDS, rng.choice([0, 0, 1, 1, 2, 3]))
    message = " ".join([fill(rng.choice(templates), rng), *words])
    sick = set(rng.sample(COMPONENTS, rng.choice([0, 0, 1, 1, 2, 3, 4])))
    detected_at = NOW - SPAN * rng.random()
    return FailureContext(
        failure_id=failure_id,
        incident_id=f"inc-{failure_id}",
        detected_at=detected_at,
        error_id=error_id,
        component=component,
        severity=rng.choice(["warning", "critical"]),
        message=message,
        other_health={
            name: rng.choice(HEALTH) if name in sick else "healthy"
            for name in COMPONENTS
            if name != component
        },
        recent_events=[
            RecentEvent(
                at=detected_at - timedelta(seconds=rng.randrange(1, 3600)),
                kind=rng.choice(["health", "execution", "config", "user"]),
                subject=rng.choice(EVENT_SUBJECTS),
                detail="",
            )
            for _ in range(rng.randrange(9))
        ],
        resources=Resources(
            memory_percent=rng.uniform(10, 100),
            disk_percent=rng.uniform(10, 100),
            cpu_percent=rng.uniform(0, 100),
            load_per_cpu=rng.uniform(0, 3),
        ),
        environment=Environment(
            hour=rng.randrange(24),
            weekday=rng.randrange(7),
            uptime_s=math.exp(rng.uniform(math.log(60), math.log(3e7))),
        ),
    )


def remembered(rng: random.Random, ctx: FailureContext) -> FailureRecord:
    outcome = rng.random()
    resolution = None
    if outcome < 0.85:
        resolution = Resolution(
            resolved_at=ctx.detected_at + timedelta(minutes=rng.randrange(1, 120)),
            fixed_by="supervisor" if outcome < 0.55 else rng.choice(["alice", "bob"]),
            what_fixed_it="restarted it",
            fix_action=None if outcome >= 0.75 else rng.choice(["restart_service", "reload"]),
            fix_target=ctx.component,
        )
    return FailureRecord(context=ctx, resolution=resolution, count=rng.choice([1] * 8 + [2, 5]))


def nearest_rank(sorted_values: list[float], percent: float) -> float:
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]


def measure(size: int, queries: int, seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}-{size}")
    records = [remembered(rng, failure(rng, f"f-{i}")) for i in range(size)]
    asked = [failure(rng, f"q-{i}") for i in range(queries)]

    started = time.perf_counter()
    index = MemoryIndex(records)
    build_s = time.perf_counter() - started
    tracemalloc.start()
    traced = MemoryIndex(records)
    index_bytes, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced

    samples_ms, found = time_queries(index, asked)
    novel_ms, _ = time_queries(index, [novel(q) for q in asked])
    return {
        "p50_ms": round(nearest_rank(samples_ms, 50), 3),
        "p99_ms": round(nearest_rank(samples_ms, 99), 3),
        "max_ms": round(samples_ms[-1], 3),
        "mean_ms": round(sum(samples_ms) / len(samples_ms), 3),
        "queries": queries,
        "matches_per_query": round(found / queries, 2),
        "build_s": round(build_s, 3),
        "index_bytes": index_bytes,
        "index_peak_bytes": peak_bytes,
        "novel_p50_ms": round(nearest_rank(novel_ms, 50), 3),
        "novel_p99_ms": round(nearest_rank(novel_ms, 99), 3),
    }


def time_queries(index: MemoryIndex, queries: list[FailureContext]) -> tuple[list[float], int]:
    """Each query's time in ms, sorted, and how many matches they found in all."""
    samples_ms = []
    found = 0
    for query in queries:
        started = time.perf_counter()
        matches = index.similar(query, NOW, limit=3)
        samples_ms.append((time.perf_counter() - started) * 1000)
        found += len(matches)
    return sorted(samples_ms), found


def novel(query: FailureContext) -> FailureContext:
    """The same query from an error id on a component the memory has never seen.

    The worst case for pruning: every record shares neither, all bounds are equal,
    only recency and effectiveness order the scan.
    """
    return query.model_copy(update={"error_id": "E-NEW", "component": "new-bridge"})


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'records':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'novel p50':>10}"
        f" {'novel p99':>10} {'build s':>8} {'index MB':>9}"
    ]
    lines.extend(
        f"{size:>8} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.3f}"
        f" {r['novel_p50_ms']:>10.3f} {r['novel_p99_ms']:>10.3f}"
        f" {r['build_s']:>8.3f} {r['index_bytes'] / 1e6:>9.1f}"
        for size, r in results.items()
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="seed for memory and queries (1)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per size (1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = {str(size): measure(size, args.queries, args.seed) for size in SIZES}
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
