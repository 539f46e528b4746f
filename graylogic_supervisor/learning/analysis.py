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

from graylogic_supervisor.engine.action import ActionKind, ActionSpec
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
    apply_change,
    bump,
    explicit_steps,
)
from graylogic_supervisor.learning.metrics import StepMetrics, StepPair, VersionMetrics
from graylogic_supervisor.learning.replay import (
    SELF,
    Case,
    Comparison,
    Expectation,
    OutcomeModel,
    compare,
    replay,
    supported,
)
from graylogic_supervisor.playbooks.model import DONE, ESCALATE, TERMINALS, Playbook

LOW_SUCCESS_RATE = 0.5
LOW_SUCCESS_MIN_EXECUTIONS = 10  # "below 0.5 over more than 10 executions"
SKIP_CONDITION_MIN_RUNS = 10
TIMEOUT_SHARE = 0.2
TIMEOUT_MIN = 5
EVIDENCE_IDS = 20
MAX_RETRY_ATTEMPTS = 5


@dataclass(frozen=True)
class AnalysisSettings:
    min_executions: int = 10
    confidence_threshold: float = 0.8
    replay_window: int = 1000
    default_manual_s: float = 1800.0
    resamples: int = 400
    # A change must save at least this share of the expected resolution time: below it
    # a new version is churn (and needs fresh executions) for a gain nobody would notice.
    min_improvement: float = 0.01


@dataclass
class Candidate:
    change: Change
    summary: str
    evidence: dict[str, Any]


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
    pairs: Sequence[StepPair],
    data: CaseSet,
    specs: Mapping[str, ActionSpec],
    settings: AnalysisSettings,
) -> PlaybookAnalysis:
    """``new_executions``: of the active version in the analysis window (the service's
    ``window_days``)."""
    executions = metrics.executions if metrics is not None else 0
    result = PlaybookAnalysis(playbook.id, playbook.version, executions, new_executions)
    result.findings = findings(playbook, steps, pairs, data, specs)
    if new_executions < settings.min_executions:
        result.note = (
            f"{new_executions} executions of {playbook.version} in the analysis window;"
            f" nothing is recommended from fewer than {settings.min_executions}"
        )
        return result
    if not supported(playbook):
        result.note = "parallel groups and needs: are not replayed; findings only"
        return result
    model = data.model(specs, settings.default_manual_s)
    baseline = {case: replay(playbook, case, model) for case in data.cases}
    best_by_key: dict[str, tuple[Recommendation, float]] = {}
    for candidate in candidates(playbook, steps, pairs, data, model, specs):
        evaluated = evaluate(playbook, candidate, data, model, specs, settings, baseline)
        considered = {
            "change": candidate.change.model_dump(mode="json"),
            "summary": candidate.summary,
        }
        if isinstance(evaluated, str):
            considered["verdict"] = evaluated
            result.considered.append(considered)
            continue
        considered["verdict"] = "recommended"
        result.considered.append(considered)
        key = _dedupe_key(candidate.change)
        previous = best_by_key.get(key)
        if previous is None or evaluated.time_saved_s > previous[1]:
            best_by_key[key] = (evaluated, evaluated.time_saved_s)
    result.recommendations = sorted(
        (rec for rec, _ in best_by_key.values()), key=lambda r: -r.time_saved_s
    )
    return result


def _dedupe_key(change: Change) -> str:
    """One recommendation per missing action, per step and kind of change."""
    if isinstance(change, AddStep):
        return f"add:{change.step['action']}"
    if isinstance(change, ReorderSteps):
        return "reorder:" + ",".join(sorted(change.chain))
    return f"{change.type}:{getattr(change, 'step_id', '')}"


def evaluate(
    playbook: Playbook,
    candidate: Candidate,
    data: CaseSet,
    model: OutcomeModel,
    specs: Mapping[str, ActionSpec],
    settings: AnalysisSettings,
    baseline: Mapping[Case, Expectation] | None = None,
) -> Recommendation | str:
    """The recommendation, or why it is not one."""
    try:
        proposed = apply_change(
            playbook, candidate.change, bump(playbook.version, candidate.change.type), specs
        )
    except ChangeError as exc:
        return f"not applicable: {exc}"
    seed = hashlib.sha256(candidate.change.model_dump_json().encode()).digest()
    comparison = compare(
        playbook,
        proposed,
        data.cases,
        model,
        random.Random(seed),
        settings.resamples,
        baseline,
    )
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
    return Recommendation(
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
            if _never_helps(playbook, s)
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


def _never_helps(playbook: Playbook, step: StepMetrics) -> bool:
    """Never the fixing step, and its outcome never changed where the run went."""
    try:
        model_step = playbook.step(step.step_id)
    except KeyError:
        return False
    if step.fixes or step.executions < LOW_SUCCESS_MIN_EXECUTIONS or model_step.is_group:
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
    model: OutcomeModel,
    specs: Mapping[str, ActionSpec],
) -> list[Candidate]:
    found: list[Candidate] = []
    found += _missing_steps(playbook, data, specs)
    found += _removals(playbook, steps)
    found += _reorders(playbook, data, model, specs)
    found += _conditions(playbook, steps, pairs)
    found += _retries(playbook, data, specs)
    found += _timeouts(playbook, steps)
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
    timeout = max([30.0, *(s.timeout_seconds for s in fix_steps)])
    found = []
    missing = Counter(data.human_fixes)
    for action in data.patterns:
        missing[action] += 0  # a learned pattern's fix is a candidate too; replay decides
    for action, count in missing.most_common():
        spec = specs.get(action)
        if action in present or spec is None:
            continue
        targets = data.fix_targets.get(action)
        target = targets.most_common(1)[0][0] if targets else None
        if target is None and spec.needs_target:
            target = playbook.trigger.component
        executions = data.executions_fixed_by(action)
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
        for on_success in [DONE, *sorted(after_fix)]:
            new_step = {
                "id": step_id,
                "name": f"{action.replace('_', ' ').capitalize()} (learned)",
                "action": action,
                "timeout_seconds": timeout,
                "on_success": on_success,
            }
            if target is not None:
                new_step["target"] = target
            for step in playbook.steps:
                found.append(
                    Candidate(
                        AddStep(step={**new_step, "on_failure": step.id}, before=step.id),
                        f"add {action} before {step.id}, then {on_success} on success",
                        evidence,
                    )
                )
                if playbook.resolve_transition(step, step.on_failure) == ESCALATE:
                    found.append(
                        Candidate(
                            # on failure it carries on where that step's failure led
                            # in the version it is applied to
                            AddStep(step=new_step, after_failure_of=step.id),
                            f"add {action} when {step.id} fails, then {on_success} on success",
                            evidence,
                        )
                    )
    return found


