"""When a new version does worse than the one it replaced: a stated statistical test.

H0: the new version's success rate is at most 10 points below the previous
one's (p_prev - p_new <= margin). Rolled back when a one-sided two-proportion
z-test rejects H0 at alpha = 0.05 (z > 1.645), with at least ``min_executions``
of each version. Rates are taken with half a success and half a failure added
(the Agresti-Caffo adjustment) so that 0 % and 100 % still have a variance.
One bad run among ten cannot trigger it; a consistent drop can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MARGIN = 0.10
Z_CRITICAL = 1.645  # one-sided, alpha = 0.05


@dataclass(frozen=True)
class RollbackTest:
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
