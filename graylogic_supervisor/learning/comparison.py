"""A trial version against its base, run side by side: promote, drop, or keep running.

Both arms are the executions that started since the trial did (the same days,
the same faults), each costed as the rollback rule costs it
(``resolution.py``: its duration, plus the technician's time when it did not
fix the failure). Three tests:

- **Worse, at any time** (drop): the rollback rule's own tests
  (``rollback.compare_versions``: success more than 10 points below, or mean
  time more than 1.25 times the base's), or simply a higher mean time with a
  one-sided Welch z above 1.645 (alpha 0.05): a trial must do better, not
  merely no worse. Dropping early costs only a lost improvement, so it is
  checked after every execution.
- **Better, at a look** (promote): a look is taken when the trial arm reaches
  ``min_executions`` times a power of two (10, 20, 40, 80 by default, as the
  rollback rule's time test looks), ``LOOKS`` times; each doubles what the
  test knows. At a look the trial is promoted when its times are lower with z
  above ``Z_LOOK`` (Pocock's constant for four looks so spaced at one-sided
  alpha 0.05: looking four times promotes a change that is no better at most
  5 % of the time; checked by simulation), its mean time is lower, and its
  success rate is not lower (z of the drop <= 1.645). "Lower" is judged by
  Welch's z on the means or, where a technician's hour in a few incidents
  swamps the means' spread, by the Mann-Whitney rank z (a trial faster in most
  incidents, with a lower mean): a cheap fix tried first that saves a minute in
  most incidents is shown in tens of executions, not hundreds. Either test at
  the boundary; with the mean-lower condition on both, a trial no better is
  promoted at most about 10 % of the time (two tests, each 5 %).
- **Not shown better** (drop): at the last look, 8 x ``min_executions`` trial
  executions, without a promotion. A fix that saves a technician's visit in a
  few incidents has a large spread, and needs those executions to show.

How many executions a trial needs: with a spread (standard deviation) ``s`` of
the resolution time in both arms, a trial arm of ``n`` and a base arm of
``4n`` (the default 20 % share), a saving ``d`` is promoted at a look once
``d / (s * sqrt(1.25 / n)) > 2.13``: ``d = s / 2`` needs n = 23 (the look at
40), ``d = s / 3`` n = 52 (at 80); ``d = s`` is promoted at the first look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.learning.rollback import (
    Z_CRITICAL,
    Verdict,
    VersionSample,
    compare_versions,
)

LOOKS = 4  # at min_executions x 1, 2, 4, 8 trial executions
Z_LOOK = 2.13  # one-sided Pocock boundary for those 4 looks, alpha 0.05 (by simulation)
Z_CAP = 99.0  # a z between two arms without spread: decisive, and still valid JSON


@dataclass(frozen=True)
class ArmFigures:
    """One arm's executions since the trial started, costed with the technician's time."""

    version: str
    executions: int
    resolutions: int
    mean_cost_s: float
    cost_var: float  # sample variance of the cost

    @property
    def success_rate(self) -> float:
        return self.resolutions / self.executions if self.executions else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "executions": self.executions,
            "resolutions": self.resolutions,
            "success_rate": round(self.success_rate, 4),
            "mean_resolution_s": round(self.mean_cost_s, 2),
            "sd_resolution_s": round(math.sqrt(self.cost_var), 2),
        }


def arm_figures(sample: VersionSample) -> ArmFigures:
    """One arm's figures from its sample (``times``: each execution's resolution time)."""
    times = sample.times
    n = len(times)
    mean = sum(times) / n if n else 0.0
    var = sum((t - mean) ** 2 for t in times) / (n - 1) if n > 1 else 0.0
    return ArmFigures(sample.version, sample.executions, sample.successes, mean, var)


@dataclass(frozen=True)
class TrialComparison:
    base: ArmFigures
    trial: ArmFigures
    look: int  # looks taken so far, this one included
    slower_z: float  # > 0: the trial costs more than the base
    success_drop_z: float  # > 0: the trial resolves fewer
    decision: str | None  # "promote", "drop", or None: keep running
    reason: str
    rollback_rule: Verdict | None = None  # the rollback rule's tests of the trial

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.as_dict(),
            "trial": self.trial.as_dict(),
            "rollback_rule": None if self.rollback_rule is None else self.rollback_rule.as_dict(),
            "look": self.look,
            "looks": LOOKS,
            "slower_z": round(self.slower_z, 3),
            "success_drop_z": round(self.success_drop_z, 3),
            "critical_z": Z_CRITICAL,
            "promotion_z": Z_LOOK,
            "decision": self.decision,
            "reason": self.reason,
        }


def _z(difference: float, se: float) -> float:
    if se == 0:
        return 0.0 if difference == 0 else math.copysign(Z_CAP, difference)
    return max(-Z_CAP, min(Z_CAP, difference / se))


def slower_z(base: ArmFigures, trial: ArmFigures) -> float:
    """Welch's z for the trial's mean cost above the base's."""
    se = math.sqrt(base.cost_var / base.executions + trial.cost_var / trial.executions)
    return _z(trial.mean_cost_s - base.mean_cost_s, se)


