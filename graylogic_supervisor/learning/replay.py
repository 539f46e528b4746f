"""Replaying recorded executions through a playbook version: what would it have done?

Each recorded execution becomes a ``Case``: what fixed it (the fixing step's
action, a technician's fix action from the failure memory, ``SELF`` when it
resolved with no fix, or unknown) and the outcomes its actions had, in order,
before and after the fix. Walking a version for a case uses those recorded
outcomes wherever the version runs the same action in the same state (not yet
fixed, or fixed); only where the case never ran that action in that state does
it fall back on the ``OutcomeModel``, estimated from all cases, and branch on
both outcomes with their probabilities. Durations are the recorded means per
action and outcome, capped by the step's timeout.

A case is fixed only by the success the supervisor credited on health (recorded
as ``fix``), or, replayed where the records run out, by a success of its fixer's
action with the share of its recorded successes that fixed. A success of any
other action, or a non-fixing success of the same one, leaves it unfixed.

The assumptions, stated once: a fix-kind action that is not what fixed a case
does not fix it (it is what the records say whenever it did run); attempts of
a step are independent draws; parallel groups and ``needs:`` playbooks are
not replayed (``supported`` says so).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.learning.trace import Trace
from graylogic_supervisor.playbooks.expression_context import StepRecord, expression_context
from graylogic_supervisor.playbooks.expressions import ExpressionError
from graylogic_supervisor.playbooks.model import DONE, ESCALATE, Playbook, Step, skip_target

K = TypeVar("K")
SELF = "(recovered by itself)"  # a case resolved without any fix
MAX_STOPS = 64  # a walk longer than this counts as escalated
MIN_BRANCH_PROBABILITY = 1e-9
SMOOTHING = 1.0  # pseudo-observations of the fallback estimate
TIMEOUT_PREFIX = "timeout@"  # a recorded attempt cut off by its timeout after so many seconds


def censored_at(word: str) -> float | None:
    """The seconds a recorded timeout was cut at, or None for an outcome that ended."""
    if word.startswith(TIMEOUT_PREFIX):
        return float(word[len(TIMEOUT_PREFIX) :])
    return None


def simple_word(word: str) -> str:
    return "failure" if word.startswith(TIMEOUT_PREFIX) else word


_REPLAY_TIME = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # conditions on time see a weekday noon


@dataclass(frozen=True)
class Case:
    fixer: str | None  # the action that fixes it, SELF, or None when nobody recorded one
    # (action, fixed) -> outcomes: success, failure, or fix (the success that fixed it)
    recorded: tuple[tuple[tuple[str, bool], tuple[str, ...]], ...]
    by_human: bool  # a technician fixed it after the playbook gave up
    component: str
    error_id: str

    def outcomes(self) -> dict[tuple[str, bool], tuple[str, ...]]:
        return dict(self.recorded)


FIXED = "fix"  # a recorded success that fixed the case; any other success fixed nothing


def case_of(
    trace: Trace,
    fixer: str | None,
    by_human: bool,
    component: str,
    *,
    error_id: str,
    fixed_at: int | None = None,
) -> Case:
    """The replayable facts of one execution; ``fixer`` as the caller determined it, and
    ``fixed_at`` the index of the visit whose (last) success fixed it during the run, if
    one did: only that success is a fix, whatever else the fixer's action did."""
    fixed = fixer == SELF
    recorded: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for index, visit in enumerate(trace.visits):
        if not visit.ran:
            continue
        attempts = zip(visit.outcomes, visit.durations, strict=True)
        for number, (outcome, took) in enumerate(attempts, 1):
            simple = "success" if outcome == StepOutcome.SUCCESS else "failure"
            fixes = index == fixed_at and number == len(visit.outcomes) and simple == "success"
            # A timeout is censored: the action had not ended by then; a longer timeout
            # could have seen it succeed. Kept with the time it was cut at.
            word = (
                f"{TIMEOUT_PREFIX}{round(took, 1):g}" if outcome == StepOutcome.TIMEOUT else simple
            )
            recorded[(visit.action, fixed)].append(FIXED if fixes else word)
            fixed = fixed or fixes
    return Case(
        fixer,
        tuple(sorted((key, tuple(values)) for key, values in recorded.items())),
        by_human,
        component,
        error_id,
    )


