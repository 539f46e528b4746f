"""Real starvation of the test process itself: its file descriptors, its default thread pool.

Nothing here is faked: the descriptors are really taken (the soft limit is
lowered to a little above what is open, then every free number is held open),
and the default executor is really filled with threads blocked on an event.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

# Above what is open: room for the test's own bookkeeping until the hold starts.
HEADROOM = 64


@contextmanager
def all_fds_held() -> Iterator[int]:
    """While inside, this process cannot open a file or a socket (EMFILE); yields how many."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = sum(1 for _ in Path("/proc/self/fd").iterdir())
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, in_use + HEADROOM), hard))
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                break
        yield len(held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@asynccontextmanager
async def saturated_default_executor(extra_jobs: int = 50) -> AsyncIterator[int]:
    """Every worker of the loop's default executor blocked, and a queue of jobs behind them.

    Like a burst of password hashes: ``run_in_executor(None, ...)`` and
    ``asyncio.to_thread`` wait behind them until the block is released.
    Yields the number of blocked workers.
    """
    loop = asyncio.get_running_loop()
    release = threading.Event()
    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="saturated")
    loop.set_default_executor(pool)
    running: list[None] = []

    def block() -> None:
        running.append(None)  # list.append is atomic
        release.wait(120)

    jobs = [loop.run_in_executor(None, block) for _ in range(workers + extra_jobs)]
    while len(running) < workers:
        await asyncio.sleep(0.005)
    try:
        yield workers
    finally:
        release.set()
        await asyncio.gather(*jobs)
