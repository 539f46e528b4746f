"""The concrete changes a recommendation proposes, and how each is applied to a playbook.

A change names steps by id, so it can be applied to any version that still has
them (a human may approve recommendations in any order). Applying one rewires
transitions explicitly (``next`` is resolved first, so moving a step never
changes where another step leads) and validates the result exactly as a
playbook file is validated: a change that would break the graph is refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.errors import PlaybookError, SourceError, SupervisorError
from graylogic_supervisor.playbooks.loader import validate_playbook_data
from graylogic_supervisor.playbooks.model import DONE, ESCALATE, NEXT, TERMINALS, Playbook
from graylogic_supervisor.store.versions import semver_key
from graylogic_supervisor.yamlsource import load_located


class ChangeError(SupervisorError):
    """A change that does not apply to this version, or would make it invalid."""


class _Change(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddStep(_Change):
    """A new step, entered instead of ``before``, or instead of ``after_failure_of``'s
    failure or ``after_success_of``'s success transition; its own ``on_failure`` carries
    on where that led."""

    type: Literal["add_step"] = "add_step"
    step: dict[str, Any]
    before: str | None = None
    after_failure_of: str | None = None
    after_success_of: str | None = None
    # the new step's own health check, entered on its success: done if healthy, else on
    # to where the new step's failure leads (a fix whose success does not mean health)
    verification: dict[str, Any] | None = None


class RemoveStep(_Change):
    """Drop a step; what led to it leads to ``route_to`` (where its usual outcome led)."""

    type: Literal["remove_step"] = "remove_step"
    step_id: str
    route_to: str


class ReorderSteps(_Change):
    """A chain of steps, each leading to the next on failure, tried in a new order."""

    type: Literal["reorder_steps"] = "reorder_steps"
    chain: list[str] = Field(min_length=2)
    order: list[str] = Field(min_length=2)


class AddCondition(_Change):
    type: Literal["add_condition"] = "add_condition"
    step_id: str
    when: str


class SetRetry(_Change):
    type: Literal["set_retry"] = "set_retry"
    step_id: str
    retry: dict[str, Any]


class SetTimeout(_Change):
    type: Literal["set_timeout"] = "set_timeout"
    step_id: str
    timeout_seconds: float = Field(gt=0)


class SkipVerification(_Change):
    """A fix's success leads straight to done instead of to the health check after it:
    only where every recorded success of it meant health (the guard checks)."""

    type: Literal["skip_verification"] = "skip_verification"
    step_id: str


class NewPlaybook(_Change):
    """A whole new playbook (a draft for a failure none covers: ``drafts.py``); approved,
    it is the first version of a new playbook, not a change of one."""

    type: Literal["new_playbook"] = "new_playbook"
    playbook: dict[str, Any]


Change = Annotated[
    AddStep
    | RemoveStep
    | ReorderSteps
    | AddCondition
    | SetRetry
    | SetTimeout
    | SkipVerification
    | NewPlaybook,
    Field(discriminator="type"),
]


class _Envelope(BaseModel):
    change: Change


def parse_change(data: Mapping[str, Any]) -> Change:
    return _Envelope.model_validate({"change": data}).change


class _ChangeSourceError(SourceError):
    """A person's edited change that is not readable YAML."""


def change_from_yaml(text: str, origin: Path) -> dict[str, Any]:
    """A change a person edited (the page's form, ``--change-file``), read with the same
    guarded loader as playbooks (depth, size and alias limits, the line of a problem);
    a whole ``recommendations show`` output is accepted too. Raises ``ChangeError``."""
    try:
        data = load_located(origin, _ChangeSourceError, text).data
    except _ChangeSourceError as exc:
        raise ChangeError(f"the change is not readable YAML: {exc}") from exc
    if isinstance(data, dict) and "recommendation" in data:
        data = data["recommendation"]
    if not isinstance(data, dict):
        raise ChangeError("a change is a mapping with a type")
    return data


# What part of the version number a change moves.
MINOR_CHANGES = frozenset({"add_step", "remove_step", "reorder_steps", "skip_verification"})


def bump(version: str, change_type: str) -> str:
    major, minor, patch = semver_key(version)
    if change_type in MINOR_CHANGES:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def explicit_steps(playbook: Playbook) -> list[dict[str, Any]]:
    """The steps as plain data with every ``next`` replaced by the step it means."""
    steps = []
    for step in playbook.steps:
        data = step.model_dump(mode="json", exclude_defaults=True)
        for field in ("on_success", "on_failure"):
            value = getattr(step, field)
            if value == NEXT:
                data[field] = playbook.resolve_transition(step, NEXT)
            else:
                data[field] = value
        steps.append(data)
    return steps


