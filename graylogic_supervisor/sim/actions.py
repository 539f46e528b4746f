"""The scenario's actions as engine actions: each sleeps its drawn duration on the
(virtual) clock and comes out as the scenario says for the incident's cause.

Draws are common random numbers: the n-th run of an action in an incident draws from
its own ``Random`` seeded with the incident's seed, the action and n, so the same
incident under another playbook version meets the same luck wherever it does the same
thing, and two rounds differ by the playbook, not by the draw."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionRegistry, StepContext, StepResult
from graylogic_supervisor.sim.scenario import Scenario, ScenarioAction


class KeptParams(BaseModel):
    """A simulated step's params are kept, not executed: any keys are accepted."""

    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass
class Incident:
    """The ground truth of one incident, which the supervisor never sees."""

    cause: str
    seed: str  # the draws of its actions start from this (the simulation's seed, its number)
    fixed_by: str | None = None  # the action that fixed it
    runs: dict[str, int] = field(default_factory=dict)  # how often each action ran

    @property
    def fixed(self) -> bool:
        return self.fixed_by is not None

    def draws(self, action: str) -> random.Random:
        """The draws of the next run of ``action`` in this incident (a ``str`` seed hashes
        the same in every process)."""
        run = self.runs.get(action, 0)
        self.runs[action] = run + 1
        return random.Random(f"{self.seed}:{action}:{run}")


class SimulatedAction:
    kind: ActionKind
    params_model: ClassVar[type[BaseModel]] = KeptParams
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        behaviour: ScenarioAction,
        causes: list[str],
        incidents: dict[str, Incident],
    ) -> None:
        self.name = name
        if any(behaviour.can_fix(c) for c in causes):
            self.kind = ActionKind.FIX
        elif behaviour.verifies(causes):
            self.kind = ActionKind.VERIFY
        else:
            self.kind = ActionKind.CHECK
        self._behaviour = behaviour
        self._incidents = incidents

    async def run(self, ctx: StepContext) -> StepResult:
        incident = self._incidents[ctx.failure.failure_id]
        draws = incident.draws(self.name)
        duration = self._behaviour.draw_duration(incident.cause, draws)
        word = self._behaviour.draw_outcome(incident.cause, draws)
        await ctx.clock.sleep(duration)  # a timeout shorter than this ends the step here
        if word == "fix":
            if incident.fixed_by is None:
                incident.fixed_by = self.name
            return StepResult.ok(f"{self.name}: fixed")
        if word == "success":
            return StepResult.ok(f"{self.name}: ok")
        if word == "health":
            if incident.fixed:
                return StepResult.ok("healthy")
            return StepResult.failed("still unhealthy")
        return StepResult.failed(f"{self.name}: failed")


def scenario_registry(scenario: Scenario, incidents: dict[str, Incident]) -> ActionRegistry:
    causes = list(scenario.causes)
    return ActionRegistry(
        SimulatedAction(name, behaviour, causes, incidents)  # type: ignore[misc]
        for name, behaviour in scenario.actions.items()
    )
