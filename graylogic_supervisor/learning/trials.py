"""Trial versions (BR-WF-034): a change replay cannot judge is tried on real incidents.

A cheap fix no recorded execution ever ran first, or a longer timeout for a step
whose attempts were all cut off, cannot be replayed. Approved as a trial, the
change becomes a stored version that takes ``share`` of the incidents while the
base stays active; both arms are recorded as executions of their own versions,
and ``comparison.compare_versions`` promotes or drops it.

Which arm an incident gets is a hash of (trial id, failure id): a retry of the
same failure stays in its arm, and a simulation replays. Nothing runs a trial
in safe mode: then the site needs the version it knows.
"""

from __future__ import annotations

import hashlib
import logging
import random
from typing import Any

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.states import TrialStatus
from graylogic_supervisor.learning.comparison import TrialComparison, decide_trial
from graylogic_supervisor.learning.rejections import change_key
from graylogic_supervisor.learning.resolution import resolution_time_s
from graylogic_supervisor.learning.rollback import VersionSample
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.audit import AuditEntry
from graylogic_supervisor.store.decisions import LearningDecisions, Rejected
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.learning import LearningRepository
from graylogic_supervisor.store.trials import NewTrial, Trial, TrialEnd, TrialRepository
from graylogic_supervisor.store.versions import NewVersion, PlaybookVersions

logger = logging.getLogger(__name__)

DEFAULT_SHARE = 0.2


