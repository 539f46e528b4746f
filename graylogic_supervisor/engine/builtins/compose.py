"""``action: playbook``: a step that runs another playbook, nested, with a bounded depth.

The child runs through the same runner as a tracked execution of its own (its
id is in the step's output), for the same failure, inside the parent step's
timeout; a child that does not resolve is this step's failure. Nesting deeper
than ``MAX_DEPTH`` (a playbook that calls itself, directly or not) fails the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.domain.states import ExecutionStatus
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult
from graylogic_supervisor.playbooks.model import PLAYBOOK_ID, Playbook
from graylogic_supervisor.store.versions import PlaybookVersions

MAX_DEPTH = 3
_DEPTH: ContextVar[int] = ContextVar("playbook_depth", default=0)


class NestedRunner(Protocol):
    async def run_nested(
        self, playbook: Playbook, ctx: StepContext, parameters: Mapping[str, Any]
    ) -> ExecutionOutcome: ...


class PlaybookParams(ActionParams):
    playbook: str = Field(pattern=PLAYBOOK_ID, description="the id of the playbook to run")
    parameters: dict[str, str | int | float | bool] = Field(
        {}, description="values for the child's declared parameters (a template)"
    )


class RunPlaybook:
    name: ClassVar[str] = "playbook"
    kind: ClassVar[ActionKind] = ActionKind.FIX
    params_model: ClassVar[type[BaseModel]] = PlaybookParams
    needs_target: ClassVar[bool] = False

    def __init__(self, versions: PlaybookVersions) -> None:
        self._versions = versions
        self._runner: NestedRunner | None = None

    def bind(self, runner: NestedRunner) -> None:
        """The runner exists only after its actions: it is handed over once built."""
        self._runner = runner

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, PlaybookParams)
        if self._runner is None:
            return StepResult.failed("no runner bound for nested playbooks")
        depth = _DEPTH.get()
        if depth >= MAX_DEPTH:
            return StepResult.failed(
                f"playbooks nest deeper than {MAX_DEPTH} (does {params.playbook} call itself?)"
            )
        child = await self._versions.active_playbook(params.playbook)
        if child is None:
            return StepResult.failed(f"no active playbook {params.playbook}")
        unknown = sorted(set(params.parameters) - set(child.parameters))
        if unknown:
            declared = ", ".join(sorted(child.parameters)) or "none"
            return StepResult.failed(
                f"{child.id} has no parameter {', '.join(unknown)} (declared: {declared})"
            )
        token = _DEPTH.set(depth + 1)
        try:
            outcome = await self._runner.run_nested(child, ctx, params.parameters)
        finally:
            _DEPTH.reset(token)
        summary = f"{child.id} {child.version} {outcome.status} ({outcome.execution_id})"
        output = {"execution_id": outcome.execution_id, "status": outcome.status}
        if outcome.status == ExecutionStatus.RESOLVED:
            return StepResult.ok(summary, **output)
        return StepResult.failed(summary, **output)
