"""The failure an execution responds to: known to the engine, memory, learning and status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FailureInfo:
    """The failure an execution responds to."""

    failure_id: str
    component: str
    error_id: str
    message: str
