"""The Argon2 pool: its own threads, a bounded queue, slots held until a hash really ends."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher

from graylogic_supervisor.passwords import PasswordPool, PasswordsBusy

SLOW = PasswordHasher(time_cost=40, memory_cost=8192, parallelism=1)
"""Slow enough (about a second) that a hash is surely still running when the test looks."""


class NoDefaultExecutor(ThreadPoolExecutor):
    """Installed as the loop's default executor: any use of it fails the test."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError(f"the default executor was used for {fn!r}")


async def test_hashing_runs_in_the_pools_threads_never_the_default_executor() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(NoDefaultExecutor())
    names: list[str] = []

    class Recording(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            names.append(threading.current_thread().name)
            return super().hash(password, salt=salt)

    async with PasswordPool(hasher=Recording()) as pool:
        hashed = await pool.hash("correct horse battery")
        assert await pool.verify(hashed, "correct horse battery")
        assert not await pool.verify(hashed, "wrong")
        assert not await pool.verify("not a hash", "wrong")
    assert names and all(name.startswith("argon2") for name in names)


async def test_beyond_the_workers_and_the_queue_a_request_is_refused_at_once() -> None:
    async with PasswordPool(workers=1, waiting=2, hasher=SLOW) as pool:
        running = [asyncio.create_task(pool.hash(f"password {i}")) for i in range(3)]
        await asyncio.sleep(0)  # each task takes its slot as it starts
        assert not pool.has_room()
        with pytest.raises(PasswordsBusy):
            await pool.verify("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "x")
        hashes = await asyncio.gather(*running)
        assert len(set(hashes)) == 3 and pool.hashes_run == 3
        assert pool.has_room()


async def test_a_cancelled_caller_keeps_its_slot_until_the_hash_ends() -> None:
    async with PasswordPool(workers=1, waiting=0, hasher=SLOW) as pool:
        caller = asyncio.create_task(pool.hash("password"))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not pool.has_room()  # the thread still hashes: no second hash may start
        with pytest.raises(PasswordsBusy):
            await pool.hash("another")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not pool.has_room() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert pool.has_room() and pool.hashes_run == 1
