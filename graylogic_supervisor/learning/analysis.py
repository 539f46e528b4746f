"""Finding what to change in a playbook, and proving by replay that it would help.

For the active version of each playbook the analysis reads the stored metrics
(findings: low-success steps, steps that never help, skip conditions, missing
fixes, timeouts, bottlenecks) and turns each finding into concrete candidate
changes. Every candidate is replayed (``replay.py``) over the recorded
executions against the current version; only one that lowers the expected
resolution time, with a bootstrap confidence at or above the threshold, from at
least ``min_executions`` executions of the active version, is recommended.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.learning.candidate import Candidate as Candidate  # re-exported
from graylogic_supervisor.learning.cases import CaseSet
from graylogic_supervisor.learning.changes import (
    AddCondition,
    AddStep,
    Change,
    ChangeError,
    RemoveStep,
    ReorderSteps,
    SetRetry,
    SetTimeout,
    SkipVerification,
    apply_change,
    block_of,
    bump,
    entries,
    explicit_steps,
    failure_exit,
    verifying,
)
from graylogic_supervisor.learning.feedback import bearing, wasted_removals
from graylogic_supervisor.learning.finding_changes import from_findings, merged
from graylogic_supervisor.learning.metrics import StepMetrics, StepPair, VersionMetrics
from graylogic_supervisor.learning.replay import (
    SELF,
    Case,
    Comparison,
    Expectation,
    OutcomeModel,
    compare,
    mean_expectation,
    replay,
    supported,
)
from graylogic_supervisor.learning.safety import verification_guard
from graylogic_supervisor.playbooks.model import DONE, ESCALATE, TERMINALS, Playbook, Step
from graylogic_supervisor.store.feedback import FeedbackEntry

LOW_SUCCESS_RATE = 0.5
LOW_SUCCESS_MIN_EXECUTIONS = 10  # "below 0.5 over more than 10 executions"
SKIP_CONDITION_MIN_RUNS = 10
TIMEOUT_SHARE = 0.2
TIMEOUT_MIN = 5
EVIDENCE_IDS = 20
MAX_RETRY_ATTEMPTS = 5
RESAMPLES = 400  # bootstrap resamples behind a comparison's confidence


@dataclass
class Recommendation:
    """A change that replay shows to help, with everything a person needs to judge it."""

    playbook_id: str
    base_version: str
    type: str
    priority: str
    confidence: float
    sample_size: int
    summary: str
    change: dict[str, Any]
    evidence: dict[str, Any]
    expected_impact: dict[str, Any]
    # Replay could not judge it (it rests on what no execution recorded): to be tried on a
    # share of incidents beside the current version, not made the version for all.
    trial: bool = False

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.playbook_id, self.base_version, self.change], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def time_saved_s(self) -> float:
        return float(-self.expected_impact["resolution_time_s"]["change"])


@dataclass
class PlaybookAnalysis:
    playbook_id: str
    version: str
    executions: int
    new_executions: int
    findings: dict[str, Any] = field(default_factory=dict)
    considered: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    note: str | None = None

    def report(self) -> dict[str, Any]:
        return {
            "playbook_id": self.playbook_id,
            "version": self.version,
            "executions": self.executions,
            "new_executions": self.new_executions,
            "note": self.note,
            "findings": self.findings,
            "considered": self.considered,
            "recommended": [r.summary for r in self.recommendations],
        }


def analyse_playbook(
    playbook: Playbook,
    metrics: VersionMetrics | None,
    new_executions: int,
    steps: Sequence[StepMetrics],
    *,
    pairs: Sequence[StepPair],
    data: CaseSet,
    specs: Mapping[str, ActionSpec],
    settings: LearningConfig,
    feedback: Sequence[FeedbackEntry] = (),
) -> PlaybookAnalysis:
    """``new_executions``: of the active version in the analysis window (the service's
    ``window_days``); ``feedback``: people's, on the playbook's executions."""
    executions = metrics.executions if metrics is not None else 0
    result = PlaybookAnalysis(playbook.id, playbook.version, executions, new_executions)
    result.findings = findings(playbook, steps, pairs, data, specs=specs)
    if new_executions < settings.min_executions:
        result.note = (
            f"{new_executions} executions of {playbook.version} in the analysis window;"
            f" nothing is recommended from fewer than {settings.min_executions}"
        )
        return result
    if not supported(playbook):
        result.note = "parallel groups and needs: are not replayed; findings only"
        return result
    model = data.model(specs, settings.manual_resolve_s)
    baseline = {case: replay(playbook, case, model) for case in data.cases}
    baselines: dict[float, Expectation] = {}  # the current version under each hypothesis
    best_by_key: dict[str, tuple[Recommendation, dict[str, Any]]] = {}
    found = candidates(
        playbook, steps, pairs, data, model=model, specs=specs, found=result.findings
    )
    for candidate in with_feedback(found, playbook, feedback, specs):
        judged = judge(
            playbook,
            candidate,
            data,
            model,
            specs=specs,
            settings=settings,
            baseline=baseline,
            baselines=baselines,
        )
        considered = {
            "change": candidate.change.model_dump(mode="json"),
            "summary": candidate.summary,
            "findings": candidate.findings,
            # "recommended", or why not (as before); in_words says it all for people
            "verdict": "recommended" if judged.recommendation is not None else judged.verdict,
            "in_words": judged.verdict,
            "accepted": judged.recommendation is not None,
            "figures": judged.figures,
        }
        if "feedback" in candidate.evidence:
            considered["feedback"] = candidate.evidence["feedback"]
        result.considered.append(considered)
        evaluated = judged.recommendation
        if evaluated is None:
            continue
        key = _dedupe_key(candidate.change)
        previous = best_by_key.get(key)
        # what the records show first; among equals, the one that saves most
        rank = (not evaluated.trial, evaluated.time_saved_s)
        if previous is None or rank > (not previous[0].trial, previous[0].time_saved_s):
            if previous is not None:
                _outdone(previous[1], evaluated)
            best_by_key[key] = (evaluated, considered)
        else:
            _outdone(considered, previous[0])
    result.recommendations = sorted(
        (rec for rec, _ in best_by_key.values()), key=lambda r: -r.time_saved_s
    )
    return result


def with_feedback(
    found: list[Candidate],
    playbook: Playbook,
    feedback: Sequence[FeedbackEntry],
    specs: Mapping[str, ActionSpec],
) -> list[Candidate]:
    """People's feedback as evidence (``learning/feedback.py``): the removals it proposes,
    and on every candidate the feedback that bears on it. Replay still judges them all."""
    proposed = [candidate.change for candidate in found]
    found = found + [
        Candidate(*extra) for extra in wasted_removals(playbook, feedback, specs, proposed=proposed)
    ]
    for candidate in found:
        said = bearing(candidate.change, playbook, feedback)
        if said is not None:
            candidate.evidence["feedback"] = said
    return found


def _outdone(considered: dict[str, Any], better: Recommendation) -> None:
    """A candidate replay supports, set aside for one that changes the same thing better:
    recorded so, with the one taken instead."""
    considered["accepted"] = False
    _, figures = considered["in_words"].split(": ", 1)  # "recommended[ as a trial]: ..."
    considered["in_words"] = (
        f"replay supports it ({figures}), but another change of the same kind does better:"
        f" {better.summary}"
    )


def _dedupe_key(change: Change) -> str:
    """One recommendation per missing action, per step and kind of change."""
    if isinstance(change, AddStep):
        return f"add:{change.step['action']}"
    if isinstance(change, ReorderSteps):
        return "reorder:" + ",".join(sorted(change.chain))
    return f"{change.type}:{getattr(change, 'step_id', '')}"


@dataclass
class Judgement:
    """A candidate's verdict in words, the figures it rests on, and the recommendation
    when it is one (every candidate gets one, taken or not: the analyses page shows it)."""

    verdict: str
    figures: dict[str, Any] = field(default_factory=dict)
    recommendation: Recommendation | None = None


def evaluate(
    playbook: Playbook,
    candidate: Candidate,
    data: CaseSet,
    model: OutcomeModel,
    *,
    specs: Mapping[str, ActionSpec],
    settings: LearningConfig,
    baseline: Mapping[Case, Expectation] | None = None,
    baselines: dict[float, Expectation] | None = None,
) -> Recommendation | str:
    """The recommendation, or why it is not one."""
    judged = judge(
        playbook,
        candidate,
        data,
        model,
        specs=specs,
        settings=settings,
        baseline=baseline,
        baselines=baselines,
    )
    return judged.verdict if judged.recommendation is None else judged.recommendation


def judge(
    playbook: Playbook,
    candidate: Candidate,
    data: CaseSet,
    model: OutcomeModel,
    *,
    specs: Mapping[str, ActionSpec],
    settings: LearningConfig,
    baseline: Mapping[Case, Expectation] | None = None,
    baselines: dict[float, Expectation] | None = None,
) -> Judgement:
    """Apply, check the verification guard, replay and gate ``candidate``."""
    try:
        proposed = apply_change(
            playbook, candidate.change, bump(playbook.version, candidate.change.type), specs
        )
    except ChangeError as exc:
        return Judgement(f"not applicable: {exc}")
    unsafe = verification_guard(playbook, proposed, specs, data.success_means_health)
    if unsafe is not None:
        return Judgement(unsafe, {"removes_a_verification": True})
    seed = hashlib.sha256(candidate.change.model_dump_json().encode()).digest()
    comparison = compare(
        playbook,
        proposed,
        data.cases,
        model,
        rng=random.Random(seed),
        resamples=RESAMPLES,
        baseline=baseline,
    )
    figures = _figures(comparison, settings)
    verdict = _verdict(comparison, settings)
    if verdict is not None and comparison.proposed.p_guessed > 0:
        trial = _trial(
            playbook,
            proposed,
            candidate,
            data,
            model=model,
            settings=settings,
            verdict=verdict,
            baselines=baselines or {},
        )
        if isinstance(trial, str):
            return Judgement(trial, figures)
        figures["trial_confidence"] = trial.confidence
        figures["break_even_fix_chance"] = trial.expected_impact["break_even_fix_chance"]
        return Judgement(_accepted(trial, settings), figures, trial)
    if verdict is not None:
        return Judgement(verdict, figures)
    rec = Recommendation(
        playbook_id=playbook.id,
        base_version=playbook.version,
        type=candidate.change.type,
        priority=_priority(comparison),
        confidence=round(comparison.confidence, 3),
        sample_size=comparison.cases,
        summary=(
            f"{candidate.summary}; expected resolution time"
            f" {comparison.current.time_s:.1f} s -> {comparison.proposed.time_s:.1f} s"
        ),
        change=candidate.change.model_dump(mode="json"),
        evidence={**candidate.evidence, "based_on_executions": comparison.cases},
        expected_impact=impact(comparison, len(data.cases)),
    )
    return Judgement(_accepted(rec, settings), figures, rec)


def _figures(comparison: Comparison, settings: LearningConfig) -> dict[str, Any]:
    """What the verdict was decided on, as the analyses page shows it."""
    current, proposed = comparison.current, comparison.proposed
    return {
        "executions": comparison.cases,
        "current_time_s": round(current.time_s, 2),
        "proposed_time_s": round(proposed.time_s, 2),
        "time_saved_s": round(comparison.time_saved_s, 2),
        "current_success_rate": round(current.p_resolved, 4),
        "proposed_success_rate": round(proposed.p_resolved, 4),
        "confidence": round(comparison.confidence, 3),
        "confidence_threshold": settings.confidence_threshold,
        "min_improvement": settings.min_improvement,
        "guessed_share": round(proposed.p_guessed, 4),
    }


def _accepted(rec: Recommendation, settings: LearningConfig) -> str:
    """Why a recommendation is one, in the words its refusals use."""
    times = rec.expected_impact["resolution_time_s"]
    kind = "recommended as a trial" if rec.trial else "recommended"
    return (
        f"{kind}: expected resolution time {times['current']:.1f} s -> {times['proposed']:.1f} s,"
        f" confidence {rec.confidence:.2f} at or above {settings.confidence_threshold:g}"
        f" over {rec.sample_size} executions; priority {rec.priority}"
    )


def _verdict(comparison: Comparison, settings: LearningConfig) -> str | None:
    """Why the comparison does not make a recommendation, or None when it does."""
    if comparison.proposed.time_s >= comparison.current.time_s * (1 - 1e-9):
        return (
            f"would not lower the expected resolution time"
            f" ({comparison.current.time_s:.1f} s -> {comparison.proposed.time_s:.1f} s)"
        )
    if comparison.time_saved_s < settings.min_improvement * comparison.current.time_s:
        return (
            f"would save only {comparison.time_saved_s:.2f} s of"
            f" {comparison.current.time_s:.1f} s (under {settings.min_improvement:.0%})"
        )
    if comparison.confidence < settings.confidence_threshold:
        return (
            f"confidence {comparison.confidence:.2f} below {settings.confidence_threshold:g}"
            f" over {comparison.cases} executions"
        )
    return None


BREAK_EVEN_STEPS = 8  # bisection steps: the break-even chance to within 1/256


def _trial(
    playbook: Playbook,
    proposed: Playbook,
    candidate: Candidate,
    data: CaseSet,
    *,
    model: OutcomeModel,
    settings: LearningConfig,
    verdict: str,
    baselines: dict[float, Expectation],
) -> Recommendation | str:
    """A change that rests on what no execution recorded (a fix never run there, a retry
    past the recorded tries, a longer timeout than the one that cut it off), as a trial.

    Its worth depends on one unknown: the chance ``h`` that such a fix repairs where the
    records cannot tell. The break-even ``h*`` is the smallest chance at which it saves
    ``min_improvement``; with nothing known of ``h`` (uniform), it pays off with
    probability ``1 - h*``, its confidence. The expected impact is at ``h = 0.5``.
    """

    def expected(h: float) -> tuple[Expectation, Expectation]:
        hypothesis = model.with_hypothesis(h)
        before = baselines.get(h)
        if before is None:
            before = baselines[h] = mean_expectation(
                [(replay(playbook, case, hypothesis), n) for case, n in data.cases.items()]
            )
        after = mean_expectation(
            [(replay(proposed, case, hypothesis), n) for case, n in data.cases.items()]
        )
        return before, after

    def pays_off(h: float) -> bool:
        before, after = expected(h)
        return before.time_s - after.time_s >= settings.min_improvement * before.time_s

    if not pays_off(1.0):
        return f"{verdict}; it would not pay off even if it always fixed where untried"
    low, high = 0.0, 1.0
    for _ in range(BREAK_EVEN_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if pays_off(middle) else (middle, high)
    break_even = high
    confidence = 1.0 - break_even
    if confidence < settings.confidence_threshold:
        return (
            f"{verdict}; as a trial it pays off only if it fixes {break_even:.0%} of the"
            f" failures where it never ran (confidence {confidence:.2f} below"
            f" {settings.confidence_threshold:g})"
        )
    current, hoped = expected(0.5)
    nothing = expected(0.0)[1]
    comparison = Comparison(sum(data.cases.values()), current, hoped, confidence)
    expected_impact = impact(comparison, len(data.cases))
    expected_impact["method"] = (
        f"trial: replay of {comparison.cases} recorded executions, with an untried fix"
        " taken to repair half of the failures it never met"
    )
    expected_impact["break_even_fix_chance"] = round(break_even, 4)
    expected_impact["if_it_never_fixes_s"] = round(nothing.time_s, 2)
    return Recommendation(
        playbook_id=playbook.id,
        base_version=playbook.version,
        type=candidate.change.type,
        priority=_priority(comparison),
        confidence=round(confidence, 3),
        sample_size=comparison.cases,
        summary=(
            f"trial: {candidate.summary}; no execution shows it, and it pays off if it fixes"
            f" {break_even:.0%} of the failures where it was never tried (expected resolution"
            f" time {current.time_s:.1f} s -> {hoped.time_s:.1f} s if it fixes half,"
            f" {nothing.time_s:.1f} s if none)"
        ),
        change=candidate.change.model_dump(mode="json"),
        evidence={**candidate.evidence, "based_on_executions": comparison.cases},
        expected_impact=expected_impact,
        trial=True,
    )


def impact(comparison: Comparison, distinct: int) -> dict[str, Any]:
    current, proposed = comparison.current, comparison.proposed

    def figure(before: float, after: float, digits: int) -> dict[str, float]:
        return {
            "current": round(before, digits),
            "proposed": round(after, digits),
            "change": round(after - before, digits),
        }

    return {
        "method": (
            f"replay of {comparison.cases} recorded executions ({distinct} distinct)"
            " through the current and the proposed version"
        ),
        "success_rate": figure(current.p_resolved, proposed.p_resolved, 4),
        "resolution_time_s": figure(current.time_s, proposed.time_s, 2),
        "escalation_rate": figure(current.p_escalated, proposed.p_escalated, 4),
    }


def _priority(comparison: Comparison) -> str:
    fewer_escalations = comparison.current.p_escalated - comparison.proposed.p_escalated
    share = comparison.time_saved_s / comparison.current.time_s if comparison.current.time_s else 0
    if fewer_escalations >= 0.05 or share >= 0.25:
        return "high"
    if fewer_escalations >= 0.01 or share >= 0.05:
        return "medium"
    return "low"


# --- findings -----------------------------------------------------------------------------


def findings(
    playbook: Playbook,
    steps: Sequence[StepMetrics],
    pairs: Sequence[StepPair],
    data: CaseSet,
    *,
    specs: Mapping[str, ActionSpec],
) -> dict[str, Any]:
    present = _actions(playbook)
    total_time = sum((s.mean_duration_s or 0.0) * s.attempts for s in steps)
    return {
        "low_success_steps": [
            {
                "step": s.step_id,
                "success_rate": round(s.success_rate or 0.0, 4),
                "executions": s.executions,
            }
            for s in steps
            if s.executions > LOW_SUCCESS_MIN_EXECUTIONS
            and (s.success_rate or 0.0) < LOW_SUCCESS_RATE
        ],
        "never_help": [
            {"step": s.step_id, "executions": s.executions, "always": _constant(s)}
            for s in steps
            if _never_helps(playbook, s, data)
        ],
        "skip_conditions": [
            {"step": p.step_id, "after": f"{p.earlier_step}_{p.earlier_outcome}", "runs": p.runs}
            for p in pairs
            if p.runs >= SKIP_CONDITION_MIN_RUNS and p.successes == 0
        ],
        "missing_fixes": [
            {"action": action, "escalations_it_fixed": count}
            for action, count in data.human_fixes.most_common()
            if action not in present and action in specs
        ],
        "timeouts": [
            {"step": s.step_id, "timeouts": s.timeouts, "attempts": s.attempts}
            for s in steps
            if s.timeouts
        ],
        "bottlenecks": [
            {
                "step": s.step_id,
                "share_of_step_time": round(
                    (s.mean_duration_s or 0.0) * s.attempts / total_time, 4
                ),
                "success_rate": round(s.success_rate or 0.0, 4),
            }
            for s in sorted(steps, key=lambda s: -(s.mean_duration_s or 0.0) * s.attempts)[:3]
            if total_time > 0
        ],
    }


def _actions(playbook: Playbook) -> set[str]:
    return {step.action for step in playbook.steps}


def _constant(step: StepMetrics) -> str | None:
    if step.executions and step.successes == step.executions:
        return "success"
    if step.executions and step.successes == 0:
        return "failure"
    return None


def _never_helps(playbook: Playbook, step: StepMetrics, data: CaseSet) -> bool:
    """Never the fixing step, and its outcome never changed where the run went; and not a
    fix cut off by its timeout where it was what a technician then fixed the failure with
    (it failed for want of time, not because it does not help)."""
    try:
        model_step = playbook.step(step.step_id)
    except KeyError:
        return False
    if step.fixes or step.executions < LOW_SUCCESS_MIN_EXECUTIONS or model_step.is_group:
        return False
    if _censored_fixes(model_step, data):
        return False
    same_either_way = playbook.resolve_transition(
        model_step, model_step.on_success
    ) == playbook.resolve_transition(model_step, model_step.on_failure)
    return same_either_way or _constant(step) is not None


# --- candidates ----------------------------------------------------------------------------


def candidates(
    playbook: Playbook,
    steps: Sequence[StepMetrics],
    pairs: Sequence[StepPair],
    data: CaseSet,
    *,
    model: OutcomeModel,
    specs: Mapping[str, ActionSpec],
    found: Mapping[str, Any] | None = None,
) -> list[Candidate]:
    """Every change worth replaying; ``found``: the findings (computed when not given)."""
    if found is None:
        found = findings(playbook, steps, pairs, data, specs=specs)
    proposed: list[Candidate] = []
    proposed += _missing_steps(playbook, data, specs)
    proposed += _removals(playbook, steps, data, specs)
    proposed += _reorders(playbook, data, model, specs)
    proposed += _conditions(playbook, steps, pairs, data)
    proposed += _retries(playbook, data, specs)
    proposed += _timeouts(playbook, steps, data)
    proposed += _skipped_verifications(playbook, data, specs)
    proposed += from_findings(
        playbook,
        found,
        steps,
        chains=failure_chains(playbook, specs),
        specs=specs,
        others=proposed,
    )
    return merged(proposed)


def _skipped_verifications(
    playbook: Playbook, data: CaseSet, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    """A fix whose every recorded success meant health (the component was healthy right
    after it, at least HEALTH_SHARE of at least HEALTH_MIN_SUCCESSES times) already
    verifies: waiting for the health check after it is time spent on nothing. Where its
    success did not always mean health, the check stays (the guard refuses otherwise)."""
    found = []
    for step in playbook.steps:
        if step.is_group or _kind(specs, step.action) is not ActionKind.FIX:
            continue
        following = playbook.resolve_transition(step, step.on_success)
        if following in TERMINALS:
            continue
        if _kind(specs, playbook.step(following).action) is not ActionKind.VERIFY:
            continue
        if not data.success_means_health(step.action):
            continue
        healthy, successes = data.health_after_success.get(step.action, (0, 0))
        found.append(
            Candidate(
                SkipVerification(step_id=step.id),
                f"end at done when {step.id} succeeds instead of waiting for {following}:"
                f" {healthy} of its {successes} recorded successes were followed by health",
                {
                    "pattern": {
                        "description": f"a success of {step.action} meant the component was"
                        " healthy",
                        "occurrences": successes,
                    },
                    "healthy_after_success": healthy,
                    "successes": successes,
                },
            )
        )
    return found


def _evidence_ids(data: CaseSet, execution_ids: Sequence[str]) -> dict[str, Any]:
    failures = [data.failure_of_execution.get(e) for e in execution_ids]
    return {
        "execution_ids": list(execution_ids[-EVIDENCE_IDS:]),
        "failure_ids": [f for f in failures if f][-EVIDENCE_IDS:],
    }


def _step_id_for(action: str, playbook: Playbook) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", action.lower()).strip("_")[:56] or "step"
    if not base[0].isalpha():
        base = f"s_{base}"
    taken = {step.id for step in playbook.steps}
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}_{number}", number + 1
    return candidate


def _missing_steps(
    playbook: Playbook, data: CaseSet, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    present = _actions(playbook)
    fix_steps = [
        s for s in playbook.steps if specs.get(s.action) and specs[s.action].kind is ActionKind.FIX
    ]
    after_fix = {playbook.resolve_transition(s, s.on_success) for s in fix_steps} - TERMINALS
    # On success a learned step goes where the fixes go to be verified: to done only where
    # the records show its success meant health (with no verification, nowhere).
    verifications = {s.id for s in playbook.steps if _kind(specs, s.action) is ActionKind.VERIFY}
    verify_after = sorted(after_fix & verifications) or sorted(verifications)
    timeout = max([30.0, *(s.timeout_seconds for s in fix_steps)])
    found = []
    missing = Counter(data.human_fixes)
    for action in data.patterns:
        missing[action] += 0  # a learned pattern's fix is a candidate too; replay decides
    for action, count in missing.most_common():
        spec = specs.get(action)
        if spec is None:
            continue
        executions = data.executions_fixed_by(action)
        again = action in present
        if again and sum(step.action == action for step in playbook.steps) > 1:
            continue  # one second run at most: a third would fix what the second missed
        if again:
            # Already in the playbook, and technicians fixed with it after it ran and the
            # failure stayed: a second run where the playbook gives up (a fix that works
            # nine times in ten; its success says nothing, only the verification does).
            executions = [e for e in executions if _succeeded_unfixed(data, e, action)]
            if not executions:
                continue
        targets = data.fix_targets.get(action)
        target = targets.most_common(1)[0][0] if targets else None
        if target is None and spec.needs_target:
            target = playbook.trigger.component
        evidence = {
            **_evidence_ids(data, executions),
            "pattern": {
                "description": (
                    f"in {count} of {len(data.traces)} recent executions the playbook gave up"
                    f" and a technician fixed the failure with {action}"
                ),
                "occurrences": count,
                "resolution": f"{action} {target or ''}".strip(),
            },
            "learned_patterns": data.patterns.get(action, []),
        }
        step_id = _step_id_for(action, playbook)
        new_step: dict[str, Any] = {
            "id": step_id,
            "name": f"{action.replace('_', ' ').capitalize()} (learned)",
            "action": action,
            "timeout_seconds": timeout,
        }
        if target is not None:
            new_step["target"] = target
        if again:
            existing = next(s for s in playbook.steps if s.action == action)
            new_step = {
                **existing.model_dump(mode="json", exclude_defaults=True),
                "id": step_id,
                "name": f"{existing.name} (again, learned)",
            }
            for field in ("on_success", "on_failure", "when", "retry"):
                new_step.pop(field, None)
            evidence["pattern"]["description"] = (
                f"in {len(executions)} of {len(data.traces)} recent executions {action} ran,"
                " the failure stayed, and a technician fixed it with the same action"
            )
        # On success: done only where the records show its success meant health; else its
        # own copy of the playbook's verification, which goes on where the new step's
        # failure would (most fixes "succeed" whether or not they repaired).
        endings: list[dict[str, Any] | None] = []
        if data.success_means_health(action):
            endings.append(None)
        if verify_after:
            model_check = playbook.step(verify_after[0])
            own = model_check.model_dump(mode="json", exclude_defaults=True)
            for field in ("on_success", "on_failure", "when", "retry"):
                own.pop(field, None)
            own["id"] = _step_id_for(f"verify_{step_id}", playbook)
            own["name"] = f"{model_check.name} after {action.replace('_', ' ')}"
            endings.append(own)
        for check in endings:
            step_data = dict(new_step) if check is not None else {**new_step, "on_success": DONE}
            then = "done" if check is None else f"its own {verify_after[0]}"
            for step in playbook.steps:
                if not again:  # a second run only goes where the playbook gives up
                    found.append(
                        Candidate(
                            AddStep(
                                step={**step_data, "on_failure": step.id},
                                before=step.id,
                                verification=check,
                            ),
                            f"add {action} before {step.id}, then {then} on success",
                            evidence,
                        )
                    )
                if playbook.resolve_transition(step, step.on_failure) == ESCALATE:
                    found.append(
                        Candidate(
                            # on failure it carries on where that step's failure led
                            # in the version it is applied to
                            AddStep(step=step_data, after_failure_of=step.id, verification=check),
                            f"add {action} when {step.id} fails, then {then} on success",
                            evidence,
                        )
                    )
    return found


def _succeeded_unfixed(data: CaseSet, execution_id: str, action: str) -> bool:
    """Whether ``action`` succeeded in this execution and the failure stayed (where it
    failed instead, a retry of its step is the candidate: ``_retries``)."""
    case = data.case_of_execution.get(execution_id)
    return case is not None and "success" in case.outcomes().get((action, False), ())


def _kind(specs: Mapping[str, ActionSpec], action: str) -> ActionKind | None:
    spec = specs.get(action)
    return None if spec is None else spec.kind


def _removals(
    playbook: Playbook, steps: Sequence[StepMetrics], data: CaseSet, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    """Steps that never help. Never a verification of health: "never the fix, always
    success" is what a health check after a good fix looks like; where the fix before
    it proves health on its own, ``skip_verification`` ends there instead."""
    found = []
    for metrics in steps:
        if not _never_helps(playbook, metrics, data) or len(playbook.steps) < 2:
            continue
        step = playbook.step(metrics.step_id)
        if step.is_group or _kind(specs, step.action) is ActionKind.VERIFY:
            continue
        always = _constant(metrics)
        target = step.on_failure if always == "failure" else step.on_success
        route = playbook.resolve_transition(step, target)
        found.append(
            Candidate(
                RemoveStep(step_id=step.id, route_to=route),
                f"remove {step.id}: never the fix, always {always or 'the same way'}"
                f" over {metrics.executions} executions",
                {
                    "step_metrics": metrics.as_dict(),
                    "pattern": {
                        "description": f"{step.id} never fixed the failure and never changed"
                        " the path",
                        "occurrences": metrics.executions,
                    },
                },
            )
        )
    return found


def failure_chains(playbook: Playbook, specs: Mapping[str, ActionSpec]) -> list[list[list[str]]]:
    """Maximal runs of blocks (a plain step, with its own verification if it has one),
    every way out of each on failure leading to the next block, which nothing else
    enters (the first may be entered from anywhere). Each chain is its blocks, in order."""
    steps = explicit_steps(playbook)
    entered = entries(steps)
    plain = {
        step.id
        for step in playbook.steps
        if not step.is_group and step.when is None and not step.needs
    }
    checks = verifying(steps, specs)
    by_id = {data["id"]: data for data in steps}
    # A check whose success leads on into another part of the flow is a branch point,
    # not an attempt at a fix: trying fixes before it would change which branch runs.
    plain -= {
        step_id
        for step_id in plain
        if _kind(specs, str(by_id[step_id]["action"])) is ActionKind.CHECK
        and by_id[step_id]["on_success"] not in TERMINALS
        and by_id[step_id]["on_success"] not in checks
    }
    blocks = {head: block_of(steps, head, plain, checks) for head in plain}

    def closed(head: str) -> bool:
        """Every failure in the block goes on to what follows it, or escalates: moved
        elsewhere, a failure into another part of the flow would be cut off."""
        block = blocks[head]
        target = failure_exit(steps, block)
        return all(by_id[m]["on_failure"] in (target, ESCALATE) for m in block)

    def follows(head: str) -> str | None:
        block = blocks[head]
        target = failure_exit(steps, block)
        exits = sum(1 for member in block if by_id[member]["on_failure"] == target)
        if (
            closed(head)
            and target in plain
            and closed(target)
            and target not in block
            and entered[target] == exits
            and by_id[head]["on_success"] != target
        ):
            return target
        return None

    inner = {t for s in plain if (t := follows(s)) is not None}
    inside = {member for block in blocks.values() if len(block) > 1 for member in block[1:]}
    chains = []
    for head in (s.id for s in playbook.steps if s.id in plain and s.id not in inner | inside):
        chain = [head]
        while (following := follows(chain[-1])) is not None and following not in chain:
            chain.append(following)
        if len(chain) >= 2:
            chains.append([blocks[h] for h in chain])
    return chains


def _reorders(
    playbook: Playbook, data: CaseSet, model: OutcomeModel, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    """New orders for each chain of fix blocks: by chance of fixing per second (retries
    counted), and each block moved first. Replay judges them; a block no execution ever
    ran there is judged by the chance it would need to pay off (a trial)."""
    found = []
    weight = sum(data.cases.values())
    for blocks in failure_chains(playbook, specs):
        chain = [block[0] for block in blocks]
        scores = {block[0]: _fix_rate(playbook, block, data, model) for block in blocks}
        by_rate = sorted(chain, key=lambda s: (-scores[s], chain.index(s)))
        orders = [by_rate, *([head, *(h for h in chain if h != head)] for head in chain[1:])]
        seen: set[tuple[str, ...]] = set()
        for order in orders:
            if order == chain or tuple(order) in seen:
                continue
            seen.add(tuple(order))
            found.append(
                Candidate(
                    ReorderSteps(chain=chain, order=order),
                    f"try {' -> '.join(order)} instead of {' -> '.join(chain)}"
                    + (" (highest chance of fixing per second first)" if order == by_rate else ""),
                    {
                        "fixes_per_second": {k: round(v, 5) for k, v in scores.items()},
                        "pattern": {
                            "description": "fixes tried in descending order of their chance"
                            " of fixing per second (retries and verification counted) reach"
                            " the fix soonest on average",
                            "occurrences": weight,
                        },
                    },
                )
            )
    return found


def _fix_rate(
    playbook: Playbook, block: Sequence[str], data: CaseSet, model: OutcomeModel
) -> float:
    """The block's recorded chance of fixing a failure that reaches it, per second it costs."""
    step = playbook.step(block[0])
    attempts = step.retry.attempts if step.retry is not None else 1
    weight = sum(data.cases.values())
    if weight == 0:
        return 0.0
    fixes = cost = 0.0
    for case, count in data.cases.items():
        if case.fixer == SELF:
            continue
        q = model.p_success(case.fixer, step.action, False)  # it succeeds (fixing or not)
        own = case.fixer == step.action
        p = q * model.p_fix(case.fixer, step.action) if own else 0.0  # it fixes
        success = model.duration(step.action, "success") or step.timeout_seconds
        failure = model.duration(step.action, "failure") or step.timeout_seconds
        per_try = q * min(success, step.timeout_seconds) + (1 - q) * min(
            failure, step.timeout_seconds
        )
        tries = sum((1 - q) ** k for k in range(attempts))  # the expected number of tries
        verify = 0.0
        for member in block[1:]:
            check = playbook.step(member)
            verify = min(model.duration(check.action, "success") or 0.0, check.timeout_seconds)
        reached_success = 1 - (1 - q) ** attempts
        fixes += count * (1 - (1 - p) ** attempts)
        cost += count * (per_try * tries + reached_success * verify)
    return fixes / max(cost, 1e-3)


