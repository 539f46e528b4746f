"""Changes answering the analysis's low-success steps and bottlenecks.

A finding alone changes nothing: each change proposed here is replayed and gated
like every other candidate (``analysis.judge``), and the verification guard
refuses any that would drop or bypass a last health verification. What is
proposed:

- a low-success fix: one more try (its failures may be flaky), and, in a chain of
  fixes tried one after another, a later place: the proposed orders that try it
  later answer it, or, where none does, the step moved last;
- a bottleneck (one of the steps taking most of the step time): a timeout at 1.5
  times its slowest recorded success (p99) where some attempts ran past that (p95
  of all attempts), and, in a chain of fixes, a later place as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.learning.candidate import Candidate
from graylogic_supervisor.learning.changes import ReorderSteps, SetRetry, SetTimeout
from graylogic_supervisor.learning.metrics import StepMetrics
from graylogic_supervisor.playbooks.model import Playbook

MAX_RETRY_ATTEMPTS = 5
TIMEOUT_MARGIN = 1.5  # the proposed timeout over the slowest recorded success (p99)
WORTH_SHORTENING = 0.8  # proposed only below this share of the current timeout


def from_findings(
    playbook: Playbook,
    found: Mapping[str, Any],
    steps: Sequence[StepMetrics],
    *,
    chains: Sequence[Sequence[Sequence[str]]],
    specs: Mapping[str, ActionSpec],
    others: Sequence[Candidate] = (),
) -> list[Candidate]:
    """``found``: ``analysis.findings``; ``chains``: ``analysis.failure_chains``;
    ``others``: the candidates the other rules proposed. A new order that already puts
    the step later (the orders by chance of fixing per second) answers the finding: it
    is marked so, and no order of its own competes with it (a step merely moved last
    would beat it by a hair in replay and end the search in a worse order)."""
    by_step = {s.step_id: s for s in steps}
    heads = [[block[0] for block in chain] for chain in chains]
    reorders = [c for c in others if isinstance(c.change, ReorderSteps)]
    proposed: list[Candidate] = []
    for item in found.get("low_success_steps", []):
        metrics = by_step.get(item["step"])
        if metrics is None:
            continue
        what = (
            f"low-success step {metrics.step_id}: success rate {item['success_rate']:.2f}"
            f" over {item['executions']} executions"
        )
        proposed += _retry(playbook, metrics, what, specs)
        proposed += _later(metrics.step_id, heads, what, "low_success", reorders=reorders)
    for item in found.get("bottlenecks", []):
        metrics = by_step.get(item["step"])
        if metrics is None:
            continue
        what = f"bottleneck {metrics.step_id}: {item['share_of_step_time']:.0%} of the step time"
        proposed += _shorter_timeout(playbook, metrics, what)
        proposed += _later(metrics.step_id, heads, what, "bottleneck", reorders=reorders)
    return proposed


def _finding(kind: str, what: str, metrics: StepMetrics | None = None) -> dict[str, Any]:
    evidence: dict[str, Any] = {"finding": {"kind": kind, "description": what}}
    if metrics is not None:
        evidence["step_metrics"] = metrics.as_dict()
    return evidence


def _retry(
    playbook: Playbook, metrics: StepMetrics, what: str, specs: Mapping[str, ActionSpec]
) -> list[Candidate]:
    step = playbook.step(metrics.step_id)
    spec = specs.get(step.action)
    if step.is_group or spec is None or spec.kind is not ActionKind.FIX:
        return []  # a check or a verification that fails says something: no retry
    attempts = step.retry.attempts if step.retry else 1
    if attempts >= MAX_RETRY_ATTEMPTS:
        return []
    retry = step.retry.model_dump(mode="json") if step.retry else {"backoff_seconds": 1.0}
    retry["attempts"] = attempts + 1
    return [
        Candidate(
            SetRetry(step_id=step.id, retry=retry),
            f"try {step.id} {attempts + 1} times ({what})",
            _finding("low_success", what, metrics),
            [what],
        )
    ]


def _shorter_timeout(playbook: Playbook, metrics: StepMetrics, what: str) -> list[Candidate]:
    step = playbook.step(metrics.step_id)
    slowest_success, slow = metrics.p99_success_duration_s, metrics.p95_duration_s
    if step.is_group or slowest_success is None or slow is None:
        return []
    timeout = max(1.0, round(slowest_success * TIMEOUT_MARGIN, 1))
    if timeout >= step.timeout_seconds * WORTH_SHORTENING or slow <= timeout:
        return []  # nothing runs past what a success needs: no time to save
    return [
        Candidate(
            SetTimeout(step_id=step.id, timeout_seconds=timeout),
            f"time {step.id} out after {timeout:g} s instead of {step.timeout_seconds:g} s"
            f" ({what}; successes took at most about {slowest_success:.1f} s, p99, while"
            f" 5 % of attempts took {slow:.1f} s or more)",
            _finding("bottleneck", what, metrics),
            [what],
        )
    ]


def _later(
    step_id: str,
    heads: Sequence[Sequence[str]],
    what: str,
    kind: str,
    *,
    reorders: Sequence[Candidate],
) -> list[Candidate]:
    """In each chain of fixes holding ``step_id`` (not already last): the orders proposed
    that try it later, marked with ``what``; where there is none, it moved last."""
    found = []
    for chain in heads:
        if step_id not in chain or chain[-1] == step_id:
            continue
        place = chain.index(step_id)
        answering = [
            c
            for c in reorders
            if isinstance(c.change, ReorderSteps)
            and c.change.chain == list(chain)
            and c.change.order.index(step_id) > place
        ]
        for candidate in answering:
            if what not in candidate.findings:
                candidate.findings.append(what)
        if answering:
            continue
        order = [s for s in chain if s != step_id] + [step_id]
        found.append(
            Candidate(
                ReorderSteps(chain=list(chain), order=order),
                f"try {' -> '.join(order)} instead of {' -> '.join(chain)} ({what}: tried last)",
                _finding(kind, what),
                [what],
            )
        )
    return found


def merged(candidates: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per change: a change proposed for several reasons is judged once,
    with every finding it answers."""
    by_change: dict[str, Candidate] = {}
    for candidate in candidates:
        key = candidate.change.model_dump_json()
        kept = by_change.get(key)
        if kept is None:
            by_change[key] = candidate
            continue
        kept.findings += [f for f in candidate.findings if f not in kept.findings]
    return list(by_change.values())
