"""Per-version, per-step and per-path metrics, updated once per finished execution.

Each execution is counted in the transaction that also sets its ``learned``
flag, so a crash neither loses nor double-counts it, and nothing ever rescans
history: every figure is a sum, and durations are counts per log bucket
(``histogram.py``) from which the p95 is read. ``counted_rows`` turns a trace
into rows that are added with upserts, so a batch of executions (a catch-up
after a stop) costs one statement per table, not one per execution.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.domain.states import ExecutionStatus, StepOutcome
from graylogic_supervisor.learning import histogram
from graylogic_supervisor.learning.trace import Trace, trace_of
from graylogic_supervisor.store.learning_metrics import (
    MetricsTables,
    StepTotals,
    TableRows,
    VersionTotals,
)
from graylogic_supervisor.store.learning_metrics import StepPair as StepPair  # re-exported
from graylogic_supervisor.store.records import ExecutionRecord

# often_skipped_after is reported when a step did not run after that outcome this often,
# over at least this many executions with that outcome.
SKIPPED_AFTER_SHARE = 0.5
SKIPPED_AFTER_MIN = 5


@dataclass(frozen=True)
class VersionMetrics:
    playbook_id: str
    version: str
    executions: int
    resolutions: int
    escalations: int
    failures: int
    interruptions: int
    mean_resolution_s: float | None
    p95_resolution_s: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.executions == 0 else self.resolutions / self.executions

    def as_dict(self) -> dict[str, object]:
        return {
            "playbook_id": self.playbook_id,
            "version": self.version,
            "total_executions": self.executions,
            "successful_resolutions": self.resolutions,
            "escalations": self.escalations,
            "timeouts": self.failures,
            "interrupted": self.interruptions,
            "success_rate": _round(self.success_rate),
            "avg_resolution_time_seconds": _round(self.mean_resolution_s),
            "p95_resolution_time_seconds": _round(self.p95_resolution_s),
        }


@dataclass(frozen=True)
class StepMetrics:
    step_id: str
    name: str
    action: str
    executions: int
    successes: int
    skips: int
    attempts: int
    timeouts: int
    fixes: int
    mean_duration_s: float | None
    p95_duration_s: float | None
    p99_success_duration_s: float | None
    often_skipped_after: str | None

    @property
    def success_rate(self) -> float | None:
        return None if self.executions == 0 else self.successes / self.executions

    def as_dict(self) -> dict[str, object]:
        return {
            "step": self.step_id,
            "name": self.name,
            "action": self.action,
            "executions": self.executions,
            "successes": self.successes,
            "success_rate": _round(self.success_rate),
            "skipped": self.skips,
            "attempts": self.attempts,
            "timeouts": self.timeouts,
            "fixed_it": self.fixes,
            "avg_duration_seconds": _round(self.mean_duration_s),
            "p95_duration_seconds": _round(self.p95_duration_s),
            "often_skipped_after": self.often_skipped_after,
        }


@dataclass(frozen=True)
class PathMetrics:
    path: tuple[str, ...]
    executions: int
    resolutions: int
    frequency: float

    @property
    def success_rate(self) -> float:
        return self.resolutions / self.executions if self.executions else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "path": list(self.path),
            "executions": self.executions,
            "frequency": round(self.frequency, 4),
            "success_rate": round(self.success_rate, 4),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class LearningMetrics:
    """The metrics of each version, step and path: counted from the store's records and
    read back from its tables (``store/learning_metrics.py``); the figures are computed here."""

    def __init__(self, tables: MetricsTables) -> None:
        self._tables = tables

    async def apply_pending(self, limit: int = 2000) -> list[Trace]:
        """Count finished executions not counted yet, oldest first, ``limit`` at a time."""
        return await self._apply(await self._tables.uncounted_executions(limit))

    async def apply(self, execution_id: str) -> Trace | None:
        """Count one finished execution; None if it is running or already counted."""
        applied = await self._apply(await self._tables.uncounted_execution(execution_id))
        return applied[0] if applied else None

    async def _apply(self, executions: list[ExecutionRecord]) -> list[Trace]:
        if not executions:
            return []
        ids = [execution.id for execution in executions]
        steps = await self._tables.steps_of(ids)
        traces = [trace_of(execution, steps[execution.id]) for execution in executions]
        counted: list[Trace] = []

        def rows_for(fresh: set[str]) -> TableRows:
            counted.extend(t for t in traces if t.execution_id in fresh)  # others: counted first
            rows = CountedRows()
            for trace in counted:
                rows.add(trace)
            return rows.tables()

        await self._tables.count(ids, rows_for)
        return counted

    async def version(self, playbook_id: str, version: str) -> VersionMetrics | None:
        totals = await self._tables.version(playbook_id, version)
        if totals is None:
            return None
        hist = await self._tables.histogram(playbook_id, version, "", "resolution")
        return version_metrics(totals, hist)

    async def counts(self, playbook_id: str, versions: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(resolutions, executions) of each version that has run: the rollback rule's
        figures, in one read."""
        return await self._tables.version_counts(playbook_id, versions)

    async def versions(self, playbook_id: str) -> list[VersionMetrics]:
        return [
            version_metrics(
                totals,
                await self._tables.histogram(playbook_id, totals.version, "", "resolution"),
            )
            for totals in await self._tables.versions(playbook_id)
        ]

    async def steps(self, playbook_id: str, version: str) -> list[StepMetrics]:
        totals = await self._tables.steps(playbook_id, version)
        hists = await self._tables.step_histograms(playbook_id, version)
        pairs = await self.pairs(playbook_id, version)
        counts: dict[tuple[str, str], int] = {
            (step.step_id, outcome): count
            for step in totals
            for outcome, count in (
                (StepOutcome.SUCCESS, step.successes),
                (StepOutcome.FAILURE, step.executions - step.successes),
            )
        }
        return [
            step_metrics(
                step,
                hists.get((step.step_id, "attempt"), {}),
                hists.get((step.step_id, "success"), {}),
                _often_skipped_after(step.step_id, counts, pairs),
            )
            for step in totals
        ]

    async def pairs(self, playbook_id: str, version: str) -> list[StepPair]:
        return await self._tables.pairs(playbook_id, version)

    async def paths(self, playbook_id: str, version: str, limit: int = 10) -> list[PathMetrics]:
        return [
            PathMetrics(path.path, path.executions, path.resolutions, path.executions / path.total)
            for path in await self._tables.paths(playbook_id, version, limit)
        ]


