"""Tell systemd how the daemon is doing (the sd_notify protocol), for ``Type=notify``.

No third-party library: the protocol is one ``KEY=VALUE`` datagram on a Unix
socket, which is about forty lines here and not worth a dependency.

A ``Notifier`` made where ``NOTIFY_SOCKET`` is unset (a developer's shell, the
tests, a container without systemd) does nothing, so callers never check.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to one socket address; never raises on a failed send.

    A lost notification must not take the daemon down: systemd then either
    times the start out or fires the watchdog, which is the right outcome for
    a daemon that cannot reach it. So a failed send is logged (once at
    WARNING, then at DEBUG) and otherwise ignored.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        """``address`` as systemd puts it in NOTIFY_SOCKET: a path, or ``@name``
        for an abstract socket; ``None`` for a notifier that does nothing."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through our environment.

        WATCHDOG_PID names the process the watchdog is for; when it is set and
        not us, the variables were inherited from a parent and are not ours.
        """
        env = os.environ if environ is None else environ
        watchdog_usec: int | None = None
        if "WATCHDOG_USEC" in env:
            try:
                watchdog_usec = int(env["WATCHDOG_USEC"])
                watchdog_pid = int(env.get("WATCHDOG_PID", os.getpid()))
            except ValueError:
                logger.warning(
                    "ignoring invalid WATCHDOG_USEC/WATCHDOG_PID %r/%r",
                    env["WATCHDOG_USEC"],
                    env.get("WATCHDOG_PID"),
                )
                watchdog_usec = None
            else:
                if watchdog_pid != os.getpid() or watchdog_usec <= 0:
                    watchdog_usec = None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """How often to call ``watchdog()``: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self._watchdog_usec / 2_000_000 if self._watchdog_usec else None

    def ready(self) -> None:
        """Startup is complete; systemd now counts the unit as active."""
        self._send("READY=1")

    def stopping(self) -> None:
        """Shutdown has begun, so a slow stop is not mistaken for a hang."""
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """The event loop is alive; without this every WatchdogSec systemd restarts us."""
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status``; newlines would end the field."""
        self._send("STATUS=" + " ".join(text.splitlines()))

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        # A fresh socket per message, as libsystemd does: nothing to own or close,
        # and a non-blocking send can never stall the event loop.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            logger.log(level, "sd_notify %s to %r failed: %s", message, self._address, exc)


def _socket_address(address: str) -> bytes:
    """NOTIFY_SOCKET as a socket address: ``@name`` is the abstract name ``\\0name``."""
    if address.startswith("@"):
        return b"\0" + os.fsencode(address[1:])
    return os.fsencode(address)
