"""The floor: the resolution time nothing can beat on a scenario.

A playbook that knew each incident's cause would run that cause's cheapest fix
again and again until it worked: ``mean duration / fix probability`` seconds on
average (a geometric number of tries). For a cause no action can fix, only a
technician helps: ``manual.resolve_s``. The floor is the mean over causes.

A real playbook must first find the cause, and verify that the fix held, so
it cannot reach 1.0; how close it comes is the measure of the learning.
"""

from __future__ import annotations

from graylogic_supervisor.sim.scenario import Scenario, ScenarioAction


def fix_chance(action: ScenarioAction, cause: str) -> float:
    """The probability that one run of ``action`` fixes an incident of ``cause``."""
    spec = action.spec_for(cause)
    if spec is None:
        return 0.0
    if isinstance(spec, str):
        return 1.0 if spec == "fix" else 0.0
    return float(spec.get("fix", 0.0))


def cause_floor_s(scenario: Scenario, cause: str) -> float:
    """The best expected time for one cause: its cheapest repeated fix, or a technician."""
    best = scenario.manual.resolve_s
    for action in scenario.actions.values():
        chance = fix_chance(action, cause)
        if chance > 0:
            best = min(best, action.mean_duration(cause) / chance)
    return best


def floor_s(scenario: Scenario) -> float:
    return sum(chance * cause_floor_s(scenario, cause) for cause, chance in scenario.causes.items())