def _often_skipped_after(
    step_id: str, counts: dict[tuple[str, str], int], pairs: Sequence[StepPair]
) -> str | None:
    """The earlier outcome after which this step most often did not run, if that is usual."""
    runs_after = {
        (p.earlier_step, p.earlier_outcome): p.runs for p in pairs if p.step_id == step_id
    }
    best: tuple[float, str] | None = None
    for (earlier, outcome), count in counts.items():
        if earlier == step_id or count < SKIPPED_AFTER_MIN:
            continue
        share = 1 - runs_after.get((earlier, outcome), 0) / count
        if share >= SKIPPED_AFTER_SHARE and (best is None or share > best[0]):
            best = (share, f"{earlier}_{outcome}")
    return None if best is None else best[1]


def version_metrics(totals: VersionTotals, resolution_hist: dict[str, int]) -> VersionMetrics:
    """A version's figures from its sums and its resolution-time histogram."""
    resolutions = totals.resolutions
    return VersionMetrics(
        playbook_id=totals.playbook_id,
        version=totals.version,
        executions=totals.executions,
        resolutions=resolutions,
        escalations=totals.escalations,
        failures=totals.failures,
        interruptions=totals.interruptions,
        mean_resolution_s=float(totals.resolution_time_sum) / resolutions if resolutions else None,
        p95_resolution_s=histogram.percentile(resolution_hist, 95),
    )


def step_metrics(
    totals: StepTotals,
    attempt_hist: dict[str, int],
    success_hist: dict[str, int],
    often_skipped_after: str | None,
) -> StepMetrics:
    """A step's figures from its sums and its duration histograms."""
    attempts = totals.attempts
    return StepMetrics(
        step_id=totals.step_id,
        name=totals.name,
        action=totals.action,
        executions=totals.executions,
        successes=totals.successes,
        skips=totals.skips,
        attempts=attempts,
        timeouts=totals.timeouts,
        fixes=totals.fixes,
        mean_duration_s=float(totals.duration_sum) / attempts if attempts else None,
        p95_duration_s=histogram.percentile(attempt_hist, 95),
        p99_success_duration_s=histogram.percentile(success_hist, 99),
        often_skipped_after=often_skipped_after,
    )


