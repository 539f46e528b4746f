"""The guard no learned change may pass: the last health verification of a path is
never removed or bypassed (it may be made cheaper, never dropped).

Most fixes succeed whether or not they removed the fault, so a run may end ``done``
only where something observed health. The guard is a property of the proposed
graph, not of the kind of change, so a new kind of change cannot slip past it:

- every transition into ``done`` comes from a verification's success, from the
  success of an action whose recorded successes meant health
  (``CaseSet.success_means_health``), or existed identically in the current version;
- a verification gets no ``when:`` condition it did not have (skipped, it verifies
  nothing);
- a verification that is the last one on some path to ``done`` is removed only where
  what then leads to ``done`` is itself proven (the first rule): a fix whose every
  recorded success meant health already verifies, and a second wait after it is time
  the site waits for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.playbooks.model import DONE, TERMINALS, Playbook, Step, skip_target

VERDICT = "would remove or bypass the last health verification"

# (step id, action, how it leaves: success, failure or skip, its condition's text)
Exit = tuple[str, str, str, str | None]


def verification_guard(
    current: Playbook,
    proposed: Playbook,
    specs: Mapping[str, ActionSpec],
    means_health: Callable[[str], bool],
) -> str | None:
    """None if ``proposed`` keeps every last verification of ``current``; else why not.

    ``means_health(action)``: the records show that this action's success meant health.
    """

    def verifies(step: Step) -> bool:
        spec = specs.get(step.action)
        return spec is not None and spec.kind is ActionKind.VERIFY

    for step in proposed.steps:
        if verifies(step) and step.when is not None and _when(current, step.id) != step.when.text:
            return f"{VERDICT}: {step.id} verifies health and would run only when {step.when.text}"
    kept = {s.id for s in proposed.steps if verifies(s)}
    removed = [
        s.id
        for s in current.steps
        if verifies(s) and s.id not in kept and _last_on_a_path(current, s, verifies)
    ]
    existing = _exits_to_done(current, specs)
    for exit_ in _exits_to_done(proposed, specs):
        step_id, action, how, _ = exit_
        if exit_ in existing:
            continue
        spec = specs.get(action)
        if how == "success" and spec is not None and spec.kind is ActionKind.VERIFY:
            continue
        if how == "success" and means_health(action):
            continue
        if removed:
            return (
                f"{VERDICT}: {', '.join(removed)} is the last verification of health on a"
                f" path to done, and {step_id} ({action}) would then lead to done on {how}"
                " without its success being shown to mean health"
            )
        return (
            f"{VERDICT}: {step_id} ({action}) would lead to done on {how} without a"
            " verification of health after it"
        )
    return None


def _when(playbook: Playbook, step_id: str) -> str | None:
    for step in playbook.steps:
        if step.id == step_id:
            return step.when.text if step.when is not None else None
    return None


def _exits_to_done(playbook: Playbook, specs: Mapping[str, ActionSpec]) -> set[Exit]:
    """Every way a step leads to ``done``: its success, its failure, or being skipped."""
    exits: set[Exit] = set()
    if playbook.uses_needs:
        # done once every step succeeded: the last steps (needed by none) end it
        needed = {n for s in playbook.steps for n in s.needs}
        for step in playbook.steps:
            if step.id not in needed:
                exits.add((step.id, _action(step, specs), "success", _text(step)))
        return exits
    for step in playbook.steps:
        when = _text(step)
        for how, target in (("success", step.on_success), ("failure", step.on_failure)):
            if playbook.resolve_transition(step, target) == DONE:
                exits.add((step.id, _action(step, specs), how, when))
        if step.when is not None and skip_target(playbook, step) == DONE:
            exits.add((step.id, _action(step, specs), "skip", when))
    return exits


def _action(step: Step, specs: Mapping[str, ActionSpec]) -> str:
    """A group verifies when a branch does and all must succeed: its verifying action."""
    if step.parallel is None:
        return step.action
    if step.parallel.join == "all":
        for branch in step.parallel.branches:
            spec = specs.get(branch.action)
            if spec is not None and spec.kind is ActionKind.VERIFY:
                return branch.action
    return step.action


def _text(step: Step) -> str | None:
    return step.when.text if step.when is not None else None


def _last_on_a_path(playbook: Playbook, start: Step, verifies: Callable[[Step], bool]) -> bool:
    """Whether some path from ``start`` reaches ``done`` without another verification
    (in a ``needs:`` playbook, every verification is taken to be one)."""
    if playbook.uses_needs:
        return True
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        step = frontier.pop()
        targets = [step.on_success, step.on_failure]
        following = [playbook.resolve_transition(step, t) for t in targets]
        if step.when is not None:
            following.append(skip_target(playbook, step))
        for target in following:
            if target == DONE:
                return True
            if target in TERMINALS or target in seen:
                continue
            seen.add(target)
            nxt = playbook.step(target)
            if not verifies(nxt):
                frontier.append(nxt)
    return False
