"""The learning part of an execution record: per step whether it helped, revealed the
issue or wasted time, and per execution the steps that were missing.

Computed when read (the execution page, its JSON), from the execution's own rows,
the metrics of the playbook version it ran (``learning/metrics.py``), the action
kinds, what learning proposes and what people said. Precisely:

- **revealed the issue**: the first step row, in the order they ran, of a ``check``
  action that did not succeed (failure, timeout or error): the observation that
  named the cause (its error or result is shown). At most one per execution. Not a
  check that failed in every one of at least ``HISTORY_MIN`` executions of the
  version: one that always fails tells nothing apart.
- **helped**: the successful row of the step the run credited with the fix (the
  execution's ``resolved_by``, a step id): the step whose success preceded the
  resolution. For an execution a technician resolved (``manual_intervention``), the
  row that revealed the issue: it told them where to look (the learning spec's
  example). None otherwise (an escalation nobody has resolved).
- **wasted time**: a row that took time here (a duration above zero) of a step that
  did not help or reveal here, is not a verification of health (never called wasted:
  do no harm), and that over the version's history of at least ``HISTORY_MIN``
  executions never helped: it never fixed a failure, and either it is a fix or its
  outcome never varied (always success or always failure: it never changed where the
  run went). A step people marked as wasting time in feedback on this execution is
  wasted too, whatever else it did here, with who said so (their word is shown; it
  removes nothing by itself).
- **missing steps**, for an execution no step resolved: the fix a technician then
  recorded for its failure (action and target) when the version has no step with
  that action; and each step a pending ``add_step`` recommendation of learning's
  missing-step analysis proposes for the playbook.
- **suggested improvements**: the pending recommendations for the version it ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.outcomes import MANUAL_INTERVENTION
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.learning.metrics import StepMetrics
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.store.feedback import FeedbackEntry
from graylogic_supervisor.store.learning import PENDING, StoredRecommendation
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import RecordViews

HISTORY_MIN = 10
"""Executions of the version before a step can be judged never to help (as the analysis)."""
NOT_SUCCEEDED = frozenset({StepOutcome.FAILURE, StepOutcome.TIMEOUT, StepOutcome.ERROR})


@dataclass(frozen=True)
class StepAnnotation:
    """One step row's annotations, each flag with the reason it was set."""

    seq: int
    step_id: str
    helped: bool = False
    revealed: bool = False
    wasted: bool = False
    why: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "step": self.step_id,
            "helped": self.helped,
            "revealed_issue": self.revealed,
            "wasted_time": self.wasted,
            "why": list(self.why),
        }


@dataclass(frozen=True)
class MissingStep:
    action: str
    target: str | None
    source: str  # "technician" or a recommendation id
    why: str

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "source": self.source,
            "why": self.why,
        }


@dataclass(frozen=True)
class Annotations:
    steps: tuple[StepAnnotation, ...]
    missing: tuple[MissingStep, ...] = ()
    basis: str = ""
    suggested: tuple[tuple[str, str], ...] = ()  # (recommendation id, summary)

    def _ids(self, flag: str) -> list[str]:
        return list(dict.fromkeys(s.step_id for s in self.steps if getattr(s, flag)))

    def as_json(self) -> dict[str, Any]:
        """The learning spec's per-execution fields, and the per-step detail."""
        return {
            "steps_that_helped": self._ids("helped"),
            "steps_that_wasted_time": self._ids("wasted"),
            "revealed_the_issue": self._ids("revealed"),
            "missing_steps": [m.as_json() for m in self.missing],
            "suggested_improvements": [
                {"recommendation_id": rec_id, "summary": summary}
                for rec_id, summary in self.suggested
            ],
            "per_step": [s.as_json() for s in self.steps],
            "basis": self.basis,
        }


def _kind(specs: Mapping[str, ActionSpec], action: str) -> ActionKind | None:
    spec = specs.get(action)
    return None if spec is None else spec.kind


def _always_fails(metrics: StepMetrics | None) -> bool:
    return metrics is not None and metrics.executions >= HISTORY_MIN and metrics.successes == 0


def _never_helps(metrics: StepMetrics | None, kind: ActionKind | None) -> str | None:
    """Why the version's history says this step never helps, or None."""
    if metrics is None or metrics.executions < HISTORY_MIN or metrics.fixes:
        return None
    if kind is ActionKind.FIX:
        return f"never fixed a failure in {metrics.executions} executions"
    if metrics.successes in (0, metrics.executions):
        always = "succeeded" if metrics.successes else "failed"
        return f"always {always} and never fixed a failure in {metrics.executions} executions"
    return None