@dataclass
class OutcomeModel:
    """Success probabilities and mean durations, estimated from weighted cases and traces."""

    specs: Mapping[str, ActionSpec]
    manual_s: float
    by_case: dict[tuple[str | None, str, bool], list[int]] = field(default_factory=dict)
    by_state: dict[tuple[str, bool], list[int]] = field(default_factory=dict)
    by_action: dict[str, list[int]] = field(default_factory=dict)
    # (fixer, its action) -> [successes that fixed, successes] before the case was fixed
    fix_share: dict[tuple[str | None, str], list[int]] = field(default_factory=dict)
    durations: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # How a fix action came out, before any fix, where it was not the fix: whether it
    # "works" when it does not repair (a restart that returns 0) or fails.
    not_fixing: dict[str, list[int]] = field(default_factory=dict)
    # The chance that a fix action repairs a failure where the records cannot tell: it
    # never ran there before the fix, a retry past the recorded attempts, or a longer
    # timeout than the one that cut it off. 0 is what the records show (it did not fix
    # where it ran); a higher value is a hypothesis, which only a trial can confirm.
    hypothesis: float = 0.0

    @classmethod
    def estimate(
        cls,
        cases: Mapping[Case, int],
        traces: Iterable[Trace],
        specs: Mapping[str, ActionSpec],
        default_manual_s: float,
        *,
        manual_times: Sequence[float] = (),
    ) -> OutcomeModel:
        """``manual_times``: technicians' recorded times (their mean is used for every
        case, so that cases differ only in what the playbook can change)."""
        model = cls(
            specs, sum(manual_times) / len(manual_times) if manual_times else default_manual_s
        )
        for case, weight in cases.items():
            for (action, fixed), outcomes in case.recorded:
                wins = sum(1 for o in outcomes if simple_word(o) != "failure") * weight
                total = len(outcomes) * weight
                _count(model.by_case, (case.fixer, action, fixed), wins, total)
                if action == case.fixer and not fixed:
                    fixes = sum(1 for o in outcomes if o == FIXED) * weight
                    _count(model.fix_share, (case.fixer, action), fixes, wins)
                _count(model.by_state, (action, fixed), wins, total)
                _count(model.by_action, action, wins, total)
                if not fixed and action != case.fixer:
                    _count(model.not_fixing, action, wins, total)
        sums: dict[tuple[str, str], list[float]] = {}
        for trace in traces:
            for visit in trace.visits:
                for outcome, duration in zip(visit.outcomes, visit.durations, strict=True):
                    if outcome == StepOutcome.SKIPPED:
                        continue
                    simple = "success" if outcome == StepOutcome.SUCCESS else "failure"
                    entry = sums.setdefault((visit.action, simple), [0.0, 0.0])
                    entry[0] += duration
                    entry[1] += 1
        model.durations = sums
        return model

    def p_success(self, fixer: str | None, action: str, fixed: bool) -> float:
        prior = self._prior(fixer, action, fixed)
        wins, total = self.by_case.get((fixer, action, fixed), (0, 0))
        return (wins + SMOOTHING * prior) / (total + SMOOTHING)

    def p_fix(self, fixer: str | None, action: str) -> float:
        """How often a success of the case's own fix, before it was fixed, did fix it
        (1 where nothing says otherwise: a technician fixed it with this action)."""
        fixes, successes = self.fix_share.get((fixer, action), (0, 0))
        return fixes / successes if successes else 1.0

    def _prior(self, fixer: str | None, action: str, fixed: bool) -> float:
        spec = self.specs.get(action)
        if spec is not None and spec.kind is ActionKind.FIX:
            wins, total = self.by_case.get((fixer, action, False), (0, 0))
            if action == fixer:  # this case's own fix: as it did when it was needed
                return wins / total if total else 1.0  # a technician fixed it with this
            # Not what fixes this case: as it did in this case in the other state, else
            # as it did wherever it was not the fix, else taken to fail.
            for wins, total in (
                self.by_case.get((fixer, action, not fixed), (0, 0)),
                self.not_fixing.get(action, (0, 0)),
            ):
                if total:
                    return wins / total
            return 0.0
        for wins, total in (
            self.by_state.get((action, fixed), (0, 0)),
            self.by_case.get((fixer, action, not fixed), (0, 0)),
        ):
            if total:
                return wins / total
        wins, total = self.by_action.get(action, (0, 0))
        return wins / total if total else 0.5

    def is_fix(self, action: str) -> bool:
        spec = self.specs.get(action)
        return spec is not None and spec.kind is ActionKind.FIX

    def with_hypothesis(self, chance: float) -> OutcomeModel:
        return replace(self, hypothesis=chance)

    def duration(self, action: str, outcome: str) -> float | None:
        """Mean recorded seconds for this action and outcome (either outcome if need be)."""
        for key in (
            (action, outcome),
            (action, "failure" if outcome == StepOutcome.SUCCESS else "success"),
        ):
            entry = self.durations.get(key)
            if entry and entry[1]:
                return entry[0] / entry[1]
        return None


def _count(table: dict[K, list[int]], key: K, wins: int, total: int) -> None:
    counts = table.setdefault(key, [0, 0])
    counts[0] += wins
    counts[1] += total


