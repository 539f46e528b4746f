"""When a new version does worse than the last version that really ran: two stated tests.

**The baseline** is the closest ancestor (``parent_version``, then its parent, …)
with at least ``min_executions`` counted executions. Approvals in a row make
versions that never ran; comparing with one of those compares with nothing
(issue 14 kept a 3x slower version because its parent had never run).

**Success rate** (the spec's rule). H0: the new version's success rate is at
most 10 points below the baseline's (p_base - p_new <= margin). Rolled back
when a one-sided two-proportion z-test rejects H0 at alpha = 0.05
(z > 1.645), with at least ``min_executions`` of each. Rates are taken with half
a success and half a failure added (the Agresti-Caffo adjustment) so that 0 %
and 100 % still have a variance. One bad run among ten cannot trigger it; a
consistent drop can.

**Resolution time.** Each execution's resolution time is its duration when it
resolved the failure (and the component was healthy after), otherwise its
duration plus the technician's time (``resolution.py``). H0: the new
version's mean is at most 1.25 times the baseline's (mu_new <= 1.25 mu_base).
Welch's t on the contrast mean_new - 1.25 mean_base, with the
Welch-Satterthwaite degrees of freedom, one-sided at alpha = 0.05, at least
``min_executions`` of each, over the ``TIME_SAMPLE`` most recent executions of
each version. The means are arithmetic, not geometric (log times): a change
that adds 30 s to every execution and spares a technician's 30 minutes in one
in five raises the geometric mean while it divides the mean time to repair by
four, and the mean is what a site lives with.

**Power** (``bench/rollback_power.py --trials 2000``: simulated comparisons
through these functions, alpha 0.05, n executions of each version; the share
that roll back). A 2x slowdown made of slower steps (log-normal times, sigma
0.8, success unchanged): the time test 0.29 at n = 10, 0.74 at 40, 0.94 at 80
(80 % from about 50 each); the success test never (success did not move). A 2x
slowdown made of escalations (playbook 60 s, technician 1,800 s; fixed 90 % ->
76 %, 248 s -> 500 s): time test 0.52 at 80, 0.83 at 200 (about 190 each for
80 %: two clusters make a large variance); success test 0.28 at 200 (a
14-point drop against a 10-point margin). Fixed 70 % -> 40 % (1.9x): both tests
about 0.8 at 80. A version no worse: the time test 2-3 % false alarms at 10 to
40, 1 % beyond; the success test none.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graylogic_supervisor.learning.tdist import t_quantile

MARGIN = 0.10
Z_CRITICAL = 1.645  # one-sided, alpha = 0.05
ALPHA = 0.05
TIME_RATIO = 1.25  # H0 of the time test: at most this many times the baseline's mean
TIME_SAMPLE = 200  # most recent executions of each version the time test reads
_MIN_SE_S = 1e-6  # identical times on both sides: the difference alone decides


@dataclass(frozen=True)
class RollbackTest:
    """The success-rate test."""

    previous_rate: float
    new_rate: float
    previous_n: int
    new_n: int
    z: float
    rollback: bool

    def describe(self) -> str:
        return (
            f"success rate {self.new_rate:.1%} over {self.new_n} executions against"
            f" {self.previous_rate:.1%} over {self.previous_n}: z = {self.z:.2f}"
            f" {'>' if self.rollback else '<='} {Z_CRITICAL} for a drop of more than"
            f" {MARGIN:.0%} points"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "test": "one-sided two-proportion z-test, H0: drop <= 10 points, alpha 0.05",
            "previous_success_rate": round(self.previous_rate, 4),
            "new_success_rate": round(self.new_rate, 4),
            "previous_executions": self.previous_n,
            "new_executions": self.new_n,
            "z": round(self.z, 3),
            "critical_z": Z_CRITICAL,
            "rollback": self.rollback,
        }


def rollback_test(
    previous_successes: int,
    previous_n: int,
    new_successes: int,
    new_n: int,
    *,
    min_executions: int = 10,
) -> RollbackTest | None:
    """None until both versions have ``min_executions``."""
    if previous_n < min_executions or new_n < min_executions:
        return None
    p_prev = (previous_successes + 0.5) / (previous_n + 1)
    p_new = (new_successes + 0.5) / (new_n + 1)
    se = math.sqrt(p_prev * (1 - p_prev) / (previous_n + 1) + p_new * (1 - p_new) / (new_n + 1))
    z = ((p_prev - p_new) - MARGIN) / se
    return RollbackTest(
        previous_successes / previous_n,
        new_successes / new_n,
        previous_n,
        new_n,
        z,
        z > Z_CRITICAL,
    )


@dataclass(frozen=True)
class TimeTest:
    """The resolution-time test."""

    previous_mean_s: float
    new_mean_s: float
    previous_n: int
    new_n: int
    t: float
    df: float
    critical_t: float
    rollback: bool

    @property
    def ratio(self) -> float | None:
        return self.new_mean_s / self.previous_mean_s if self.previous_mean_s > 0 else None

    def describe(self) -> str:
        ratio = f" ({self.ratio:.2f}x)" if self.ratio is not None else ""
        return (
            f"mean resolution time {self.new_mean_s:.1f} s over {self.new_n} executions against"
            f" {self.previous_mean_s:.1f} s over {self.previous_n}{ratio}: t = {self.t:.2f}"
            f" {'>' if self.rollback else '<='} {self.critical_t:.3f} (df {self.df:.1f}) for more"
            f" than {TIME_RATIO:g} times as slow"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "test": (
                f"one-sided Welch t-test, H0: mean time <= {TIME_RATIO:g} x the baseline's,"
                f" alpha {ALPHA:g}"
            ),
            "previous_mean_s": round(self.previous_mean_s, 2),
            "new_mean_s": round(self.new_mean_s, 2),
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "previous_executions": self.previous_n,
            "new_executions": self.new_n,
            "t": round(self.t, 3),
            "df": round(self.df, 1),
            "critical_t": round(self.critical_t, 3),
            "rollback": self.rollback,
        }


def time_test(
    previous_times: Sequence[float], new_times: Sequence[float], min_executions: int = 10
) -> TimeTest | None:
    """None until both versions have ``min_executions`` times (and at least two)."""
    n_prev, n_new = len(previous_times), len(new_times)
    if min(n_prev, n_new) < max(min_executions, 2):
        return None
    m_prev, m_new = statistics.fmean(previous_times), statistics.fmean(new_times)
    a = statistics.variance(new_times) / n_new
    b = TIME_RATIO**2 * statistics.variance(previous_times) / n_prev
    se = max(math.sqrt(a + b), _MIN_SE_S)
    t = (m_new - TIME_RATIO * m_prev) / se
    if a + b > 0:
        df = (a + b) ** 2 / (a * a / (n_new - 1) + b * b / (n_prev - 1))
    else:
        df = float(n_new + n_prev - 2)
    critical = t_quantile(1 - ALPHA, df)
    return TimeTest(m_prev, m_new, n_prev, n_new, t, df, critical, t > critical)


@dataclass(frozen=True)
class VersionSample:
    """What the tests read of one version: its success counts and recent times."""

    version: str
    successes: int
    executions: int
    times: tuple[float, ...]


@dataclass(frozen=True)
class Verdict:
    """Both tests of ``version`` against ``baseline``; either may be None (too few)."""

    baseline: str
    version: str
    success: RollbackTest | None
    time: TimeTest | None

    @property
    def rollback(self) -> bool:
        return any(test is not None and test.rollback for test in (self.success, self.time))

    def describe(self) -> str:
        tests = [t for t in (self.success, self.time) if t is not None]
        deciding = [t for t in tests if t.rollback] or tests
        return "; ".join(t.describe() for t in deciding)

    def as_dict(self) -> dict[str, object]:
        return {
            "baseline_version": self.baseline,
            "version": self.version,
            "rollback": self.rollback,
            "rolled_back_on": [
                name
                for name, test in (("success_rate", self.success), ("resolution_time", self.time))
                if test is not None and test.rollback
            ],
            "success_rate": None if self.success is None else self.success.as_dict(),
            "resolution_time": None if self.time is None else self.time.as_dict(),
        }


def compare_versions(
    baseline: VersionSample, new: VersionSample, min_executions: int = 10
) -> Verdict | None:
    """Both tests of ``new`` against ``baseline``; None while neither can be made."""
    success = rollback_test(
        baseline.successes,
        baseline.executions,
        new.successes,
        new.executions,
        min_executions=min_executions,
    )
    time = time_test(baseline.times, new.times, min_executions)
    if success is None and time is None:
        return None
    return Verdict(baseline.version, new.version, success, time)


@dataclass(frozen=True)
class Baseline:
    """The version a new one is judged against, and why that one."""

    version: str
    executions: int
    skipped: tuple[tuple[str, int], ...]  # nearer ancestors with too few executions

    def why(self, version: str, min_executions: int) -> str:
        text = (
            f"{self.version} is the closest ancestor of {version} with at least"
            f" {min_executions} counted executions ({self.executions})"
        )
        if self.skipped:
            skipped = ", ".join(f"{v} ({n})" for v, n in self.skipped)
            text += f"; skipped, too few executions: {skipped}"
        return text

    def as_dict(self, version: str, min_executions: int) -> dict[str, object]:
        return {
            "version": self.version,
            "executions": self.executions,
            "skipped": [{"version": v, "executions": n} for v, n in self.skipped],
            "why": self.why(version, min_executions),
        }


def ancestors(version: str, parents: Mapping[str, str | None]) -> list[str]:
    """``version``'s parent, grandparent, … (a cycle or a missing version ends it)."""
    chain: list[str] = []
    current = parents.get(version)
    while current is not None and current not in chain and current != version:
        chain.append(current)
        current = parents.get(current)
    return chain


def baseline_of(
    version: str,
    parents: Mapping[str, str | None],
    executions: Mapping[str, int],
    min_executions: int,
) -> Baseline | None:
    """The closest ancestor that really ran; None when none did."""
    skipped: list[tuple[str, int]] = []
    for ancestor in ancestors(version, parents):
        count = executions.get(ancestor, 0)
        if count >= min_executions:
            return Baseline(ancestor, count, tuple(skipped))
        skipped.append((ancestor, count))
    return None