def _add(table: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], values: list[Any]) -> None:
    """Sum ``values`` into the row at ``key``: a batch writes each key once."""
    row = table.get(key)
    if row is None:
        table[key] = values
    else:
        for index, value in enumerate(values):
            row[index] += value


class CountedRows:
    """What a batch of traces adds to each metrics table, summed by key."""

    def __init__(self) -> None:
        self.versions: dict[tuple[Any, ...], list[Any]] = {}
        self.span: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}
        self.steps: dict[tuple[Any, ...], list[Any]] = {}
        self.pairs: dict[tuple[Any, ...], list[Any]] = {}
        self.paths: dict[tuple[Any, ...], list[Any]] = {}
        self.histograms: dict[tuple[Any, ...], list[Any]] = {}

    def tables(self) -> TableRows:
        """The rows to add, by table (see store/learning_metrics.py)."""
        versions = [(*key, *values, *self.span[key]) for key, values in self.versions.items()]
        return {
            "versions": versions,
            "steps": [(*k, *v) for k, v in self.steps.items()],
            "pairs": [(*k, *v) for k, v in self.pairs.items()],
            "paths": [(*k, *v) for k, v in self.paths.items()],
            "histograms": [(*k, *v) for k, v in self.histograms.items()],
        }

    def add(self, trace: Trace) -> None:
        key = (trace.playbook_id, trace.version)
        status = trace.status
        _add(
            self.versions,
            key,
            [
                1,
                int(trace.succeeded),
                int(status == ExecutionStatus.ESCALATED),
                int(status == ExecutionStatus.FAILED),
                int(status == ExecutionStatus.INTERRUPTED),
                trace.duration_s if trace.succeeded else 0.0,
            ],
        )
        first, last = self.span.get(key, (trace.completed_at, trace.completed_at))
        stamp = trace.completed_at
        if stamp is not None:
            first = min(first or stamp, stamp)
            last = max(last or stamp, stamp)
        self.span[key] = (first, last)
        if trace.succeeded:
            bucket = histogram.bucket_of(trace.duration_s)
            _add(self.histograms, (*key, "", "resolution", bucket), [1])
        _add(self.paths, (*key, json.dumps(trace.path)), [1, int(trace.succeeded)])
        self._add_steps(trace)
        self._add_pairs(trace)

    def _add_steps(self, trace: Trace) -> None:
        key = (trace.playbook_id, trace.version)
        finals = trace.final_outcomes()
        seen: set[str] = set()
        for visit in trace.visits:
            first_visit = visit.step_id not in seen
            seen.add(visit.step_id)
            ran = visit.ran
            if ran:
                for duration, outcome in zip(visit.durations, visit.outcomes, strict=True):
                    bucket = histogram.bucket_of(duration)
                    _add(self.histograms, (*key, visit.step_id, "attempt", bucket), [1])
                    if outcome == StepOutcome.SUCCESS:
                        _add(self.histograms, (*key, visit.step_id, "success", bucket), [1])
            final = finals[visit.step_id]
            # Executions count once per step, at its first visit, with its final outcome.
            step_key = (*key, visit.step_id, visit.name, visit.action)
            _add(
                self.steps,
                step_key,
                [
                    int(first_visit and final != StepOutcome.SKIPPED),
                    int(first_visit and final == StepOutcome.SUCCESS),
                    int(first_visit and final == StepOutcome.SKIPPED),
                    len(visit.outcomes) if ran else 0,
                    sum(1 for o in visit.outcomes if o == StepOutcome.TIMEOUT),
                    int(first_visit and trace.succeeded and trace.resolved_by == visit.step_id),
                    sum(visit.durations) if ran else 0.0,
                ],
            )

    def _add_pairs(self, trace: Trace) -> None:
        """For each step that ran, how each later step did after it (final outcomes)."""
        finals = trace.final_outcomes()
        first_seen: dict[str, int] = {}
        for index, visit in enumerate(trace.visits):
            first_seen.setdefault(visit.step_id, index)
        order = sorted(first_seen, key=first_seen.__getitem__)
        for i, earlier in enumerate(order):
            outcome = finals[earlier]
            if outcome == StepOutcome.SKIPPED:
                continue
            for later in order[i + 1 :]:
                if finals[later] != StepOutcome.SKIPPED:
                    pair = (trace.playbook_id, trace.version, earlier, outcome, later)
                    _add(self.pairs, pair, [1, int(finals[later] == StepOutcome.SUCCESS)])