def _conditions(
    playbook: Playbook, steps: Sequence[StepMetrics], pairs: Sequence[StepPair], data: CaseSet
) -> list[Candidate]:
    ran = {s.step_id: s.executions for s in steps}
    found = []
    for pair in pairs:
        if pair.runs < SKIP_CONDITION_MIN_RUNS or pair.successes or "." in pair.step_id:
            continue
        after = sum(
            p.runs
            for p in pairs
            if p.step_id == pair.step_id and p.earlier_step == pair.earlier_step
        )
        if after != ran.get(pair.step_id):
            continue  # the earlier step does not always run first: the condition could not see it
        try:
            step = playbook.step(pair.step_id)
        except KeyError:
            continue
        if step.when is not None or _censored_fixes(step, data):
            continue  # a fix that failed for want of time is not one that never helps
        operator = "==" if pair.earlier_outcome == StepOutcome.FAILURE else "!="
        verb = "failed" if pair.earlier_outcome == StepOutcome.FAILURE else "succeeded"
        when = f"steps.{pair.earlier_step}.outcome {operator} 'success'"
        found.append(
            Candidate(
                AddCondition(step_id=step.id, when=when),
                f"run {step.id} only when {when}: it never succeeded after"
                f" {pair.earlier_step} {verb}"
                f" ({pair.runs} times)",
                {
                    "pattern": {
                        "description": f"{step.id} never succeeds after {pair.earlier_step}"
                        f" {pair.earlier_outcome}",
                        "occurrences": pair.runs,
                    }
                },
            )
        )
    return found


