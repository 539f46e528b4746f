"""The interface every service backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ServiceStatus:
    """A service's state as the backend sees it."""

    name: str
    running: bool
    pid: int | None
    detail: str  # e.g. "running", "exited with code 1", "failed (Result=exit-code)"


# Called by a backend when a service stops without having been asked to.
ExitListener = Callable[[str, str], None]  # (service name, detail)


class ServiceBackend(Protocol):
    name: str

    async def status(self) -> ServiceStatus: ...

    async def start(self) -> ServiceStatus: ...

    async def stop(self) -> ServiceStatus: ...

    async def restart(self) -> ServiceStatus: ...

    async def close(self) -> None:
        """Release what the backend owns (child processes); called at shutdown."""
        ...
