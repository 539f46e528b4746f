"""Judging versions after they ran: the rollback verdict and its investigation report,
the memory of rejected changes, and the check of the replay's predictions.

``LearningService`` decides and audits; this reads what the decisions need. Both
tests look when the new version's count reaches ``min_executions`` times a power
of two (10, 20, 40, … by default): a handful of looks, not one per execution,
keeps their false alarms and the time test's reads down. The success test once
looked after every execution, as the spec's rule can be read; in a simulated
site that rolled a good change back twice (2 of its first 10 runs resolved
against 56 %), and a rollback is remembered as a rejection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.learning.metrics import LearningMetrics
from graylogic_supervisor.learning.predictions import Realised, bias, check
from graylogic_supervisor.learning.resolution import recent_times
from graylogic_supervisor.learning.rollback import (
    TIME_SAMPLE,
    Baseline,
    Verdict,
    VersionSample,
    ancestors,
    baseline_of,
    compare_versions,
)
from graylogic_supervisor.store.learning import LearningRepository, StoredRecommendation
from graylogic_supervisor.store.versions import PlaybookVersions

UNRESOLVED_SHOWN = 20


class Verdicts:
    def __init__(
        self,
        versions: PlaybookVersions,
        metrics: LearningMetrics,
        store: LearningRepository,
        *,
        min_executions: int,
        manual_s: float,
    ) -> None:
        self._versions = versions
        self._metrics = metrics
        self._store = store
        self._min = min_executions
        self._manual_s = manual_s
        self._baselines: dict[tuple[str, str], Baseline] = {}
        self._looked: dict[tuple[str, str], int] = {}  # the time test's last look, by level

    # --- rollback --------------------------------------------------------------------------

    async def baseline(self, playbook_id: str, version: str) -> Baseline | None:
        """The last version before ``version`` that really ran (ancestors do not run, so
        once found it stays)."""
        key = (playbook_id, version)
        if key in self._baselines:
            return self._baselines[key]
        parents = await self._parents(playbook_id)
        chain = ancestors(version, parents)
        counts = await self._metrics.counts(playbook_id, chain)
        found = baseline_of(version, parents, {v: n for v, (_, n) in counts.items()}, self._min)
        if found is not None:
            self._baselines[key] = found
        return found

    async def verdict(
        self, playbook_id: str, version: str, baseline: Baseline, every_execution: bool = False
    ) -> Verdict | None:
        """Both tests of ``version`` against ``baseline``; the time test only at a look
        (``every_execution``: at every call, as for a report)."""
        counts = await self._metrics.counts(playbook_id, (version, baseline.version))
        if version not in counts or baseline.version not in counts:
            return None
        (new_ok, new_n), (base_ok, base_n) = counts[version], counts[baseline.version]
        if new_n < self._min:
            return None
        level = int(math.log2(new_n / self._min))
        look = every_execution or level > self._looked.get((playbook_id, version), -1)
        if not look:
            return None
        self._looked[(playbook_id, version)] = level
        new_times = await self._times(playbook_id, version)
        base_times = await self._times(playbook_id, baseline.version)
        return compare_versions(
            VersionSample(baseline.version, base_ok, base_n, base_times),
            VersionSample(version, new_ok, new_n, new_times),
            self._min,
        )

    async def investigation(
        self,
        playbook_id: str,
        failed: str,
        restored: str,
        verdict: Verdict | None,
        *,
        baseline: Baseline | None,
    ) -> dict[str, Any]:
        """What a person reads after a rollback: the versions, the baseline and why, both
        tests, the changes and who approved them, both versions' step metrics, and the
        failed version's unresolved executions."""
        rows = {row["version"]: row for row in await self._versions.versions_of(playbook_id)}
        between = self._between(failed, restored, {v: r["parent_version"] for v, r in rows.items()})
        versions = [
            {
                "version": v,
                "created_at": rows[v]["created_at"],
                "created_by": rows[v]["created_by"],
                "approved_by": rows[v]["approved_by"],
                "reason": rows[v]["reason"],
                "recommendation_id": rows[v]["recommendation_id"],
                "executions": counts[1] if (counts := await self._count(playbook_id, v)) else 0,
            }
            for v in between
            if v in rows
        ]
        changes = [
            {**change, "version": v}
            for v in reversed(between)
            if v in rows
            for change in (rows[v]["changes"] or {}).get("changes", [])
        ]
        info = rows.get(failed, {})
        return {
            "playbook_id": playbook_id,
            "failed_version": failed,
            "restored_version": restored,
            "baseline": None if baseline is None else baseline.as_dict(failed, self._min),
            "statistics": None if verdict is None else verdict.as_dict(),
            "versions": versions,
            "changes": changes,
            "recommendation_id": info.get("recommendation_id"),
            "approved_by": info.get("approved_by"),
            "steps": {
                v: [s.as_dict() for s in await self._metrics.steps(playbook_id, v)]
                for v in (restored, failed)
            },
            "unresolved_executions": await self._store.unresolved_executions(
                playbook_id, failed, UNRESOLVED_SHOWN
            ),
        }

    # --- rejections ------------------------------------------------------------------------

    async def discarded(
        self, playbook_id: str, failed: str, restored: str
    ) -> list[StoredRecommendation]:
        """The recommendations whose versions a rollback discards (those from ``failed``
        back to, not including, ``restored``): their changes are remembered as rejected
        in the rollback's transaction."""
        parents = await self._parents(playbook_id)
        discarded = []
        for version in self._between(failed, restored, parents):
            rec = await self._store.by_version(playbook_id, version)
            if rec is not None:
                discarded.append(rec)
        return discarded

    # --- predictions -----------------------------------------------------------------------

    async def check_predictions(self, now: datetime) -> list[str]:
        """Check (again) each approved recommendation whose version ran enough since its
        last check; returns those checked."""
        checked = []
        for rec in await self._store.approved_with_versions():
            assert rec.new_version is not None
            counts = await self._count(rec.playbook_id, rec.new_version)
            if counts is None or counts[1] < self._min:
                continue
            previous = rec.prediction_check
            if previous is not None and previous["executions"] == counts[1]:
                continue
            baseline = await self.baseline(rec.playbook_id, rec.new_version)
            if baseline is None:
                continue
            recs = await self._recommendations_between(
                rec.playbook_id, rec.new_version, baseline.version
            )
            result = check(
                recs,
                await self._realised(rec.playbook_id, baseline.version),
                await self._realised(rec.playbook_id, rec.new_version),
                isoformat(now),
            )
            await self._store.set_prediction_check(rec.id, result)
            checked.append(rec.id)
        return checked

    async def bias(self) -> dict[str, Any]:
        return bias(await self._store.prediction_checks())

    # --- reading ---------------------------------------------------------------------------

    async def _parents(self, playbook_id: str) -> dict[str, str | None]:
        return {
            row["version"]: row["parent_version"]
            for row in await self._versions.versions_of(playbook_id)
        }

    @staticmethod
    def _between(newer: str, older: str, parents: dict[str, str | None]) -> list[str]:
        """``newer`` and its ancestors down to, not including, ``older``; just ``newer``
        when ``older`` is not one of its ancestors."""
        chain = [newer, *ancestors(newer, parents)]
        return chain[: chain.index(older)] if older in chain else [newer]

    async def _count(self, playbook_id: str, version: str) -> tuple[int, int] | None:
        return (await self._metrics.counts(playbook_id, (version,))).get(version)

    async def _times(self, playbook_id: str, version: str) -> tuple[float, ...]:
        return await recent_times(
            self._store, playbook_id, version, limit=TIME_SAMPLE, manual_s=self._manual_s
        )

    async def _realised(self, playbook_id: str, version: str) -> Realised:
        ok, n = await self._count(playbook_id, version) or (0, 0)
        times = await self._times(playbook_id, version)
        return Realised(
            version, n, ok / n if n else 0.0, sum(times) / len(times) if times else None
        )

    async def _recommendations_between(
        self, playbook_id: str, version: str, baseline: str
    ) -> Sequence[StoredRecommendation]:
        """The recommendations that made the versions after ``baseline`` up to
        ``version``, oldest first."""
        parents = await self._parents(playbook_id)
        found = []
        for v in reversed(self._between(version, baseline, parents)):
            rec = await self._store.by_version(playbook_id, v)
            if rec is not None:
                found.append(rec)
        return found