def _removals(playbook: Playbook, steps: Sequence[StepMetrics]) -> list[Candidate]:
    found = []
    for metrics in steps:
        if not _never_helps(playbook, metrics) or len(playbook.steps) < 2:
            continue
        step = playbook.step(metrics.step_id)
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


def failure_chains(playbook: Playbook) -> list[list[str]]:
    """Maximal runs of plain steps, each leading to the next on failure and entered
    only from the one before it (the first may be entered from anywhere)."""
    steps = {s["id"]: s for s in explicit_steps(playbook)}
    entered: dict[str, int] = dict.fromkeys(steps, 0)
    for data in steps.values():
        for target in {data.get("on_success"), data.get("on_failure")}:
            if target in entered:
                entered[target] += 1
    plain = {
        step.id
        for step in playbook.steps
        if not step.is_group and step.when is None and not step.needs
    }

    def follows(step_id: str) -> str | None:
        target = steps[step_id]["on_failure"]
        if target in plain and entered[target] == 1 and steps[step_id]["on_success"] != target:
            return str(target)
        return None

    inner = {t for s in plain if (t := follows(s)) is not None}
    chains = []
    for head in (s.id for s in playbook.steps if s.id in plain and s.id not in inner):
        chain = [head]
        while (following := follows(chain[-1])) is not None and following not in chain:
            chain.append(following)
        if len(chain) >= 2:
            chains.append(chain)
    return chains


def _reorders(
    playbook: Playbook, data: CaseSet, model: OutcomeModel, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    found = []
    weight = sum(data.cases.values())
    for chain in failure_chains(playbook):

        def score(step_id: str) -> float:
            step = playbook.step(step_id)
            p = sum(
                model.p_success(case.fixer, step.action, case.fixer == SELF) * count
                for case, count in data.cases.items()
            ) / max(weight, 1)
            success = model.duration(step.action, "success") or step.timeout_seconds
            failure = model.duration(step.action, "failure") or step.timeout_seconds
            expected = p * min(success, step.timeout_seconds) + (1 - p) * min(
                failure, step.timeout_seconds
            )
            return p / max(expected, 1e-3)

        scores = {step_id: score(step_id) for step_id in chain}
        order = sorted(chain, key=lambda s: (-scores[s], chain.index(s)))
        if order == chain:
            continue
        found.append(
            Candidate(
                ReorderSteps(chain=chain, order=order),
                f"try {' -> '.join(order)} instead of {' -> '.join(chain)}"
                " (highest success probability per second first)",
                {
                    "success_per_second": {k: round(v, 5) for k, v in scores.items()},
                    "pattern": {
                        "description": "fixes tried in descending order of success probability"
                        " per second reach the fix soonest on average",
                        "occurrences": weight,
                    },
                },
            )
        )
    return found


def _conditions(
    playbook: Playbook, steps: Sequence[StepMetrics], pairs: Sequence[StepPair]
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
        if step.when is not None:
            continue
        operator = "==" if pair.earlier_outcome == "failure" else "!="
        verb = "failed" if pair.earlier_outcome == "failure" else "succeeded"
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
                f"try {step.id} {attempts + 1} times: it failed on {len(failed_then_fixed_by_same)}"
                f" failures that {step.action} then fixed",
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


def _timeouts(playbook: Playbook, steps: Sequence[StepMetrics]) -> list[Candidate]:
    found = []
    for metrics in steps:
        if (
            metrics.timeouts < TIMEOUT_MIN
            or metrics.timeouts < TIMEOUT_SHARE * metrics.attempts
            or metrics.p99_success_duration_s is None
        ):
            continue
        try:
            step = playbook.step(metrics.step_id)
        except KeyError:
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
