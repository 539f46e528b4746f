"""What happens to a draft playbook (``drafts.py``): stored, adopted, retired.

A draft is stored as a ``new_playbook`` recommendation. A person's approval
adopts it: version 1.0.0 of a new, active playbook, written with the decision
and its audit entry in one transaction (``store/decisions.py``). Its rollback
baseline is escalating at once (there is no version before it): an adopted
draft that does worse is retired, deactivated and marked failed, and its
failures are escalated again as before; a person may retire it too
(``playbook rollback ID none``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.domain.states import RecommendationStatus
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.changes import Change, ChangeError, NewPlaybook, validated
from graylogic_supervisor.learning.draft_steps import FIRST_VERSION
from graylogic_supervisor.learning.drafts import (
    NEW_PLAYBOOK,
    NO_BASE,
    Draft,
    worse_than_escalating,
)
from graylogic_supervisor.learning.metrics import LearningMetrics
from graylogic_supervisor.learning.rejections import change_key
from graylogic_supervisor.store.audit import AuditEntry
from graylogic_supervisor.store.decisions import (
    DecidedMeanwhile,
    Decision,
    LearningDecisions,
    Rejected,
    Rollback,
)
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.learning import LearningRepository, StoredRecommendation
from graylogic_supervisor.store.versions import NewVersion, PlaybookVersions

logger = logging.getLogger(__name__)

Alert = Callable[[str, str, dict[str, str]], None]  # severity, message, context
DRAFTED_BY = "workflow_learning"


class DraftRefused(SupervisorError):
    """A draft that cannot be adopted or retired as asked."""


class DraftDecisions:
    def __init__(
        self,
        store: LearningRepository,
        versions: PlaybookVersions,
        decisions: LearningDecisions,
        metrics: LearningMetrics,
        *,
        specs: Mapping[str, ActionSpec],
        settings: LearningConfig,
        clock: Clock,
        alert: Alert | None = None,
        ids: random.Random | None = None,
    ) -> None:
        self._store = store
        self._versions = versions
        self._decisions = decisions
        self._metrics = metrics
        self._specs = specs
        self._settings = settings
        self._clock = clock
        self._alert = alert
        self._ids = ids

    async def store(self, draft: Draft) -> str:
        """The draft as a pending ``new_playbook`` recommendation; returns its id."""
        now = self._clock.now()
        rec_id = new_id("rec", now, self._ids)
        playbook_id, change = draft.playbook.id, draft.change
        key = change_key(playbook_id, change)
        await self._store.add_recommendation(
            {
                "id": rec_id,
                "playbook_id": playbook_id,
                "base_version": NO_BASE,
                "type": NEW_PLAYBOOK,
                "priority": draft.priority,
                "confidence": draft.confidence,
                "sample_size": draft.resolutions,
                "summary": draft.summary,
                "change": change,
                "evidence": draft.evidence,
                "expected_impact": draft.expected_impact,
                "fingerprint": key,
                "change_key": key,
                "trial": 0,
                "analysis_id": None,
                "status": RecommendationStatus.PENDING,
                "generated_at": isoformat(now),
                "expires_at": isoformat(
                    now + timedelta(days=self._settings.recommendation_expiry_days)
                ),
            }
        )
        return rec_id

    async def adopt(
        self, rec: StoredRecommendation, change: Change, user: str, reason: str, *, modified: bool
    ) -> str:
        """The approved draft (as ``change``: perhaps modified, validated again) as version
        1.0.0 of a new, active playbook; raises ``DraftRefused``."""
        if not isinstance(change, NewPlaybook):
            raise DraftRefused(f"{rec.id} proposes a new playbook; the change must be one too")
        data = {**change.playbook, "version": FIRST_VERSION}
        if data.get("id") != rec.playbook_id:
            raise DraftRefused(f"the new playbook's id must stay {rec.playbook_id}")
        try:
            playbook = validated(data, self._specs)
        except ChangeError as exc:
            raise DraftRefused(f"{rec.id}: {exc}") from exc
        trigger = playbook.trigger
        for active in await self._versions.active_playbooks():
            if active.trigger.component == trigger.component and (
                set(active.trigger.error_ids) & set(trigger.error_ids)
            ):
                raise DraftRefused(
                    f"{active.id} covers {trigger.component}'s failure now; the draft is not needed"
                )
        now = self._clock.now()
        description = f"{rec.summary} (modified)" if modified else rec.summary
        version = NewVersion(
            playbook,
            parent_version=None,
            created_by=DRAFTED_BY,
            approved_by=user,
            reason=reason or rec.summary,
            recommendation_id=rec.id,
            changes=[{"type": NEW_PLAYBOOK, "description": description}],
            at=now,
        )
        decision = Decision(
            recommendation_id=rec.id,
            status=RecommendationStatus.APPROVED,
            by=user,
            reason=reason or "approved",
            at=now,
            new_version=FIRST_VERSION,
            change=change.model_dump(mode="json") if modified else None,
        )
        detail = {
            "recommendation": rec.id,
            "from_version": None,
            "new_version": FIRST_VERSION,
            "modified": modified,
            "new_playbook": True,
            "reason": reason,
        }
        entry = AuditEntry(user, "recommendation.approve", rec.playbook_id, detail, now)
        try:
            await self._decisions.approve(decision, version, trial=None, entries=[entry])
        except DecidedMeanwhile as exc:
            raise DraftRefused(str(exc)) from exc
        return FIRST_VERSION

    async def check(self, playbook_id: str, version: str) -> dict[str, Any] | None:
        """Retire an adopted draft that does worse than escalating at once; returns the
        rollback (to ``none``) when it did."""
        metrics = await self._metrics.version(playbook_id, version)
        if metrics is None:
            return None
        settings = self._settings
        verdict = worse_than_escalating(
            metrics, manual_s=settings.manual_resolve_s, min_executions=settings.min_executions
        )
        if verdict is None:
            return None
        report = {
            "baseline": "escalation (no playbook)",
            "manual_resolve_s": settings.manual_resolve_s,
            "metrics": metrics.as_dict(),
            "verdict": verdict,
        }
        reason = f"automatic rollback to no playbook (escalation): {verdict}"
        try:
            rollback_id = await self._retire(
                playbook_id, version, by="supervisor", reason=reason, report=report
            )
        except DraftRefused as exc:
            logger.info("%s %s not retired: %s", playbook_id, version, exc)
            return None
        logger.warning("%s %s retired: %s", playbook_id, version, reason)
        if self._alert is not None:
            self._alert(
                "warning",
                f"{playbook_id} {version} did worse than escalating and was retired",
                {"playbook": playbook_id, "rollback": rollback_id},
            )
        return {"id": rollback_id, "to_version": NO_BASE, "report": report}

    async def retire_by_hand(self, playbook_id: str, user: str, reason: str) -> str:
        """A person retires an adopted draft (``rollback ... none``); returns the version
        it deactivated. Raises ``DraftRefused``."""
        version = await self._versions.active_version(playbook_id)
        if version is None:
            raise DraftRefused(f"{playbook_id} has no active version")
        info = await self._versions.version_info(playbook_id, version)
        if info is None or info["parent_version"] is not None or info["created_by"] != DRAFTED_BY:
            raise DraftRefused(
                f"only a drafted playbook's first version goes back to {NO_BASE!r} (no"
                f" playbook); {playbook_id} {version} has versions before it or came from a file"
            )
        metrics = await self._metrics.version(playbook_id, version)
        report = {
            "manual": True,
            "reason": reason,
            "baseline": "escalation (no playbook)",
            "metrics": None if metrics is None else metrics.as_dict(),
        }
        await self._retire(playbook_id, version, by=user, reason=reason, report=report)
        return version

    async def _retire(
        self, playbook_id: str, version: str, *, by: str, reason: str, report: dict[str, Any]
    ) -> str:
        info = await self._versions.version_info(playbook_id, version)
        rec_id = None if info is None else info["recommendation_id"]
        rec = None if rec_id is None else await self._store.get(rec_id)
        now = self._clock.now()
        rollback_id = new_id("rollback", now, self._ids)
        rejections = []
        if rec is not None:
            rejections.append(
                Rejected(
                    playbook_id=playbook_id,
                    change_key=change_key(playbook_id, rec.change),
                    recommendation_id=rec.id,
                    kind="rolled_back",
                    version=version,
                    by=by,
                    at=now,
                    reason=reason,
                    executions=rec.sample_size,
                )
            )
        rollback = Rollback(
            id=rollback_id,
            playbook_id=playbook_id,
            from_version=version,
            to_version=NO_BASE,
            by=by,
            reason=reason,
            at=now,
            report=report,
            failed=True,
            rejections=rejections,
        )
        entry = AuditEntry(
            by,
            "playbook.rollback",
            playbook_id,
            {"from": version, "to": NO_BASE, "id": rollback_id, "reason": reason},
            now,
        )
        try:
            await self._decisions.retire(rollback, entry=entry)
        except DecidedMeanwhile as exc:
            raise DraftRefused(str(exc)) from exc
        return rollback_id
