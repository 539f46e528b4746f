"""Recorded executions of one playbook, each with what fixed it, ready to replay."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.learning.replay import SELF, Case, OutcomeModel, case_of
from graylogic_supervisor.learning.trace import Trace, Visit, trace_of
from graylogic_supervisor.store.learning import LearningRepository, RecordedCase

HUMAN = "resolved_by_human"  # failure_memory.outcome (no StrEnum in domain/states.py yet)
RESOLVED = (HUMAN, "resolved_by_supervisor")
# An action's success "means health" (a learned step may then go straight to done) when
# at least this share of at least this many recorded successes were followed by health.
HEALTH_SHARE = 0.99
HEALTH_MIN_SUCCESSES = 20


@dataclass
class CaseSet:
    """The replay window of one playbook: its cases with counts, and where they came from."""

    traces: list[Trace] = field(default_factory=list)
    cases: Counter[Case] = field(default_factory=Counter)
    case_of_execution: dict[str, Case] = field(default_factory=dict)
    failure_of_execution: dict[str, str | None] = field(default_factory=dict)
    human_fixes: Counter[str] = field(default_factory=Counter)  # action -> escalations it fixed
    fix_targets: dict[str, Counter[str]] = field(default_factory=dict)
    manual_times: list[float] = field(default_factory=list)  # technicians' times, seconds
    patterns: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # by fix action
    # action -> [successes followed by health, successes]: ``success_means_health``
    health_after_success: dict[str, list[int]] = field(default_factory=dict)

    def model(self, specs: Mapping[str, ActionSpec], default_manual_s: float) -> OutcomeModel:
        """The outcome model these cases give (technicians' time: their recorded mean)."""
        return OutcomeModel.estimate(
            self.cases, self.traces, specs, default_manual_s, manual_times=self.manual_times
        )

    def success_means_health(self, action: str) -> bool:
        """Whether the records show that this action's success meant the component was
        healthy: HEALTH_SHARE of at least HEALTH_MIN_SUCCESSES successes were followed by
        a successful verification (or, last in a run, by a healthy probe after it)."""
        healthy, successes = self.health_after_success.get(action, (0, 0))
        return successes >= HEALTH_MIN_SUCCESSES and healthy >= HEALTH_SHARE * successes

    def executions_fixed_by(self, action: str, by_human: bool = True) -> list[str]:
        return [
            execution_id
            for execution_id, case in self.case_of_execution.items()
            if case.fixer == action and (not by_human or case.by_human)
        ]


async def load_cases(
    store: LearningRepository,
    playbook_id: str,
    specs: Mapping[str, ActionSpec],
    window: int,
) -> CaseSet:
    """The ``window`` most recent counted executions of the playbook, of every version."""
    recorded = await store.cases(playbook_id, window)
    patterns: dict[str, list[dict[str, object]]] = {}
    if recorded:
        # The failure memory's learned patterns for the same failures: more evidence for a fix.
        component = recorded[0].execution.component
        for pattern in await store.memory_patterns_for(component, playbook_id):
            found_pattern: dict[str, object] = {
                "pattern_id": pattern.id,
                "fix": f"{pattern.fix_action} {pattern.fix_target or ''}".strip(),
                "failures": pattern.failures,
                "first_detected": pattern.created_at,
                "times_matched": pattern.times_matched,
                "times_resolved": pattern.times_resolved,
            }
            patterns.setdefault(pattern.fix_action, []).append(found_pattern)
    found = CaseSet(patterns=patterns)
    for one in reversed(recorded):  # oldest first
        execution = one.execution
        trace = trace_of(execution, one.steps)
        fixer, manual_s = _fixer(one, trace, specs)
        if one.memory_fix and one.memory_outcome == HUMAN:
            found.human_fixes[one.memory_fix] += 1
            if one.memory_target:
                found.fix_targets.setdefault(one.memory_fix, Counter())[one.memory_target] += 1
        if manual_s is not None:
            found.manual_times.append(manual_s)
        by_human = one.memory_outcome == HUMAN and bool(one.memory_fix)
        case = case_of(
            trace,
            fixer,
            by_human,
            execution.component,
            error_id=execution.error_id,
            fixed_at=_fixed_at(trace, fixer, specs),
        )
        _count_health_after_success(found.health_after_success, trace, specs)
        found.traces.append(trace)
        found.cases[case] += 1
        found.case_of_execution[trace.execution_id] = case
        found.failure_of_execution[trace.execution_id] = execution.failure_id
    return found


def _fixer(
    case: RecordedCase, trace: Trace, specs: Mapping[str, ActionSpec]
) -> tuple[str | None, float | None]:
    """What fixed this execution's failure, and how long a technician took if it was one.

    The runner's credited fix counts only when the run succeeded (resolved, and not
    unhealthy after it); otherwise the run is like an escalation and the fix the failure
    memory records (a technician's, or a later run's) is the fixer.
    """
    if trace.succeeded:
        visit = _credited(trace, specs)
        return (visit.action if visit is not None else SELF), None
    if case.memory_fix and case.memory_outcome in RESOLVED:
        manual = None
        human = case.memory_outcome == HUMAN
        completed_at = case.execution.completed_at
        if human and case.memory_resolved_at and completed_at:
            resolved = datetime.fromisoformat(case.memory_resolved_at)
            ended = datetime.fromisoformat(completed_at)
            manual = float(round(max((resolved - ended).total_seconds(), 0.0)))
        return case.memory_fix, manual
    return None, None


def _credited(trace: Trace, specs: Mapping[str, ActionSpec]) -> Visit | None:
    """The last successful visit of the runner's credited step, if it is a fix."""
    for visit in reversed(trace.visits):
        if visit.step_id == trace.resolved_by and visit.outcome == StepOutcome.SUCCESS:
            spec = specs.get(visit.action)
            return visit if spec is not None and spec.kind is ActionKind.FIX else None
    return None


def _fixed_at(trace: Trace, fixer: str | None, specs: Mapping[str, ActionSpec]) -> int | None:
    """The index of the visit whose success fixed the failure during this run (None: not
    fixed during it): only the credited visit of a successful run. Another success of the
    same action (shape 1: it succeeds whether or not it fixed) fixed nothing."""
    if not trace.succeeded or fixer is None or fixer == SELF:
        return None
    visit = _credited(trace, specs)
    if visit is None or visit.action != fixer:
        return None
    return max(i for i, v in enumerate(trace.visits) if v is visit)


def _count_health_after_success(
    table: dict[str, list[int]], trace: Trace, specs: Mapping[str, ActionSpec]
) -> None:
    """For each successful visit of a fix: was the component healthy right after it?
    The next visit that changes or verifies something decides: a verification's success
    (yes), another fix (no: that one may be the cause), none (the run's verdict)."""
    for index, visit in enumerate(trace.visits):
        spec = specs.get(visit.action)
        if visit.outcome != StepOutcome.SUCCESS or spec is None or spec.kind is not ActionKind.FIX:
            continue
        healthy = trace.succeeded and trace.healthy_after is True
        for later in trace.visits[index + 1 :]:
            kind = specs[later.action].kind if later.action in specs else None
            if later.ran and kind in (ActionKind.VERIFY, ActionKind.FIX):
                healthy = kind is ActionKind.VERIFY and later.outcome == StepOutcome.SUCCESS
                break
        counts = table.setdefault(visit.action, [0, 0])
        counts[0] += int(healthy)
        counts[1] += 1