@dataclass(frozen=True)
class Expectation:
    """What a version is expected to do for one case."""

    time_s: float  # mean resolution time, a technician's time included where it gives up
    p_resolved: float  # resolved by the playbook
    p_escalated: float
    p_guessed: float = 0.0  # the share of outcomes that rest on the model's hypothesis


@dataclass
class _Branch:
    step_id: str
    time: float
    fixed: bool
    probability: float
    used: Counter[tuple[str, bool]]
    records: dict[str, StepRecord]
    stops: int
    guessed: bool = False


def supported(playbook: Playbook) -> bool:
    return not playbook.uses_needs and not any(step.is_group for step in playbook.steps)


def replay(playbook: Playbook, case: Case, model: OutcomeModel) -> Expectation:
    """The expected result of ``playbook`` for ``case``, over every branch it could take."""
    recorded = case.outcomes()
    failure = FailureInfo("replay", case.component, case.error_id, "")
    manual = model.manual_s
    time_total = resolved = escalated = guessed = 0.0
    stack = [_Branch(playbook.steps[0].id, 0.0, case.fixer == SELF, 1.0, Counter(), {}, 0)]
    limit = playbook.timeout_seconds
    while stack:
        branch = stack.pop()
        if branch.step_id in (DONE, ESCALATE) or branch.stops >= MAX_STOPS or branch.time >= limit:
            ends_fixed = branch.step_id == DONE and branch.fixed
            took = min(branch.time, limit)
            if branch.guessed:
                guessed += branch.probability
            if ends_fixed and branch.time < limit:
                resolved += branch.probability
                time_total += branch.probability * took
            else:
                escalated += branch.probability
                time_total += branch.probability * (took + manual)
            continue
        step = playbook.step(branch.step_id)
        if step.when is not None and not _holds(step, branch.records, failure, playbook):
            records = {**branch.records, step.id: StepRecord(StepOutcome.SKIPPED, {}, "", 0.0, 0)}
            stack.append(
                _Branch(
                    skip_target(playbook, step),
                    branch.time,
                    branch.fixed,
                    branch.probability,
                    branch.used,
                    records,
                    branch.stops + 1,
                    branch.guessed,
                )
            )
            continue
        stack.extend(_attempts(playbook, step, branch, case, recorded=recorded, model=model))
    return Expectation(time_total, resolved, escalated, guessed)


def _holds(
    step: Step, records: Mapping[str, StepRecord], failure: FailureInfo, playbook: Playbook
) -> bool:
    assert step.when is not None
    ctx = expression_context(
        failure=failure, steps=records, params=playbook.parameters, now=_REPLAY_TIME
    )
    try:
        return bool(step.when.test(ctx))
    except ExpressionError:
        return False  # as the runner does: a condition that cannot be evaluated skips


def _attempts(
    playbook: Playbook,
    step: Step,
    branch: _Branch,
    case: Case,
    *,
    recorded: Mapping[tuple[str, bool], tuple[str, ...]],
    model: OutcomeModel,
) -> list[_Branch]:
    """The branches after ``step``'s attempts: one per way its attempts can come out."""
    attempts = step.retry.attempts if step.retry is not None else 1
    results: list[_Branch] = []
    live = [(branch.time, branch.fixed, branch.probability, branch.used, branch.guessed)]
    for number in range(1, attempts + 1):
        following = []
        for time, fixed, probability, used, guessed in live:
            if number > 1 and step.retry is not None:
                time += min(
                    step.retry.backoff_seconds * step.retry.multiplier ** (number - 2),
                    step.retry.max_backoff_seconds,
                )
            key = (step.action, fixed)
            now_used = used.copy()
            now_used[key] += 1
            for option in _options(
                step, case, fixed, recorded.get(key, ()), used=used[key], model=model
            ):
                weight = probability * option.chance
                if weight < MIN_BRANCH_PROBABILITY:
                    continue
                now_fixed = fixed or option.fixes
                now_guessed = guessed or option.guessed
                outcome = option.outcome
                if outcome == StepOutcome.SUCCESS or number == attempts:
                    record = StepRecord(StepOutcome(outcome), {}, "", option.took, number)
                    target = step.on_success if outcome == StepOutcome.SUCCESS else step.on_failure
                    results.append(
                        _Branch(
                            playbook.resolve_transition(step, target),
                            time + option.took,
                            now_fixed,
                            weight,
                            now_used,
                            {**branch.records, step.id: record},
                            branch.stops + 1,
                            now_guessed,
                        )
                    )
                else:
                    following.append((time + option.took, now_fixed, weight, now_used, now_guessed))
        live = following
    return results


@dataclass(frozen=True)
class _Option:
    """One way an attempt can come out: its outcome, chance, seconds, and whether it fixes."""

    outcome: str
    chance: float
    took: float
    fixes: bool
    guessed: bool = False  # the records could not tell; the model's hypothesis decided