def _redirect(steps: list[dict[str, Any]], old: str, new: str, skip: str | None = None) -> None:
    for data in steps:
        if data["id"] == skip:
            continue
        for field in ("on_success", "on_failure"):
            if data.get(field) == old:
                data[field] = new


def _index(steps: list[dict[str, Any]], step_id: str) -> int:
    for index, data in enumerate(steps):
        if data["id"] == step_id:
            return index
    raise ChangeError(f"the playbook has no step {step_id!r}")


def apply_change(
    playbook: Playbook, change: Change, version: str, specs: Mapping[str, ActionSpec]
) -> Playbook:
    """``playbook`` with ``change`` made, as version ``version``; raises ``ChangeError``."""
    steps = explicit_steps(playbook)
    if isinstance(change, AddStep):
        _add(steps, change)
    elif isinstance(change, RemoveStep):
        _remove(steps, change)
    elif isinstance(change, ReorderSteps):
        _reorder(steps, change, verifying(steps, specs))
    elif isinstance(change, AddCondition):
        steps[_index(steps, change.step_id)]["when"] = change.when
    elif isinstance(change, SetRetry):
        steps[_index(steps, change.step_id)]["retry"] = dict(change.retry)
    elif isinstance(change, SkipVerification):
        _skip_verification(steps, change)
    elif isinstance(change, NewPlaybook):
        raise ChangeError("a new playbook is approved as a playbook of its own, not a change")
    else:
        steps[_index(steps, change.step_id)]["timeout_seconds"] = change.timeout_seconds
    data = playbook.model_dump(mode="json", exclude_defaults=True)
    data.update({"version": version, "steps": steps})
    data["limits"] = playbook.limits.model_dump(mode="json")
    return validated(data, specs)


def validated(data: Mapping[str, Any], specs: Mapping[str, ActionSpec]) -> Playbook:
    """Check a proposed playbook as a file would be checked."""
    name = Path(f"{data.get('id')}-{data.get('version')}.proposed.yaml")
    try:
        return validate_playbook_data(name, data, specs)
    except PlaybookError as exc:
        problems = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
        raise ChangeError(f"the changed playbook would be invalid: {problems}") from exc


def _add(steps: list[dict[str, Any]], change: AddStep) -> None:
    new = dict(change.step)
    if any(data["id"] == new.get("id") for data in steps):
        raise ChangeError(f"the playbook already has a step {new.get('id')!r}")
    places = [change.before, change.after_failure_of, change.after_success_of]
    if sum(place is not None for place in places) != 1:
        raise ChangeError("an added step goes before a step, or after one's failure or success")
    if change.before is not None:
        index = _index(steps, change.before)
        _redirect(steps, change.before, new["id"])
        new["on_failure"] = new.get("on_failure", change.before)
        steps.insert(index, new)
    else:
        after = change.after_failure_of or change.after_success_of
        assert after is not None
        field = "on_failure" if change.after_failure_of is not None else "on_success"
        index = _index(steps, after) + 1
        previous = steps[index - 1][field]
        steps[index - 1][field] = new["id"]
        new.setdefault("on_failure", previous)
        steps.insert(index, new)
    if change.verification is not None:
        check = dict(change.verification)
        if any(data["id"] == check.get("id") for data in steps):
            raise ChangeError(f"the playbook already has a step {check.get('id')!r}")
        check.setdefault("on_success", DONE)
        check.setdefault("on_failure", new["on_failure"])
        new["on_success"] = check["id"]
        steps.insert(steps.index(new) + 1, check)


def _skip_verification(steps: list[dict[str, Any]], change: SkipVerification) -> None:
    """The step's success ends at done; its verification, if nothing else enters it
    any more, goes (it would never run)."""
    data = steps[_index(steps, change.step_id)]
    check = data["on_success"]
    if check in TERMINALS:
        raise ChangeError(f"{change.step_id!r} already ends at {check!r} on success")
    data["on_success"] = DONE
    if entries(steps).get(str(check)) == 0 and _index(steps, str(check)) != 0:
        del steps[_index(steps, str(check))]


