"""The best a fix-only playbook can do on a scenario, computed from the scenario itself.

A fix-only playbook runs fix actions in a fixed order: each ends the playbook on
success, moves to the next on failure, and the last escalates on failure. Under
the outcome words of ``scenarios/FORMAT.md`` a ``fix`` ends the incident fixed,
a ``success`` ends the playbook "done" with the incident not fixed (so the
technician's ``manual.resolve_s`` is added), and ``failure`` and ``health``
(the incident is never fixed while such a chain is still running) go on.

The expectation is exact: every step's chance of being reached is the product of
the earlier steps' failure chances, and each step costs its mean duration
(``(min + max) / 2`` for a range) times that chance. Step timeouts play no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

from graylogic_supervisor.sim.scenario import Scenario, ScenarioAction

GOES_ON = ("failure", "health")


def outcome_chances(action: ScenarioAction, cause: str) -> dict[str, float]:
    """The probability of each outcome word of ``action`` under ``cause``."""
    spec = action.spec_for(cause)
    assert spec is not None, f"no outcome for {cause}"  # the loader refuses such a scenario
    if isinstance(spec, str):
        return {spec: 1.0}
    return dict(spec)


def fix_actions(scenario: Scenario) -> list[str]:
    """The actions whose outcome can be ``fix`` under some cause, in file order."""
    return [
        name
        for name, action in scenario.actions.items()
        if any(outcome_chances(action, cause).get("fix", 0) > 0 for cause in scenario.causes)
    ]


def fix_only_mttr(scenario: Scenario, order: Sequence[str]) -> float:
    """The expected resolution time of the fix-only playbook that runs ``order``."""
    total = 0.0
    for cause, chance in scenario.causes.items():
        reached, elapsed, fixed = 1.0, 0.0, 0.0
        for name in order:
            action = scenario.actions[name]
            chances = outcome_chances(action, cause)
            elapsed += reached * action.mean_duration(cause)
            fixed += reached * chances.get("fix", 0.0)
            reached *= sum(chances.get(word, 0.0) for word in GOES_ON)
        total += chance * (elapsed + (1 - fixed) * scenario.manual.resolve_s)
    return total


def best_fix_only_mttr(scenario: Scenario) -> float:
    """The lowest expected resolution time over every order of every non-empty subset of
    the fix actions (a playbook has at least one step)."""
    fixes = fix_actions(scenario)
    assert fixes, f"{scenario.name}: no action can fix anything"
    return min(
        fix_only_mttr(scenario, order)
        for size in range(1, len(fixes) + 1)
        for order in permutations(fixes, size)
    )
