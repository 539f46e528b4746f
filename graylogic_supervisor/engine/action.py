"""The one small interface every action implements (DESIGN.md contract 2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.failure import FailureInfo


class ActionParams(BaseModel):
    """Base of every action's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(ActionParams):
    pass


@dataclass(frozen=True)
class StepResult:
    """What an action reports: its outcome, a line a person reads, and data for later steps."""

    success: bool
    result: str
    output: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def ok(cls, result: str, **output: Any) -> StepResult:
        return cls(True, result, output)

    @classmethod
    def failed(cls, error: str, **output: Any) -> StepResult:
        return cls(False, error, output, error)


@dataclass(frozen=True)
class StepContext:
    """Everything an action may know about the step it runs in."""

    execution_id: str
    playbook_id: str
    step_id: str
    target: str | None
    params: BaseModel
    failure: FailureInfo
    clock: Clock
    deadline: float  # on clock.monotonic(): the step must be done by then


class Action(Protocol):
    name: ClassVar[str]
    kind: ClassVar[ActionKind]
    params_model: ClassVar[type[BaseModel]]
    needs_target: ClassVar[bool]

    async def run(self, ctx: StepContext) -> StepResult: ...


def spec_of(action: type[Action] | Action) -> ActionSpec:
    return ActionSpec(action.name, action.kind, action.params_model, action.needs_target)


class ActionRegistry:
    """The actions available to playbooks, by name."""

    def __init__(self, actions: Iterable[Action] = ()) -> None:
        self._actions: dict[str, Action] = {}
        for action in actions:
            self.register(action)

    def register(self, action: Action) -> None:
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} registered twice")
        self._actions[action.name] = action

    def get(self, name: str) -> Action:
        return self._actions[name]

    def specs(self) -> dict[str, ActionSpec]:
        return {name: spec_of(action) for name, action in self._actions.items()}