def _remove(steps: list[dict[str, Any]], change: RemoveStep) -> None:
    index = _index(steps, change.step_id)
    route = change.route_to
    if route not in TERMINALS:
        _index(steps, route)
    elif index == 0:
        raise ChangeError(f"{change.step_id!r} is the first step; it cannot lead to {route!r}")
    removed = steps[index]
    if route == DONE:
        # A failure must not come to "done": what failed into the removed step goes
        # where the removed step's own failure went.
        on_failure = removed["on_failure"]
        for data in steps:
            if data["id"] != change.step_id and data.get("on_failure") == change.step_id:
                data["on_failure"] = on_failure if on_failure != change.step_id else ESCALATE
    _redirect(steps, change.step_id, route, skip=change.step_id)
    del steps[index]
    if index == 0:
        entry = steps.pop(_index(steps, route))
        steps.insert(0, entry)
    if not steps:
        raise ChangeError("a playbook needs at least one step")


def entries(steps: list[dict[str, Any]]) -> dict[str, int]:
    """How many transitions lead into each step (both of one step's count once)."""
    entered: dict[str, int] = {data["id"]: 0 for data in steps}
    for data in steps:
        for target in {data.get("on_success"), data.get("on_failure")}:
            if target in entered:
                entered[target] += 1
    return entered


def block_of(
    steps: list[dict[str, Any]], head: str, plain: set[str], verifying: set[str]
) -> list[str]:
    """``head`` and its own verification: the step its success leads to when that step
    verifies health (``verifying``), is plain and is entered only from ``head``. A block
    is tried as one: fix, then check that it held; the check failing goes on to the
    next block."""
    data = steps[_index(steps, head)]
    follower = data.get("on_success")
    if follower not in plain or follower not in verifying or follower == head:
        return [head]
    if entries(steps)[str(follower)] == 1:
        return [head, str(follower)]
    return [head]


def failure_exit(steps: list[dict[str, Any]], block: list[str]) -> str:
    """Where a block goes when it did not fix: its verification's failure, else its own."""
    return str(steps[_index(steps, block[-1])]["on_failure"])


def verifying(steps: list[dict[str, Any]], specs: Mapping[str, ActionSpec]) -> set[str]:
    """The steps whose action verifies health."""
    return {
        d["id"]
        for d in steps
        if (spec := specs.get(str(d.get("action")))) is not None and spec.kind is ActionKind.VERIFY
    }


def _reorder(steps: list[dict[str, Any]], change: ReorderSteps, checks: set[str]) -> None:
    """Blocks (a step, with its own verification if it has one) tried in a new order:
    every way out of a block that led to the next block leads to the next in the new
    order (a way out elsewhere, such as a failed power cycle escalating, stays)."""
    chain, order = change.chain, change.order
    if sorted(chain) != sorted(order) or len(set(chain)) != len(chain):
        raise ChangeError("a new order must hold the chain's steps, each once")
    plain = {d["id"] for d in steps if "when" not in d and not d.get("needs")}
    plain -= {d["id"] for d in steps if d.get("parallel")}
    blocks = {head: block_of(steps, head, plain, checks) for head in chain}
    members = {step_id for block in blocks.values() for step_id in block}
    following = {}
    for first, second in itertools.pairwise(chain):
        if failure_exit(steps, blocks[first]) != second:
            raise ChangeError(f"{first!r} no longer leads to {second!r} on failure")
        following[first] = second
    following[chain[-1]] = failure_exit(steps, blocks[chain[-1]])
    for head, block in blocks.items():
        for step_id in block:
            way_out = steps[_index(steps, step_id)]["on_failure"]
            if way_out not in (following[head], ESCALATE):
                raise ChangeError(
                    f"{step_id!r} fails into {way_out!r}, outside the chain: moving it would"
                    " cut that path off"
                )
    for step_id in chain[1:]:
        for data in steps:
            if data["id"] not in members and step_id in (
                data.get("on_success"),
                data.get("on_failure"),
            ):
                raise ChangeError(f"{step_id!r} is entered from outside the chain")
    positions = sorted(_index(steps, step_id) for step_id in members)
    by_id = {step_id: steps[_index(steps, step_id)] for step_id in members}
    _redirect(steps, chain[0], order[0])
    for current, new_next in zip(order, [*order[1:], following[chain[-1]]], strict=True):
        old_next = following[current]
        for step_id in blocks[current]:
            if by_id[step_id]["on_failure"] == old_next:
                by_id[step_id]["on_failure"] = new_next
    sequence = [step_id for head in order for step_id in blocks[head]]
    for position, step_id in zip(positions, sequence, strict=True):
        steps[position] = by_id[step_id]
