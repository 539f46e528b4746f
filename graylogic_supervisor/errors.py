"""The project's error hierarchy.

Exceptions carry their data as attributes so callers can report them without
parsing messages. Library errors are translated once, at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SupervisorError(Exception):
    """Base class of every error this package raises on purpose."""


@dataclass(frozen=True)
class SourceProblem:
    """One problem in a YAML file, located as precisely as we can."""

    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SourceError(SupervisorError):
    """A YAML file (config, playbook, catalog) that cannot be used, with every problem found."""

    def __init__(self, file: Path, problems: list[SourceProblem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(SourceError):
    """The supervisor configuration is invalid."""


class PlaybookError(SourceError):
    """A playbook file is invalid."""


class CatalogError(SourceError):
    """The error catalog is invalid."""


class StoreError(SupervisorError):
    """The SQLite store cannot do what was asked."""


class StoreClosedError(StoreError):
    """The store was used after it was closed."""


class StoreFullError(StoreError):
    """The disk holding the store is full: nothing was written (ERR-SYS-DISK-001).

    ``room_made``: the store's reserve was freed just now, so trying again can work.
    """

    def __init__(self, message: str, *, room_made: bool) -> None:
        super().__init__(message)
        self.room_made = room_made


class StoreLockedError(StoreError):
    """Another connection held the database's write lock past the wait: nothing was written."""


class ServiceError(SupervisorError):
    """A supervised service could not be controlled."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(f"service {service}: {message}")


class UnknownServiceError(ServiceError):
    """A step or component names a service that is not configured."""

    def __init__(self, service: str) -> None:
        super().__init__(service, "not configured")
