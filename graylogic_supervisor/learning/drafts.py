"""Draft playbooks for failures no playbook covers (BR-IWB-001).

A failure whose error id no active playbook handles is escalated every time.
When technicians have resolved it with registered fix actions at least
``learning.draft_min_resolutions`` times (or the failure memory learned a
pattern for it), the analysis drafts a playbook from that history: the
component's health check, the fixes most often successful first (each followed
by a health verification), and an alert before escalating. The draft is a
``new_playbook`` recommendation: validated as a file is, and never active until
a person approves it.

Do no harm: a fix whose action is gone, is not a fix, needs parameters the
history cannot give, or names a target this site does not configure is left out
(and with no fix left, nothing is drafted); an error id with a playbook is never
drafted; a playbook id the store already knows (approved, perhaps retired since)
is not drafted again; a pending draft is not proposed twice; a rejected one
waits until its evidence has grown ``GROWTH``-fold (``rejections.py``).

Once approved, a draft is retired (deactivated: "no playbook" again) when it does
worse than escalating at once: its expected time, each run's mean time plus a
technician's time for each run that did not resolve, above the technician's
time alone (``worse_than_escalating``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.learning.changes import ChangeError
from graylogic_supervisor.learning.draft_steps import (
    DraftSite,
    FixEvidence,
    draft_playbook,
    playbook_id_for,
    why_unusable,
)
from graylogic_supervisor.learning.rejections import GROWTH, earlier_rejection, holds_back
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.learning import DraftEvidence, ErrorPattern, HumanFix
from graylogic_supervisor.store.rejections import RejectionRepository
from graylogic_supervisor.store.versions import PlaybookVersions

if TYPE_CHECKING:
    from graylogic_supervisor.learning.metrics import VersionMetrics

NEW_PLAYBOOK = "new_playbook"
NO_BASE = "none"  # a draft's base version: there is none
MAX_FIXES = 4


Key = tuple[str, str]  # error id, component


def gather(
    fixes: Sequence[HumanFix], patterns: Sequence[ErrorPattern]
) -> dict[Key, list[FixEvidence]]:
    """Each failure's fixes, most often successful first (then the higher rate)."""
    found: dict[Key, dict[tuple[str, str | None], FixEvidence]] = {}
    for fix in fixes:
        per = found.setdefault((fix.error_id, fix.component), {})
        item = per.setdefault(
            (fix.fix_action, fix.fix_target), FixEvidence(fix.fix_action, fix.fix_target)
        )
        item.resolutions += fix.count
        item.failures.append(fix.failure_id)
        item.people[fix.fixed_by] += fix.count
    for pattern in patterns:
        per = found.setdefault((pattern.error_id, pattern.component), {})
        item = per.setdefault(
            (pattern.fix_action, pattern.fix_target),
            FixEvidence(pattern.fix_action, pattern.fix_target),
        )
        item.patterns.append(pattern.id)
        item.matched += pattern.times_matched
        item.resolved += pattern.times_resolved
        item.pattern_failures += pattern.failures
    return {
        key: sorted(per.values(), key=lambda f: (-f.successes, -f.rate, f.action, f.target or ""))
        for key, per in found.items()
    }


@dataclass
class Draft:
    """A drafted playbook with everything a person needs to judge it."""

    playbook: Playbook
    error_id: str
    component: str
    fixes: list[FixEvidence]
    left_out: list[dict[str, str]]
    resolutions: int  # failures resolved by people with a registered fix
    confidence: float
    priority: str
    summary: str
    manual_s: float
    earlier_rejection: dict[str, Any] | None = None  # proposed again: the evidence grew

    @property
    def change(self) -> dict[str, Any]:
        return {
            "type": NEW_PLAYBOOK,
            "playbook": self.playbook.model_dump(mode="json", exclude_defaults=True),
        }

    @property
    def evidence(self) -> dict[str, Any]:
        earlier = (
            {} if self.earlier_rejection is None else {"earlier_rejection": self.earlier_rejection}
        )
        return {
            **earlier,
            "error_id": self.error_id,
            "component": self.component,
            "resolved_by_people": self.resolutions,
            "fixes": [f.as_dict() for f in self.fixes],
            "left_out": self.left_out,
            "pattern": {
                "description": (
                    f"{self.resolutions} failures of {self.error_id} on {self.component}"
                    " escalated with no playbook and resolved by hand"
                )
            },
        }

    @property
    def expected_impact(self) -> dict[str, Any]:
        """An estimate from the people's record (nothing can be replayed: nothing ran):
        the share the drafted fixes cover no longer waits for a technician."""
        covered = sum(f.resolutions for f in self.fixes) / max(self.resolutions, 1)
        after = (1 - covered) * self.manual_s
        return {
            "method": (
                f"estimate: {covered:.0%} of {self.resolutions} resolutions by people used a"
                " drafted fix; those would not wait for a technician"
            ),
            "success_rate": {
                "current": 0.0,
                "proposed": round(covered, 4),
                "change": round(covered, 4),
            },
            "escalation_rate": {
                "current": 1.0,
                "proposed": round(1 - covered, 4),
                "change": round(-covered, 4),
            },
            "resolution_time_s": {
                "current": round(self.manual_s, 2),
                "proposed": round(after, 2),
                "change": round(after - self.manual_s, 2),
            },
        }


def confidence_of(covered: int, resolutions: int) -> float:
    """How sure the draft's fixes fit: the share of resolutions they cover, discounted
    for a small record (3 of 3 gives 0.75, 10 of 10 gives 0.91)."""
    return round(covered / (resolutions + 1), 4) if resolutions else 0.0


