"""paho's socket callbacks racing a broker that died.

aiomqtt hands paho's "socket wants to write" callback to the event loop; when
the broker is killed, the socket may be closed before the loop runs it, and
``add_writer`` (or ``add_reader``) fails with EBADF inside a loop callback.
asyncio's default handler prints that as an error with a traceback, though the
link has already seen the drop and reconnects. This handler says it in one
line and leaves every other error to asyncio's default handler.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

logger = logging.getLogger(__name__)

_SOCKET_CALLBACKS = ("add_writer", "add_reader", "remove_writer", "remove_reader")


def is_closed_socket_race(context: dict[str, Any]) -> bool:
    exc = context.get("exception")
    handle = repr(context.get("handle", ""))
    return (
        isinstance(exc, OSError)
        and exc.errno == errno.EBADF
        and any(name in handle for name in _SOCKET_CALLBACKS)
    )


def quiet_closed_socket_races(loop: asyncio.AbstractEventLoop) -> None:
    """Install the handler on ``loop`` (the daemon's)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_closed_socket_race(context):
            logger.info("a socket callback ran after its MQTT socket closed (the link reconnects)")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