def _retries(playbook: Playbook, data: CaseSet, specs: Mapping[str, ActionSpec]) -> list[Candidate]:
    """One more try of a fix that failed where the same action then fixed it.

    Only that evidence counts: a fix that failed and something else then fixed the
    failure looks the same whether it is flaky or not the fix for that cause (and on most
    playbooks it is the latter), so proposing a retry trial for every such fix would spend
    the site's trials on retries that cannot help.
    """
    found = []
    for step in playbook.steps:
        spec = specs.get(step.action)
        if step.is_group or spec is None or spec.kind is not ActionKind.FIX:
            continue
        attempts = step.retry.attempts if step.retry else 1
        if attempts >= MAX_RETRY_ATTEMPTS:
            continue
        failed_then_fixed_by_same = [
            execution_id
            for execution_id, case in data.case_of_execution.items()
            if case.fixer == step.action
            and "failure" in case.outcomes().get((step.action, False), ())
        ]
        if not failed_then_fixed_by_same:
            continue
        retry = step.retry.model_dump(mode="json") if step.retry else {"backoff_seconds": 1.0}
        retry["attempts"] = attempts + 1
        found.append(
            Candidate(
                SetRetry(step_id=step.id, retry=retry),
                f"try {step.id} {attempts + 1} times: it failed on"
                f" {len(failed_then_fixed_by_same)} failures that {step.action} then fixed",
                {
                    **_evidence_ids(data, failed_then_fixed_by_same),
                    "pattern": {
                        "description": f"{step.action} failed, and the same action fixed it"
                        " afterwards",
                        "occurrences": len(failed_then_fixed_by_same),
                    },
                },
            )
        )
    return found


