"""The playbook model (DESIGN.md contract 4).

A playbook is validated once, when it loads; after that the engine trusts it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
STEP_ID = r"^[a-z][a-z0-9_]{0,62}$"
PLAYBOOK_ID = r"^PLAY-[A-Z0-9]+(-[A-Z0-9]+)*-\d{3}$"

# Transition targets that are not step ids.
DONE = "done"
ESCALATE = "escalate"
NEXT = "next"
TERMINALS = frozenset({DONE, ESCALATE})
RESERVED = frozenset({DONE, ESCALATE, NEXT})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Model):
    component: str = Field(min_length=1)
    error_ids: list[str] = Field(min_length=1)


class Limits(_Model):
    max_attempts: int = Field(3, ge=1, le=100)
    cooldown_seconds: float = Field(60, ge=0)
    timeout_seconds: float | None = Field(None, gt=0)


class RetryPolicy(_Model):
    """Extra attempts of a failed step, with capped, jittered exponential backoff."""

    attempts: int = Field(ge=2, le=20, description="total attempts, the first included")
    backoff_seconds: float = Field(1.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_backoff_seconds: float = Field(60.0, ge=0)
    jitter: float = Field(0.0, ge=0, le=1)


class Compensation(_Model):
    """What undoes a completed step when the execution does not resolve."""

    action: str = Field(min_length=1)
    target: str | None = None
    params: dict[str, Any] = {}
    timeout_seconds: float = Field(30, gt=0)


class Step(_Model):
    id: str = Field(pattern=STEP_ID)
    name: str = Field(min_length=1)
    action: str = Field(min_length=1)
    target: str | None = None
    params: dict[str, Any] = {}
    timeout_seconds: float = Field(30, gt=0)
    retry: RetryPolicy | None = None
    max_visits: int | None = Field(
        None, ge=1, le=100, description="bound on how often a loop may enter this step"
    )
    on_success: str = NEXT
    on_failure: str = ESCALATE
    compensate: Compensation | None = None

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED:
            raise ValueError(f"{value!r} is a reserved transition word")
        return value


class Playbook(_Model):
    id: str = Field(pattern=PLAYBOOK_ID)
    name: str = Field(min_length=1)
    version: str
    description: str = ""
    trigger: Trigger
    limits: Limits = Limits()
    steps: list[Step] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _semantic_version(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError("version must be MAJOR.MINOR.PATCH, e.g. 1.0.0")
        return value

    @model_validator(mode="after")
    def _default_timeout_follows_size(self) -> Playbook:
        if self.limits.timeout_seconds is None:
            limits = self.limits.model_copy(update={"timeout_seconds": default_timeout(self)})
            object.__setattr__(self, "limits", limits)
        return self

    @property
    def timeout_seconds(self) -> float:
        assert self.limits.timeout_seconds is not None
        return self.limits.timeout_seconds

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def resolve_transition(self, step: Step, target: str) -> str:
        """A transition's concrete destination: a step id, ``done`` or ``escalate``."""
        if target != NEXT:
            return target
        index = self.steps.index(step)
        return self.steps[index + 1].id


def default_timeout(playbook: Playbook) -> float:
    """BR-WF-TIMEOUT-001: 10 min for 1-3 steps, 20 for 4-10, 45 for more."""
    count = len(playbook.steps)
    if count <= 3:
        return 600.0
    if count <= 10:
        return 1200.0
    return 2700.0