def success_drop_z(base: ArmFigures, trial: ArmFigures) -> float:
    """The rollback rule's z with no margin: the trial's success rate below the base's."""
    p_base = (base.resolutions + 0.5) / (base.executions + 1)
    p_trial = (trial.resolutions + 0.5) / (trial.executions + 1)
    se = math.sqrt(
        p_base * (1 - p_base) / (base.executions + 1)
        + p_trial * (1 - p_trial) / (trial.executions + 1)
    )
    return _z(p_base - p_trial, se)


def faster_rank_z(base: tuple[float, ...], trial: tuple[float, ...]) -> float:
    """The Mann-Whitney z that the trial's times are stochastically lower than the base's
    (normal approximation with the tie correction; average ranks for ties)."""
    n1, n2 = len(trial), len(base)
    if n1 == 0 or n2 == 0:
        return 0.0
    pooled = sorted([(t, 0) for t in trial] + [(t, 1) for t in base])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        rank = (start + end) / 2 + 1
        for index in range(start, end + 1):
            ranks[index] = rank
        size = end - start + 1
        ties += size**3 - size
        start = end + 1
    trial_ranks = sum(r for r, (_, arm) in zip(ranks, pooled, strict=True) if arm == 0)
    u = trial_ranks - n1 * (n1 + 1) / 2  # small when the trial's times are low
    total = n1 + n2
    variance = n1 * n2 / 12 * ((total + 1) - ties / (total * (total - 1)))
    return _z(n1 * n2 / 2 - u, math.sqrt(variance) if variance > 0 else 0.0)


def looks_reached(executions: int, min_executions: int) -> int:
    """How many look points (``min_executions`` x 1, 2, 4, …) ``executions`` has passed."""
    look = 0
    while look < LOOKS and executions >= min_executions * 2**look:
        look += 1
    return look


def decide_trial(
    base_sample: VersionSample, trial_sample: VersionSample, min_executions: int, looked: int
) -> TrialComparison:
    """The decision after an execution of either arm; ``looked``: looks already taken."""
    base, trial = arm_figures(base_sample), arm_figures(trial_sample)
    look = looks_reached(trial.executions, min_executions)
    if base.executions < min_executions or trial.executions < min_executions:
        waiting = f"waiting for {min_executions} executions of each arm"
        return TrialComparison(base, trial, looked, 0.0, 0.0, None, waiting)
    slower, dropped = slower_z(base, trial), success_drop_z(base, trial)
    rule = compare_versions(base_sample, trial_sample, min_executions)

    def verdict(decision: str | None, reason: str) -> TrialComparison:
        return TrialComparison(
            base, trial, max(look, looked), slower, dropped, decision, reason, rule
        )

    figures = (
        f"{trial.mean_cost_s:.0f} s and {trial.success_rate:.0%} over {trial.executions}"
        f" against {base.mean_cost_s:.0f} s and {base.success_rate:.0%} over {base.executions}"
    )
    if rule is not None and rule.rollback:
        return verdict("drop", f"worse: {rule.describe()}")
    if slower > Z_CRITICAL:
        return verdict("drop", f"slower: {figures} (z = {slower:.2f} > {Z_CRITICAL})")
    if look <= looked:
        return verdict(None, f"no look due: {figures}")
    if -slower > Z_LOOK and dropped <= Z_CRITICAL:
        return verdict("promote", f"faster: {figures} (z = {-slower:.2f} > {Z_LOOK})")
    ranked = faster_rank_z(base_sample.times, trial_sample.times)
    if ranked > Z_LOOK and slower < 0 and dropped <= Z_CRITICAL:
        return verdict(
            "promote",
            f"faster in most incidents: {figures} (rank z = {ranked:.2f} > {Z_LOOK}, mean lower)",
        )
    if look >= LOOKS:
        return verdict(
            "drop", f"not shown better after {trial.executions} trial executions: {figures}"
        )
    return verdict(None, f"look {look} of {LOOKS}: not yet shown better: {figures}")