def _censored_fixes(step: Step, data: CaseSet) -> list[str]:
    """Executions where ``step`` was cut off by its timeout and its own action was what a
    technician then fixed the failure with: it might have worked given the time."""
    found = []
    for trace in data.traces:
        case = data.case_of_execution.get(trace.execution_id)
        if case is None or case.fixer != step.action:
            continue
        if any(v.step_id == step.id and StepOutcome.TIMEOUT in v.outcomes for v in trace.visits):
            found.append(trace.execution_id)
    return found


def _timeouts(playbook: Playbook, steps: Sequence[StepMetrics], data: CaseSet) -> list[Candidate]:
    """Shorter timeouts for steps that hang, longer ones for fixes that were cut off.

    A timed-out attempt is censored: it had not ended. Successes seen before the cut say
    nothing of the attempts still running, so a step whose cut-off attempts were later
    fixed by its own action is never shortened; it is offered twice the time instead,
    which replay cannot judge (nothing recorded past the cut): a trial, and the next
    analysis doubles again if that paid off and it is still cut off.
    """
    found = []
    for metrics in steps:
        try:
            step = playbook.step(metrics.step_id)
        except KeyError:
            continue
        if step.is_group or metrics.timeouts == 0:
            continue
        censored = _censored_fixes(step, data)
        if censored:
            longer = round(step.timeout_seconds * 2, 1)
            found.append(
                Candidate(
                    SetTimeout(step_id=step.id, timeout_seconds=longer),
                    f"give {step.id} {longer:g} s instead of {step.timeout_seconds:g} s:"
                    f" cut off {len(censored)} times on failures that {step.action} then"
                    " fixed by hand",
                    {
                        **_evidence_ids(data, censored),
                        "step_metrics": metrics.as_dict(),
                        "pattern": {
                            "description": f"{step.id} timed out, and a technician fixed the"
                            f" failure with {step.action}",
                            "occurrences": len(censored),
                        },
                    },
                )
            )
            continue
        if (
            metrics.timeouts < TIMEOUT_MIN
            or metrics.timeouts < TIMEOUT_SHARE * metrics.attempts
            or metrics.p99_success_duration_s is None
        ):
            continue
        proposed = max(1.0, round(metrics.p99_success_duration_s * 1.5, 1))
        if proposed >= step.timeout_seconds * 0.8:
            continue
        found.append(
            Candidate(
                SetTimeout(step_id=step.id, timeout_seconds=proposed),
                f"time {step.id} out after {proposed:g} s instead of {step.timeout_seconds:g} s:"
                f" {metrics.timeouts} of {metrics.attempts} attempts timed out, and successes"
                f" took at most about {metrics.p99_success_duration_s:.1f} s (p99)",
                {"step_metrics": metrics.as_dict()},
            )
        )
    return found
