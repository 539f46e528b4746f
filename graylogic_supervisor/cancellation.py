"""Honour a cancellation that a library swallowed.

On Python 3.11, ``asyncio.wait_for`` (which aiomqtt uses to connect) can drop a
cancel that arrives just as its inner call completes (CPython gh-86296, fixed
in 3.12). A loop that then sleeps again would keep a TaskGroup, and so the
daemon's shutdown, waiting for ever. Loops that call such code check here.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
