"""Telling our own failures from the component's: errno classes, chained causes, loop lag."""

from __future__ import annotations

import asyncio
import errno
import time

import pytest

from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.impairment import (
    CouldNotTell,
    LagWatch,
    could_not_tell_from,
    fds_exhausted,
    own_resource_failure,
)
from tests.exhaustion import all_fds_held


def test_our_resources_running_short_are_told_from_the_peer_failing() -> None:
    assert "EMFILE" in (own_resource_failure(OSError(errno.EMFILE, "Too many open files")) or "")
    assert own_resource_failure(MemoryError()) is not None
    assert own_resource_failure(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) is None
    assert own_resource_failure(TimeoutError()) is None


def test_an_error_translated_at_a_boundary_keeps_its_cause() -> None:
    """systemctl that could not be started for want of an fd is still our failure."""
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as exc:
            raise ServiceError("mosquitto", "systemctl could not be started") from exc
    except ServiceError as translated:
        found = could_not_tell_from(translated, "read the status of mosquitto")
    assert isinstance(found, CouldNotTell)
    assert found.cause == "fds"
    assert could_not_tell_from(ServiceError("mosquitto", "unit not found"), "read") is None


def test_fds_exhausted_is_true_only_while_they_are() -> None:
    assert not fds_exhausted()
    with all_fds_held():
        assert fds_exhausted()
    assert not fds_exhausted()


async def test_a_blocked_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    async with LagWatch() as idle:
        await asyncio.sleep(0.3)
    assert not idle.own_timeout(0.3)

    async with LagWatch() as blocked:
        await asyncio.sleep(0.01)
        time.sleep(0.5)  # the loop is ours no more: a blocking call on it
    assert blocked.stalled_s >= 0.4
    assert blocked.own_timeout(0.55)


async def test_a_cancelled_caller_is_not_swallowed_by_the_watch() -> None:
    async def watched() -> None:
        async with LagWatch():
            await asyncio.sleep(10)

    task = asyncio.create_task(watched())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
