"""The supervised services by name, and readiness after a start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.errors import ServiceError, UnknownServiceError
from graylogic_supervisor.services.backend import ServiceBackend, ServiceStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """How to tell that a started service is serving: its TCP port accepts."""

    host: str
    port: int
    timeout_s: float


class ServiceManager:
    """Controls the configured services; actions and health checks go through it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._backends: dict[str, ServiceBackend] = {}
        self._readiness: dict[str, Readiness] = {}
        self._replaced: list[Callable[[str], None]] = []

    def add_replace_listener(self, listener: Callable[[str], None]) -> None:
        """Told a service's name before its process is started, restarted or stopped."""
        self._replaced.append(listener)

    def _replacing(self, name: str) -> None:
        for listener in self._replaced:
            listener(name)

    def add(self, backend: ServiceBackend, readiness: Readiness | None = None) -> None:
        if backend.name in self._backends:
            raise ValueError(f"service {backend.name!r} added twice")
        self._backends[backend.name] = backend
        if readiness is not None:
            self._readiness[backend.name] = readiness

    def _backend(self, name: str) -> ServiceBackend:
        try:
            return self._backends[name]
        except KeyError:
            raise UnknownServiceError(name) from None

    async def status(self, name: str) -> ServiceStatus:
        return await self._backend(name).status()

    async def start(self, name: str) -> ServiceStatus:
        backend = self._backend(name)
        self._replacing(name)
        await backend.start()
        return await self._wait_ready(name)

    async def restart(self, name: str) -> ServiceStatus:
        backend = self._backend(name)
        self._replacing(name)
        await backend.restart()
        return await self._wait_ready(name)

    async def stop(self, name: str) -> ServiceStatus:
        backend = self._backend(name)
        self._replacing(name)
        return await backend.stop()

    async def close(self) -> None:
        """Stop what we own, in reverse order of adding."""
        for backend in reversed(self._backends.values()):
            try:
                await backend.close()
            except ServiceError as exc:
                logger.warning("closing %s: %s", backend.name, exc)

    async def _wait_ready(self, name: str) -> ServiceStatus:
        """Wait until the service's port accepts, failing fast if it dies first."""
        readiness = self._readiness.get(name)
        status = await self._backend(name).status()
        if readiness is None or not status.running:
            if not status.running:
                raise ServiceError(name, f"not running after start: {status.detail}")
            return status
        deadline = self._clock.monotonic() + readiness.timeout_s
        pause = 0.002
        while True:
            if await port_accepts(readiness.host, readiness.port, timeout_s=0.5):
                return await self._backend(name).status()
            status = await self._backend(name).status()
            if not status.running:
                raise ServiceError(name, f"died while starting: {status.detail}")
            if self._clock.monotonic() >= deadline:
                raise ServiceError(
                    name, f"port {readiness.port} not accepting after {readiness.timeout_s:g} s"
                )
            await self._clock.sleep(pause)
            pause = min(pause * 2, 0.1)


async def port_accepts(host: str, port: int, timeout_s: float) -> bool:
    """Whether a TCP connect to host:port succeeds within the timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
