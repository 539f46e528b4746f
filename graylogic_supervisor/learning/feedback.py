"""People's feedback on executions, counted as evidence by the analysis.

Feedback never decides on its own: a candidate still has to pass the verification
guard (``safety.py``) and replay. What it does:

- it is **attached** to every candidate it bears on (``bearing``), each use naming
  who said what, when, on which execution, and whether it speaks for the change or
  against it, so the person judging a recommendation sees it;
- a step that people marked as wasting time on at least ``WASTED_MIN`` distinct
  executions **proposes** its removal (``wasted_removals``), when the metrics did not
  already: never for a verification of health, a parallel group, or a playbook's only
  step (do no harm).

What bears on which change:

- ``remove_step``, ``add_condition`` (skip it): the step marked wasted speaks for it;
- ``reorder_steps``: a step marked wasted that the new order tries later speaks for
  it, one it tries sooner against;
- ``set_timeout``: shorter, "escalated too late" and the step marked wasted speak for
  it, "escalated too early" against; longer, the other way round;
- ``set_retry`` (more attempts: escalating later): "escalated too early" speaks for
  it, "too late" and the step marked wasted against;
- ``skip_verification``: the check it skips marked wasted speaks for it;
- ``add_step``: "the playbook was not sufficient" and "should have escalated" (it
  did not, and should have) speak for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.learning.changes import (
    AddCondition,
    AddStep,
    Change,
    RemoveStep,
    ReorderSteps,
    SetRetry,
    SetTimeout,
    SkipVerification,
)
from graylogic_supervisor.playbooks.model import TERMINALS, Playbook
from graylogic_supervisor.store.feedback import FeedbackEntry

WASTED_MIN = 2
"""Executions on which people marked a step wasted before its removal is proposed."""
SHOWN = 20
"""Uses of feedback listed with a candidate (the counts cover all of them)."""

Bears = Literal["supports", "against"]


def said(entry: FeedbackEntry) -> str:
    """What the person said, in a few words."""
    parts = []
    if entry.sufficient is not None:
        parts.append("the playbook was " + ("sufficient" if entry.sufficient else "not sufficient"))
    if entry.wasted_steps:
        parts.append(f"wasted time: {', '.join(entry.wasted_steps)}")
    if entry.escalation is not None:
        parts.append(f"escalation: {entry.escalation.replace('_', ' ')}")
    if entry.note:
        parts.append(f"note: {entry.note}")
    return "; ".join(parts)


def _on_step(entry: FeedbackEntry, step_id: str) -> Bears | None:
    return "supports" if step_id in entry.wasted_steps else None


def _timing(entry: FeedbackEntry, *, later: bool) -> Bears | None:
    """A change that escalates later (``later``) or sooner, against the person's timing."""
    if entry.escalation == "too_late":
        return "against" if later else "supports"
    if entry.escalation == "too_early":
        return "supports" if later else "against"
    return None


def _bears(change: Change, playbook: Playbook, entry: FeedbackEntry) -> Bears | None:
    """Whether ``entry`` speaks for ``change`` or against it (None: it says nothing of it)."""
    if isinstance(change, RemoveStep | AddCondition):
        return _on_step(entry, change.step_id)
    if isinstance(change, ReorderSteps):
        for step_id in entry.wasted_steps:
            if step_id in change.chain and step_id in change.order:
                moved = change.order.index(step_id) - change.chain.index(step_id)
                if moved:
                    return "supports" if moved > 0 else "against"
        return None
    if isinstance(change, SetTimeout):
        try:
            current = playbook.step(change.step_id).timeout_seconds
        except KeyError:
            return None
        shorter = change.timeout_seconds < current
        if shorter and change.step_id in entry.wasted_steps:
            return "supports"
        return _timing(entry, later=not shorter)
    if isinstance(change, SetRetry):
        if change.step_id in entry.wasted_steps:
            return "against"
        return _timing(entry, later=True)
    if isinstance(change, SkipVerification):
        try:
            step = playbook.step(change.step_id)
        except KeyError:
            return None
        following = playbook.resolve_transition(step, step.on_success)
        return None if following in TERMINALS else _on_step(entry, following)
    if isinstance(change, AddStep):
        if entry.sufficient is False or entry.escalation == "not_escalated_should_have":
            return "supports"
        return None
    return None


def bearing(
    change: Change, playbook: Playbook, feedback: Iterable[FeedbackEntry]
) -> dict[str, Any] | None:
    """The evidence ``feedback`` gives ``change``: counts, the people, and the newest
    ``SHOWN`` uses (who, when, on which execution, what they said, for or against);
    None when no feedback bears on it."""
    uses: list[dict[str, Any]] = []
    for entry in feedback:
        bears = _bears(change, playbook, entry)
        if bears is None:
            continue
        uses.append(
            {
                "by": entry.given_by,
                "at": entry.given_at,
                "execution_id": entry.execution_id,
                "version": entry.playbook_version,
                "said": said(entry),
                "bears": bears,
            }
        )
    if not uses:
        return None
    return {
        "supporting": sum(use["bears"] == "supports" for use in uses),
        "against": sum(use["bears"] == "against" for use in uses),
        "people": sorted({use["by"] for use in uses}),
        "uses": uses[-SHOWN:],
    }


def wasted_removals(
    playbook: Playbook,
    feedback: Sequence[FeedbackEntry],
    specs: Mapping[str, ActionSpec],
    *,
    proposed: Iterable[Change],
) -> list[tuple[RemoveStep, str, dict[str, Any]]]:
    """(change, summary, evidence) removing each step people marked wasted on at least
    ``WASTED_MIN`` executions, unless a removal of it is ``proposed`` already; never a
    verification, a group or a playbook's only step. Replay still judges each."""
    already = {change.step_id for change in proposed if isinstance(change, RemoveStep)}
    marked: dict[str, set[str]] = {}
    for entry in feedback:
        for step_id in entry.wasted_steps:
            marked.setdefault(step_id, set()).add(entry.execution_id)
    found = []
    for step_id, executions in sorted(marked.items()):
        if len(executions) < WASTED_MIN or step_id in already or len(playbook.steps) < 2:
            continue
        try:
            step = playbook.step(step_id)
        except KeyError:
            continue  # a step of an older version, or a group's branch
        spec = specs.get(step.action)
        if step.is_group or "." in step_id or (spec is not None and spec.kind is ActionKind.VERIFY):
            continue
        route = playbook.resolve_transition(step, step.on_success)
        change = RemoveStep(step_id=step_id, route_to=route)
        found.append(
            (
                change,
                f"remove {step_id}: people marked it as wasting time on"
                f" {len(executions)} executions",
                {
                    "pattern": {
                        "description": f"people said {step_id} wasted time",
                        "occurrences": len(executions),
                    },
                    "execution_ids": sorted(executions)[-SHOWN:],
                },
            )
        )
    return found