def annotate(
    execution: ExecutionRecord,
    rows: Sequence[StepRecord],
    *,
    metrics: Sequence[StepMetrics],
    specs: Mapping[str, ActionSpec],
    feedback: Iterable[FeedbackEntry] = (),
    actions_in_version: Iterable[str] = (),
    technician_fix: tuple[str, str | None] | None = None,
    proposals: Iterable[StoredRecommendation] = (),
) -> Annotations:
    """The annotations of ``execution`` (see the module's docstring for each).

    ``metrics``: of the version it ran; ``actions_in_version``: the actions that version's
    steps use; ``technician_fix``: the (action, target) a technician recorded for its
    failure; ``proposals``: the playbook's pending recommendations."""
    by_step = {m.step_id: m for m in metrics}
    pending = list(proposals)
    marked: dict[str, list[str]] = {}
    for entry in feedback:
        for step_id in entry.wasted_steps:
            marked.setdefault(step_id, []).append(entry.given_by)
    revealed_seq = next(
        (
            row.seq
            for row in rows
            if _kind(specs, row.action) is ActionKind.CHECK
            and row.outcome in NOT_SUCCEEDED
            and not _always_fails(by_step.get(row.step_id))
        ),
        None,
    )
    credited = execution.resolved_by if execution.resolved_by != MANUAL_INTERVENTION else None
    helped_seq = next(
        (
            row.seq
            for row in reversed(rows)
            if row.step_id == credited and row.outcome is StepOutcome.SUCCESS
        ),
        None,
    )
    by_hand = execution.resolved_by == MANUAL_INTERVENTION
    if by_hand:
        helped_seq = revealed_seq
    good = {row.step_id for row in rows if row.seq in (revealed_seq, helped_seq)}
    annotated = []
    for row in rows:
        why: list[str] = []
        helped = row.seq == helped_seq
        revealed = row.seq == revealed_seq
        if helped:
            why.append(
                "it showed the technician what to fix"
                if by_hand
                else "its success preceded the resolution: the run credited it with the fix"
            )
        if revealed:
            why.append(f"the first check that failed: {row.error or row.result or row.outcome}")
        wasted = False
        kind = _kind(specs, row.action)
        if row.step_id not in good and kind is not ActionKind.VERIFY:
            history = _never_helps(by_step.get(row.step_id), kind)
            if history is not None and (row.duration_seconds or 0.0) > 0:
                wasted = True
                why.append(f"took {row.duration_seconds:.2f} s here and {history}")
        if row.step_id in marked:
            wasted = True
            why.append(f"marked as wasting time by {', '.join(sorted(set(marked[row.step_id])))}")
        annotated.append(StepAnnotation(row.seq, row.step_id, helped, revealed, wasted, tuple(why)))
    missing: list[MissingStep] = []
    if credited is None and execution.completed_at is not None:
        present = set(actions_in_version)
        if technician_fix is not None and technician_fix[0] not in present:
            action, target = technician_fix
            missing.append(
                MissingStep(
                    action,
                    target,
                    "technician",
                    f"a technician fixed the failure with {action} {target or ''}".rstrip()
                    + f"; {execution.playbook_version} has no {action} step",
                )
            )
        for rec in pending:
            if rec.type != "add_step" or rec.playbook_id != execution.playbook_id:
                continue
            step = rec.change.get("step", {})
            action = str(step.get("action", ""))
            if action and all(m.action != action for m in missing):
                missing.append(MissingStep(action, step.get("target"), rec.id, rec.summary))
    counted = max((m.executions for m in metrics), default=0)
    basis = (
        f"metrics of {execution.playbook_id} {execution.playbook_version} over {counted} executions"
    )
    suggested = tuple(
        (rec.id, rec.summary)
        for rec in pending
        if rec.playbook_id == execution.playbook_id
        and rec.base_version == execution.playbook_version
    )
    return Annotations(tuple(annotated), tuple(missing), basis, suggested)


async def load_annotations(
    execution: ExecutionRecord,
    rows: Sequence[StepRecord],
    *,
    learning: LearningService,
    versions: PlaybookVersions,
    views: RecordViews,
) -> Annotations:
    """``annotate`` with what it needs read from the store: the version's step metrics and
    actions, the technician's recorded fix, the pending proposals, people's feedback."""
    playbook = await versions.definition(execution.playbook_id, execution.playbook_version)
    technician_fix = None
    if execution.failure_id is not None:
        remembered = await views.memory_record(execution.failure_id)
        resolution = remembered.record.get("resolution") if remembered is not None else None
        if resolution and resolution.get("fix_action"):
            technician_fix = (str(resolution["fix_action"]), resolution.get("fix_target"))
    return annotate(
        execution,
        rows,
        metrics=await learning.metrics.steps(execution.playbook_id, execution.playbook_version),
        specs=learning.specs,
        feedback=await learning.feedback.of_execution(execution.id),
        actions_in_version=[step.action for step in playbook.steps] if playbook else [],
        technician_fix=technician_fix,
        proposals=await learning.store.listing(PENDING, execution.playbook_id, limit=50),
    )
