"""The failure memory's decision as the supervisor asks it: ``FailureMemory.decide()``.

``bench/memory.py`` times the index alone; a decision also reads the learned patterns
(each with its members' occurrences) and, since issue 17, every learned fix's own
record, from a real SQLite store. This times that whole call on the recovery path.

**Method.** A store in a temporary directory gets ``--records`` failures from
``bench/memory.py``'s seeded generator (a site's shape over two years), then the
patterns the supervisor would have learned from them (``learn_around`` on every
record its own fix resolved) and one run of each pattern's learned fix (its record
and counters). Then ``--queries`` fresh failures from the same generator are decided,
each timed alone with ``time.perf_counter()`` after one untimed warm-up; p50 and p99
are nearest-rank. Run it against two trees (``PYTHONPATH``) to compare them: before
issue 17 the store has no ``learned_fix_uses`` and the script skips those runs.

    .venv/bin/python bench/memory_decide.py [--seed 1] [--records 1000] [--queries 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from memory import NOW, failure, nearest_rank, remembered

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.memory.learned import learned_playbook_id
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository

T = TypeVar("T")


class FixedClock:
    """The end of the generated two years, for ever: recency is the same for every query."""

    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(awaitable, seconds)


async def measure(records: int, queries: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        async with Database(Path(tmp) / "bench.db") as db:
            repository = MemoryRepository(db)
            memory = FailureMemory(repository, MemoryConfig(), FixedClock())
            for n in range(records):
                await repository.save(remembered(rng, failure(rng, f"fail-{n}")), NOW)
            await memory.load()
            for stored in await repository.all_records():
                resolution = stored.resolution
                if resolution is not None and resolution.fix_action is not None:
                    await memory.learn_around(stored.context.failure_id)
            patterns = await repository.patterns()
            own_records = hasattr(repository, "record_learned_fix_run")  # issue 17 on
            for pattern in patterns if own_records else []:
                fix = learned_playbook_id(pattern.component, pattern.fix_action, pattern.fix_target)
                await repository.record_learned_fix_run(fix, pattern.id, resolved=True, now=NOW)
            asked = [failure(rng, f"query-{n}") for n in range(queries)]
            await memory.decide(asked[0], "PLAY-BENCH-001")  # warm-up, untimed
            timings: list[float] = []
            chosen = 0
            for context in asked:
                start = time.perf_counter()
                decision = await memory.decide(context, "PLAY-BENCH-001")
                timings.append(time.perf_counter() - start)
                chosen += decision.use_learned_fix
    timings.sort()
    return {
        "records": records,
        "patterns": len(patterns),
        "queries": queries,
        "learned_fix_chosen": chosen,
        "decide_p50_ms": round(nearest_rank(timings, 50) * 1000, 3),
        "decide_p99_ms": round(nearest_rank(timings, 99) * 1000, 3),
        "seed": seed,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="seed for memory and queries (1)")
    parser.add_argument("--records", type=int, default=1000, help="failures remembered (1000)")
    parser.add_argument("--queries", type=int, default=300, help="decisions timed (300)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.records < 1 or args.queries < 1:
        parser.error("--records and --queries must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args.records, args.queries, args.seed))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['records']} records, {result['patterns']} patterns:"
            f" decide() p50 {result['decide_p50_ms']} ms, p99 {result['decide_p99_ms']} ms"
            f" over {result['queries']} decisions ({result['learned_fix_chosen']} chose a"
            " learned fix)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
