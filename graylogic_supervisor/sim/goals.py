"""The learning loop's goals (issue 14), measured on a ``simulate`` report.

What a site would call harm, judged from outside the learning code: a round much
slower than the one before that nothing rolled back, a recommendation that removes
or bypasses the health verification, a recommendation made on too few executions.
The scenario is the ground truth: which actions are verifications (outcome
``health``) and which can succeed without fixing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

from graylogic_supervisor.playbooks.model import DONE, TERMINALS, Playbook
from graylogic_supervisor.sim.scenario import Scenario

MAX_FINAL_TO_FLOOR = 1.6  # a playbook must find the cause first: 1.0 is out of reach
MAX_SLOWDOWN = 1.10  # a round may be at most 10 % slower than the one before
MIN_RECENT_EXECUTIONS = 10  # of the analysed version in the 30 days before an analysis
ALREADY_GOOD_SLACK = 1.02


def recommendations(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in report["rounds"]:
        yield from entry["recommendations"]


def worst_slowdown(report: dict[str, Any]) -> float:
    """The largest ratio of a round's mean resolution time to the round before's."""
    mttrs = [entry["mttr_s"] for entry in report["rounds"]]
    return max((b / a for a, b in pairwise(mttrs) if a > 0), default=1.0)


def regressions(report: dict[str, Any]) -> list[int]:
    """Rounds more than 10 % slower than the one before that neither they nor the next
    round rolled back."""
    rounds = report["rounds"]
    found = []
    for index in range(1, len(rounds)):
        if rounds[index]["mttr_s"] <= MAX_SLOWDOWN * rounds[index - 1]["mttr_s"]:
            continue
        following = rounds[index : index + 2]
        if not any(entry["rolled_back_to"] is not None for entry in following):
            found.append(rounds[index]["round"])
    return found


def health_actions(scenario: Scenario) -> set[str]:
    return {
        name
        for name, action in scenario.actions.items()
        if any(action.spec_for(cause) == "health" for cause in scenario.causes)
    }


def succeeds_unfixed(scenario: Scenario, action_name: str) -> bool:
    """Whether ``action_name`` can succeed under some cause without fixing it."""
    action = scenario.actions[action_name]
    for cause in scenario.causes:
        spec = action.spec_for(cause)
        if spec == "success" or (isinstance(spec, dict) and spec.get("success", 0) > 0):
            return True
    return False


def last_verifications(playbook: Playbook, health: set[str]) -> set[str]:
    """The verification steps after which no other verification can run (a grace wait
    before a fix is not the last one)."""
    verifying = {step.id for step in playbook.steps if step.action in health}

    def reaches_another(step_id: str) -> bool:
        seen, todo = set(), [step_id]
        while todo:
            step = playbook.step(todo.pop())
            for target in (
                playbook.resolve_transition(step, t) for t in (step.on_success, step.on_failure)
            ):
                if target in TERMINALS or target in seen:
                    continue
                if target in verifying:
                    return True
                seen.add(target)
                todo.append(target)
        return False

    return {step_id for step_id in verifying if not reaches_another(step_id)}


def verification_breaches(
    report: dict[str, Any], scenario: Scenario, playbook: Playbook
) -> list[str]:
    """The recommendations that remove or bypass a health verification: a removal of a
    verification step, a condition on one, or a step that goes to ``done`` (a new one,
    or one whose verification is skipped) on a success that need not mean the fault is
    gone."""
    health = health_actions(scenario)
    added = [rec["change"]["step"] for rec in recommendations(report) if rec["type"] == "add_step"]
    verify_ids = last_verifications(playbook, health)
    verify_ids |= {s["id"] for s in report["final_playbook"]["steps"] if s.get("action") in health}
    verify_ids |= {step["id"] for step in added if step.get("action") in health}
    found = []
    for rec in recommendations(report):
        change = rec["change"]
        kind = change["type"]
        if kind in ("remove_step", "add_condition") and change["step_id"] in verify_ids:
            found.append(f"{rec['type']} {change['step_id']}: {rec['summary']}")
        if kind == "skip_verification":
            step = next(
                (s for s in _all_steps(report, playbook) if s["id"] == change["step_id"]), None
            )
            if step is not None and succeeds_unfixed(scenario, step["action"]):
                found.append(f"skip_verification {change['step_id']}: {rec['summary']}")
        if kind == "add_step":
            step = change["step"]
            if (
                step.get("on_success") == DONE
                and step["action"] not in health
                and succeeds_unfixed(scenario, step["action"])
            ):
                found.append(f"add_step {step['id']} -> done: {rec['summary']}")
    return found


def _all_steps(report: dict[str, Any], playbook: Playbook) -> list[dict[str, Any]]:
    """Every step the playbook had in the run: the first version's, the final's, and
    each added one."""
    steps = [{"id": s.id, "action": s.action} for s in playbook.steps]
    steps += report["final_playbook"]["steps"]
    steps += [r["change"]["step"] for r in recommendations(report) if r["type"] == "add_step"]
    return steps


def thin_recommendations(report: dict[str, Any]) -> list[str]:
    """Recommendations made by an analysis whose version ran fewer than 10 times in the
    30 days before it."""
    found = []
    for entry in report["rounds"]:
        thin = {
            analysis["after_incidents"]
            for analysis in entry["analyses"]
            if analysis["recent_executions"] < MIN_RECENT_EXECUTIONS
        }
        found += [
            f"round {entry['round']}: {rec['summary']}"
            for rec in entry["recommendations"]
            if rec["after_incidents"] in thin
        ]
    return found


def violations(
    report: dict[str, Any], scenario: Scenario, playbook: Playbook, already_good: bool = False
) -> list[str]:
    """Every goal the report misses, one line each."""
    found = []
    ratio = report["final_to_floor"]
    if ratio is not None and ratio > MAX_FINAL_TO_FLOOR:
        found.append(f"final {ratio:.2f}x the floor (at most {MAX_FINAL_TO_FLOOR})")
    found += [f"round {n} slower by over 10 % and not rolled back" for n in regressions(report)]
    found += [f"verification: {line}" for line in verification_breaches(report, scenario, playbook)]
    found += [f"fewer than 10 executions: {line}" for line in thin_recommendations(report)]
    mttrs = [entry["mttr_s"] for entry in report["rounds"]]
    if already_good and mttrs and mttrs[-1] > ALREADY_GOOD_SLACK * mttrs[0]:
        found.append(f"already good, made worse: {mttrs[0]} s -> {mttrs[-1]} s")
    return found