def _options(
    step: Step,
    case: Case,
    fixed: bool,
    seen: tuple[str, ...],
    *,
    used: int,
    model: OutcomeModel,
) -> list[_Option]:
    """The outcomes of the next attempt of ``step``: what the case recorded for it where it
    did, else the model's estimate; a fix action's chance of repairing where the records
    cannot tell is the model's hypothesis."""
    action, limit = step.action, step.timeout_seconds

    def ended(outcome: str, chance: float, fixes: bool = False, guessed: bool = False) -> _Option:
        seconds = model.duration(action, outcome)
        if seconds is None:
            seconds = limit  # never seen: as long as it may take
        if seconds > limit:
            return _Option("failure", chance, limit, False, guessed)
        return _Option(outcome, chance, seconds, fixes, guessed)

    unknown_fix = not fixed and model.is_fix(action) and action != case.fixer
    if used < len(seen):
        word = seen[used]
        if word == FIXED:
            return [ended("success", 1.0, fixes=True)]
        cut_at = censored_at(word)
        if cut_at is None:
            return [ended(word, 1.0)]
        if limit <= cut_at * (1 + 1e-6):
            return [_Option("failure", 1.0, limit, False)]  # cut off again, at this limit
        # Cut off before, and given longer now: what it would have done is not recorded.
        if action == case.fixer or unknown_fix:
            h = model.hypothesis
            return [
                _Option("success", h, limit, True, True),
                _Option("failure", 1.0 - h, limit, False, True),
            ]
        return [_Option("failure", 1.0, limit, False, True)]
    p = model.p_success(case.fixer, action, fixed)
    if action == case.fixer and not fixed:
        q = model.p_fix(case.fixer, action)  # how often its success did fix such a case
        return [
            ended("success", p * q, fixes=True),
            ended("success", p * (1.0 - q)),
            ended("failure", 1.0 - p),
        ]
    if not unknown_fix or seen:
        # Not a fix, or a further try of one this case recorded not fixing it: as the
        # records say (it did not fix here; another try is another such draw).
        return [ended("success", p), ended("failure", 1.0 - p)]
    # A fix action this case never ran before the fix: by the records it does not
    # repair (it did not wherever it ran and was not the fix); the hypothesis is that
    # it does with some chance. Only a trial can tell.
    h = model.hypothesis
    return [
        ended("success", h, fixes=True, guessed=True),
        ended("success", (1.0 - h) * p, guessed=True),
        ended("failure", (1.0 - h) * (1.0 - p), guessed=True),
    ]


@dataclass(frozen=True)
class Comparison:
    """A proposed version against the current one, over the same cases."""

    cases: int
    current: Expectation
    proposed: Expectation
    confidence: float  # share of bootstrap resamples in which the proposal is faster

    @property
    def time_saved_s(self) -> float:
        return self.current.time_s - self.proposed.time_s


def mean_expectation(results: Sequence[tuple[Expectation, int]]) -> Expectation:
    total = sum(weight for _, weight in results)
    return Expectation(
        sum(e.time_s * w for e, w in results) / total,
        sum(e.p_resolved * w for e, w in results) / total,
        sum(e.p_escalated * w for e, w in results) / total,
        sum(e.p_guessed * w for e, w in results) / total,
    )


def compare(
    current: Playbook,
    proposed: Playbook,
    cases: Mapping[Case, int],
    model: OutcomeModel,
    *,
    rng: random.Random,
    resamples: int = 400,
    baseline: Mapping[Case, Expectation] | None = None,
) -> Comparison:
    """Replay both versions over ``cases``; the confidence is a Poisson bootstrap.

    Each resample weighs each distinct case by a Poisson draw with its count as
    the mean, and asks whether the proposal's total time is lower. The model's
    estimates are not re-drawn per resample, so where they carry the decision
    the confidence is somewhat optimistic; the sample size is reported beside it.
    """
    items = list(cases.items())
    before = [
        (baseline[case] if baseline is not None else replay(current, case, model), weight)
        for case, weight in items
    ]
    after = [(replay(proposed, case, model), weight) for case, weight in items]
    differences = [
        (a.time_s - b.time_s, weight) for (b, weight), (a, _) in zip(before, after, strict=True)
    ]
    faster = 0
    for _ in range(resamples):
        total = 0.0
        drawn = 0
        for difference, weight in differences:
            count = _poisson(rng, weight)
            total += difference * count
            drawn += count
        if drawn and total < 0:
            faster += 1
    return Comparison(
        sum(weight for _, weight in items),
        mean_expectation(before),
        mean_expectation(after),
        faster / resamples,
    )


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:  # normal approximation, ample at this size
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