def build_draft(
    key: Key,
    evidence: Sequence[FixEvidence],
    *,
    specs: Mapping[str, ActionSpec],
    site: DraftSite,
    settings: LearningConfig,
) -> Draft | str:
    """The draft for one uncovered failure, or why there is none."""
    error_id, component = key
    resolutions = sum(f.resolutions for f in evidence)
    learned = any(f.patterns for f in evidence)
    if resolutions < settings.draft_min_resolutions and not learned:
        return (
            f"{resolutions} resolutions by people with a registered fix, below"
            f" {settings.draft_min_resolutions}, and no learned pattern"
        )
    fixes, left_out = [], []
    for fix in evidence:
        problem = why_unusable(fix, specs, site)
        if problem is None:
            fixes.append(fix)
        else:
            left_out.append({"action": fix.action, "target": fix.target or "", "why": problem})
    if not fixes:
        return "no recorded fix can run here: " + "; ".join(f["why"] for f in left_out)
    fixes = fixes[:MAX_FIXES]
    try:
        playbook = draft_playbook(error_id, component, fixes, specs=specs, site=site)
    except ChangeError as exc:
        return str(exc)
    covered = sum(f.resolutions for f in fixes)
    if resolutions:
        confidence = confidence_of(covered, resolutions)
    else:  # a pattern alone (the people's records gone): the failures it was learned from
        learned_from = sum(f.pattern_failures for f in fixes)
        confidence = confidence_of(learned_from, learned_from)
    first = fixes[0]
    summary = (
        f"new playbook {playbook.id} for {error_id} on {component}: {len(fixes)} fix(es),"
        f" first {first.action}{' ' + first.target if first.target else ''}"
        f" ({first.successes} successes); {resolutions} resolutions by people"
    )
    return Draft(
        playbook=playbook,
        error_id=error_id,
        component=component,
        fixes=fixes,
        left_out=left_out,
        resolutions=resolutions,
        confidence=confidence,
        priority="high" if resolutions >= 3 * settings.draft_min_resolutions else "medium",
        summary=summary,
        manual_s=settings.manual_resolve_s,
    )


class Drafter:
    """Finds the uncovered failures with a record of fixes and drafts their playbooks."""

    def __init__(
        self,
        evidence: DraftEvidence,
        versions: PlaybookVersions,
        rejections: RejectionRepository,
        specs: Mapping[str, ActionSpec],
        *,
        settings: LearningConfig,
        site: DraftSite,
    ) -> None:
        self._evidence = evidence
        self._versions = versions
        self._rejections = rejections
        self._specs = specs
        self._settings = settings
        self._site = site

    async def drafts(self) -> tuple[list[Draft], list[dict[str, Any]]]:
        """The drafts to propose, and a verdict on every uncovered failure considered."""
        found = gather(await self._evidence.human_fixes(), await self._evidence.patterns())
        active = await self._versions.active_playbooks()
        proposed: list[Draft] = []
        considered: list[dict[str, Any]] = []
        for key in sorted(found):
            error_id, component = key
            if any(
                p.trigger.component == component and error_id in p.trigger.error_ids for p in active
            ):
                continue  # covered: never drafted
            verdict = await self._verdict(key, found[key])
            if isinstance(verdict, Draft):
                proposed.append(verdict)
                considered.append(
                    {
                        "error_id": error_id,
                        "component": component,
                        "verdict": "proposed",
                        "playbook_id": verdict.playbook.id,
                        "confidence": verdict.confidence,
                    }
                )
            else:
                considered.append(
                    {"error_id": error_id, "component": component, "verdict": verdict}
                )
        return proposed, considered

    async def _verdict(self, key: Key, evidence: Sequence[FixEvidence]) -> Draft | str:
        playbook_id = playbook_id_for(*key)
        if await self._evidence.known_playbook(playbook_id):
            return f"{playbook_id} was approved before (retired drafts are not drafted again)"
        statuses = await self._evidence.draft_statuses(playbook_id)
        if "pending" in statuses:
            return "a draft is pending already"
        draft = build_draft(
            key, evidence, specs=self._specs, site=self._site, settings=self._settings
        )
        if isinstance(draft, str):
            return draft
        rejected = list((await self._rejections.latest(playbook_id)).values())
        if rejected:
            last = max(rejected, key=lambda r: r.at)
            if holds_back(last, draft.resolutions):
                return (
                    f"rejected by {last.by} at {last.at} with {last.executions} resolutions;"
                    f" proposed again from {GROWTH * max(last.executions, 1)}"
                )
            draft.earlier_rejection = earlier_rejection(last, draft.resolutions)
        return draft


def worse_than_escalating(
    metrics: VersionMetrics, *, manual_s: float, min_executions: int
) -> str | None:
    """Why an approved draft does worse than escalating at once, or None: after
    ``min_executions`` runs, its mean run time plus a technician's time for each run it
    did not resolve, above the technician's time alone."""
    if metrics.executions < min_executions:
        return None
    if metrics.resolutions == 0 or metrics.mean_resolution_s is None:
        return f"over {metrics.executions} runs it resolved none"
    # the mean of its resolved runs stands for every run's time (a failed run is longer)
    unresolved = 1 - (metrics.resolutions / metrics.executions)
    expected = metrics.mean_resolution_s + unresolved * manual_s
    if expected <= manual_s:
        return None
    return (
        f"over {metrics.executions} runs it resolved {metrics.resolutions}: expected"
        f" {expected:.0f} s with the technician's time, against {manual_s:.0f} s escalating at once"
    )