def in_trial(trial_id: str, failure_id: str, share: float) -> bool:
    """Whether this failure runs the trial's version: ``share`` of failures, always the
    same answer for the same pair."""
    digest = hashlib.sha256(f"{trial_id}/{failure_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class TrialArms:
    """Which version handles an incident: the active one, or a running trial's."""

    def __init__(self, trials: TrialRepository, versions: PlaybookVersions) -> None:
        self._trials = trials
        self._versions = versions
        self._definitions: dict[tuple[str, str], Playbook] = {}  # versions never change

    async def choose(self, active: Playbook, failure_id: str, safe_mode: bool = False) -> Playbook:
        if safe_mode:
            return active
        trial = await self._trials.running(active.id)
        if trial is None or trial.base_version != active.version:
            return active
        if not in_trial(trial.id, failure_id, trial.share):
            return active
        key = (active.id, trial.trial_version)
        if key not in self._definitions:
            playbook = await self._versions.definition(*key)
            if playbook is None:
                return active
            self._definitions[key] = playbook
        return self._definitions[key]


class TrialKeeper:
    """Starts trials, decides them after each execution, and stops them on request;
    each decision one transaction with its audit entry (the service alerts)."""

    def __init__(
        self,
        trials: TrialRepository,
        versions: PlaybookVersions,
        decisions: LearningDecisions,
        recommendations: LearningRepository,
        *,
        clock: Clock,
        min_executions: int,
        manual_s: float,
        ids: random.Random | None = None,
    ) -> None:
        self.store = trials
        self._versions = versions
        self._decisions = decisions
        self._recommendations = recommendations
        self._clock = clock
        self._min_executions = min_executions
        self._manual_s = manual_s
        self._ids = ids

    def new_trial(
        self,
        playbook: Playbook,
        base_version: str,
        *,
        share: float,
        recommendation_id: str | None,
        user: str,
    ) -> NewTrial:
        """``playbook``, the trial version, beside the active ``base_version``."""
        now = self._clock.now()
        return NewTrial(
            id=new_id("trial", now, self._ids),
            playbook_id=playbook.id,
            base_version=base_version,
            trial_version=playbook.version,
            share=share,
            recommendation_id=recommendation_id,
            by=user,
            at=now,
        )

    @staticmethod
    def start_entry(trial: NewTrial, reason: str) -> AuditEntry:
        detail = {
            "trial": trial.id,
            "base_version": trial.base_version,
            "trial_version": trial.trial_version,
            "share": trial.share,
            "recommendation": trial.recommendation_id,
            "reason": reason,
        }
        return AuditEntry(trial.by, "trial.start", trial.playbook_id, detail, trial.at)

    @staticmethod
    def started(trial: NewTrial) -> None:
        logger.info(
            "%s %s on trial beside %s for %.0f%% of incidents",
            trial.playbook_id,
            trial.trial_version,
            trial.base_version,
            trial.share * 100,
            extra={"playbook": trial.playbook_id},
        )

    async def start(self, trial: NewTrial, version: NewVersion, reason: str) -> Trial | None:
        """``version`` stored and on ``trial``, in one transaction with its audit entry.
        None (nothing stored) when a trial runs already."""
        entry = self.start_entry(trial, reason)
        if not await self._decisions.start_trial(trial, version=version, entry=entry):
            return None
        self.started(trial)
        return await self.store.get(trial.id)

    async def comparison(self, trial: Trial) -> TrialComparison:
        """Both arms' figures since the trial started, and what they decide."""
        rows = await self.store.arm_rows(
            trial.playbook_id, (trial.base_version, trial.trial_version), trial.started_at
        )
        samples = {}
        for version in (trial.base_version, trial.trial_version):
            mine = [facts for facts in rows if facts.version == version]
            samples[version] = VersionSample(
                version,
                sum(facts.success for facts in mine),
                len(mine),
                tuple(resolution_time_s(facts, self._manual_s) for facts in mine),
            )
        looked = int((trial.statistics or {}).get("look", 0))
        return decide_trial(
            samples[trial.base_version], samples[trial.trial_version], self._min_executions, looked
        )

    async def running_as(self, playbook_id: str, version: str) -> Trial | None:
        """The running trial whose version this is (an approval's answer: a trial or not)."""
        trial = await self.store.running(playbook_id)
        return trial if trial is not None and trial.trial_version == version else None

    async def report(self, trial: Trial) -> dict[str, Any]:
        """A trial with both arms' figures: live while it runs, as decided once it ended."""
        data = trial.as_dict()
        if trial.status == TrialStatus.RUNNING:
            data["statistics"] = (await self.comparison(trial)).as_dict()
        return data

    async def check(self, playbook_id: str) -> dict[str, Any] | None:
        """After an execution (or a change of the active version): the decision it
        brings, if any."""
        trial = await self.store.running(playbook_id)
        if trial is None:
            return None
        active = await self._versions.active_version(playbook_id)
        if active is None or active != trial.base_version:
            reason = f"its base {trial.base_version} is no longer active ({active} is)"
            return await self._end(
                trial,
                TrialStatus.DROPPED,
                by="supervisor",
                reason=reason,
                result=None,
                active=active,
            )
        result = await self.comparison(trial)
        if result.decision is None:
            if result.look > int((trial.statistics or {}).get("look", 0)):
                await self.store.set_statistics(trial.id, result.as_dict())
            return None
        if result.decision == "promote":
            return await self._end(
                trial,
                TrialStatus.PROMOTED,
                by="supervisor",
                reason=result.reason,
                result=result,
                active=trial.trial_version,
            )
        return await self._end(
            trial,
            TrialStatus.DROPPED,
            by="supervisor",
            reason=result.reason,
            result=result,
            active=active,
        )

    async def stop(self, trial: Trial, user: str, reason: str) -> dict[str, Any] | None:
        """A person ends a running trial; the base stays active. None when it had ended."""
        result = await self.comparison(trial)
        active = await self._versions.active_version(trial.playbook_id)
        why = f"stopped by {user}: {reason}"
        return await self._end(
            trial, TrialStatus.DROPPED, by=user, reason=why, result=result, active=active
        )

    async def _end(
        self,
        trial: Trial,
        status: TrialStatus,
        *,
        by: str,
        reason: str,
        result: TrialComparison | None,
        active: str | None,
    ) -> dict[str, Any] | None:
        """The decision, its audit entry, the promoted version made active and a change
        judged no better remembered as rejected: one transaction."""
        now = self._clock.now()
        statistics = None if result is None else result.as_dict()
        end = TrialEnd(
            trial_id=trial.id, status=status, by=by, reason=reason, at=now, statistics=statistics
        )
        action = "trial.promote" if status == TrialStatus.PROMOTED else "trial.drop"
        if by != "supervisor":
            action = "trial.stop"
        details: dict[str, Any] = {
            "trial": trial.id,
            "base_version": trial.base_version,
            "trial_version": trial.trial_version,
            "reason": reason,
        }
        if statistics is not None:
            details["statistics"] = statistics
        promote = None
        if status == TrialStatus.PROMOTED:
            promote = (trial.playbook_id, trial.base_version, trial.trial_version)
        judged = result is not None  # not when its base was replaced
        if not await self._decisions.end_trial(
            end,
            promote=promote,
            rejection=await self._rejection(trial, end) if judged else None,
            entry=AuditEntry(by, action, trial.playbook_id, details, now),
        ):
            return None
        logger.warning(
            "%s trial %s %s (%s); %s is active",
            trial.playbook_id,
            trial.trial_version,
            status,
            reason,
            active,
            extra={"playbook": trial.playbook_id},
        )
        return {
            "id": trial.id,
            "playbook_id": trial.playbook_id,
            "trial_version": trial.trial_version,
            "status": status,
            "active_version": active,
            "reason": reason,
            "by": by,
            "judged": judged,
            "recommendation_id": trial.recommendation_id,
        }

    async def _rejection(self, trial: Trial, end: TrialEnd) -> Rejected | None:
        """A trial judged no better (by its figures or by a person) is a rejected change:
        not proposed again until its evidence has grown (``rejections.py``)."""
        if end.status != TrialStatus.DROPPED or trial.recommendation_id is None:
            return None
        rec = await self._recommendations.get(trial.recommendation_id)
        if rec is None:
            return None
        return Rejected(
            playbook_id=rec.playbook_id,
            change_key=change_key(rec.playbook_id, rec.change),  # as approved: perhaps modified
            recommendation_id=rec.id,
            kind="rejected",
            version=trial.trial_version,
            by=end.by,
            at=end.at,
            reason=f"trial dropped: {end.reason}",
            executions=await self._recommendations.counted_executions(rec.playbook_id),
        )
