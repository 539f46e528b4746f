"""The playbook model (DESIGN.md contract 4).

A playbook is validated once, when it loads; after that the engine trusts it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graylogic_supervisor.playbooks.expressions import CompiledExpression

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
STEP_ID = r"^[a-z][a-z0-9_]{0,62}$"
PLAYBOOK_ID = r"^PLAY-[A-Z0-9]+(-[A-Z0-9]+)*-\d{3}$"
# A playbook the learning drafted for a failure nobody wrote one for; one a person
# wrote for the same failure takes precedence over it.
DRAFT_ID_PREFIX = "PLAY-DRAFT-"

# Transition targets that are not step ids.
PARALLEL = "parallel"  # the action name of a parallel group step
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
    needs: list[str] = Field(
        [], description="steps that must succeed first; a playbook with needs runs as a graph"
    )
    idempotent: bool = Field(
        False, description="safe to run again: a run a crash stopped here resumes here"
    )
    max_visits: int | None = Field(
        None, ge=1, le=100, description="bound on how often a loop may enter this step"
    )
    on_success: str = NEXT
    on_failure: str = ESCALATE
    compensate: Compensation | None = None
    parallel: ParallelGroup | None = None
    when: CompiledExpression | None = None  # the step runs only if this holds
    success_when: CompiledExpression | None = None  # decides the outcome from the result

    @model_validator(mode="before")
    @classmethod
    def _a_group_is_a_parallel_action(cls, data: Any) -> Any:
        if isinstance(data, dict) and "parallel" in data and "action" not in data:
            return {**data, "action": PARALLEL}
        return data

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED:
            raise ValueError(f"{value!r} is a reserved transition word")
        return value

    @model_validator(mode="after")
    def _group_shape(self) -> Step:
        if self.parallel is None:
            if self.action == PARALLEL:
                raise ValueError("a parallel step needs 'parallel' with its branches")
            return self
        if self.action != PARALLEL or self.target or self.params or self.retry or self.compensate:
            raise ValueError(
                "a parallel step has branches instead of an action, target, params, retry"
                " or compensate"
            )
        return self

    @property
    def is_group(self) -> bool:
        return self.parallel is not None


class ParallelGroup(_Model):
    """Branches run at once; ``all`` needs every one to succeed, ``any`` the first to."""

    join: Literal["all", "any"] = "all"
    branches: list[Step] = Field(min_length=2)

    @model_validator(mode="after")
    def _plain_branches(self) -> ParallelGroup:
        ids = [branch.id for branch in self.branches]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate branch ids: {', '.join(duplicates)}")
        for branch in self.branches:
            if branch.parallel is not None:
                raise ValueError(f"branch {branch.id!r}: groups do not nest")
            if (branch.on_success, branch.on_failure) != (NEXT, ESCALATE) or branch.max_visits:
                raise ValueError(
                    f"branch {branch.id!r}: branches have no transitions of their own;"
                    " the group's on_success and on_failure decide"
                )
        return self


class Playbook(_Model):
    id: str = Field(pattern=PLAYBOOK_ID)
    name: str = Field(min_length=1)
    version: str
    description: str = ""
    trigger: Trigger
    limits: Limits = Limits()
    parameters: dict[str, str | int | float | bool] = Field(
        {}, description="a template's parameters and their defaults: params.<name>"
    )
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
    def uses_needs(self) -> bool:
        """Steps ordered by what they need (run in waves, independent ones at once)
        rather than by transitions."""
        return any(step.needs for step in self.steps)

    @property
    def timeout_seconds(self) -> float:
        assert self.limits.timeout_seconds is not None
        return self.limits.timeout_seconds

    def step(self, step_id: str) -> Step:
        """A step by id; a group's branch by ``group.branch``, as its rows record it."""
        group_id, _, branch_id = step_id.partition(".")
        for step in self.steps:
            if step.id == group_id:
                if not branch_id:
                    return step
                for branch in step.parallel.branches if step.parallel else []:
                    if branch.id == branch_id:
                        return branch.model_copy(update={"id": step_id})
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


Step.model_rebuild()


def skip_target(playbook: Playbook, step: Step) -> str:
    """Where a skipped step leads: the next step in order (the last one: its on_success)."""
    if playbook.uses_needs:
        return "needs"  # the graph decides, not the order
    index = playbook.steps.index(step)
    if index + 1 < len(playbook.steps):
        return playbook.steps[index + 1].id
    return playbook.resolve_transition(step, step.on_success)
