"""What the failure memory keeps about a failure, and what it concludes.

A ``FailureContext`` is captured when a failure opens an incident: everything
the supervisor knew at that moment. A ``Resolution`` is added when the incident
ends: what fixed it and who. A record is both, plus how often it was seen
(near-identical records are merged by consolidation).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Words that carry no meaning for matching failures; numbers and ids are masked.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "at",
        "by",
        "for",
        "from",
        "in",
        "is",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "with",
    ]
)
_MASKS = (
    (re.compile(r"\b[0-9a-f]{8,}\b"), " "),  # hex ids
    (re.compile(r"\b\d+(\.\d+)*\b"), " "),  # numbers, versions, addresses
)
_TOKEN = re.compile(r"[a-z][a-z_-]{1,}")


def message_tokens(message: str) -> frozenset[str]:
    """Normalised message tokens: lower case, numbers and ids masked, stop words out."""
    text = message.lower()
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return frozenset(t for t in _TOKEN.findall(text) if t not in STOP_WORDS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecentEvent(_Model):
    """One entry of the bounded ring of what happened lately."""

    at: datetime
    kind: Literal["health", "execution", "config", "user"]
    subject: str  # a component, a playbook, an operator
    detail: str


class Resources(_Model):
    memory_percent: float = Field(ge=0, le=100)
    disk_percent: float = Field(ge=0, le=100)
    cpu_percent: float = Field(ge=0, le=100)
    load_per_cpu: float = Field(ge=0)


class Environment(_Model):
    hour: int = Field(ge=0, le=23)
    weekday: int = Field(ge=0, le=6)  # Monday is 0
    uptime_s: float = Field(ge=0)


class FailureContext(_Model):
    failure_id: str
    incident_id: str | None
    detected_at: datetime
    error_id: str
    component: str
    severity: str
    message: str
    other_health: dict[str, str]  # every other component's health at that moment
    recent_events: list[RecentEvent]
    resources: Resources
    environment: Environment


class Attempt(_Model):
    execution_id: str
    kind: Literal["playbook", "learned_fix"]
    playbook_id: str
    status: str  # resolved | escalated | failed | interrupted


class Resolution(_Model):
    resolved_at: datetime
    fixed_by: str  # "supervisor", or a named person
    what_fixed_it: str
    fix_action: str | None  # an action name, e.g. restart_service
    fix_target: str | None  # e.g. mosquitto
    root_cause: str | None = None


class FailureRecord(_Model):
    context: FailureContext
    attempts: list[Attempt] = []
    resolution: Resolution | None = None
    count: int = Field(1, ge=1)  # how many near-identical failures this record stands for

    @property
    def resolved(self) -> bool:
        return self.resolution is not None and self.resolution.fix_action is not None
