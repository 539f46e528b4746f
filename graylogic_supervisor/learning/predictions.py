"""Checking the replay's predictions against what the new versions really did.

Once a version made by an approved recommendation has ``min_executions`` counted
executions, its realised success rate and mean resolution time (technician's
time included, ``resolution.py``) are compared with those of the last version
that really ran before it (``rollback.baseline_of``). The prediction is the
recommendation's ``expected_impact`` change; where approvals in a row made
versions that never ran, the realised change is that of all of them together,
so the prediction is the sum of theirs (``together_with`` names them). The
check is stored on the recommendation and refreshed while the version keeps
running; ``bias`` is what each analysis reports: the mean of predicted minus
realised change over the checked recommendations (negative: the replay promised
more time saved than the site saw).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.store.learning import StoredRecommendation


@dataclass(frozen=True)
class Realised:
    """One version's figures: its success rate and mean resolution time."""

    version: str
    executions: int
    success_rate: float
    mean_resolution_s: float | None


def _change(rec: StoredRecommendation, key: str) -> float:
    return float(rec.expected_impact[key]["change"])


def check(
    recs: Sequence[StoredRecommendation],
    baseline: Realised,
    realised: Realised,
    checked_at: str,
) -> dict[str, Any]:
    """The check of ``recs[-1]`` (``recs``: those between the baseline and its version)."""
    predicted_time = sum(_change(rec, "resolution_time_s") for rec in recs)
    predicted_success = sum(_change(rec, "success_rate") for rec in recs)
    realised_time = (
        None
        if realised.mean_resolution_s is None or baseline.mean_resolution_s is None
        else realised.mean_resolution_s - baseline.mean_resolution_s
    )
    realised_success = realised.success_rate - baseline.success_rate
    return {
        "checked_at": checked_at,
        "version": realised.version,
        "executions": realised.executions,
        "baseline_version": baseline.version,
        "baseline_executions": baseline.executions,
        "together_with": [rec.id for rec in recs[:-1]],
        "success_rate": {
            "baseline": round(baseline.success_rate, 4),
            "realised": round(realised.success_rate, 4),
            "predicted_change": round(predicted_success, 4),
            "realised_change": round(realised_success, 4),
        },
        "resolution_time_s": {
            "baseline": _round(baseline.mean_resolution_s),
            "realised": _round(realised.mean_resolution_s),
            "predicted_change": round(predicted_time, 2),
            "realised_change": _round(realised_time),
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def bias(checks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean predicted minus realised change, over the checks that have both."""
    times = [
        c["resolution_time_s"]["predicted_change"] - c["resolution_time_s"]["realised_change"]
        for c in checks
        if c["resolution_time_s"]["realised_change"] is not None
    ]
    rates = [
        c["success_rate"]["predicted_change"] - c["success_rate"]["realised_change"] for c in checks
    ]
    return {
        "checked_recommendations": len(checks),
        "resolution_time_s": round(statistics.fmean(times), 2) if times else None,
        "success_rate": round(statistics.fmean(rates), 4) if rates else None,
        "meaning": "mean of predicted minus realised change; negative time: the replay"
        " promised more time saved than the versions delivered",
    }
