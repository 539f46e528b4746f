"""The learning loop's public functions: what the daemon, the CLI, the simulator
and (later) the admin page call. Everything that changes a playbook goes
through here, checks the user's role, and lands in the audit log."""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.domain.states import RecommendationStatus, TrialStatus
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.cases import load_cases
from graylogic_supervisor.learning.changes import (
    Change,
    ChangeError,
    apply_change,
    bump,
    parse_change,
)
from graylogic_supervisor.learning.draft_decisions import DraftDecisions, DraftRefused
from graylogic_supervisor.learning.draft_steps import DraftSite
from graylogic_supervisor.learning.drafts import NEW_PLAYBOOK, NO_BASE, Drafter
from graylogic_supervisor.learning.metrics import LearningMetrics
from graylogic_supervisor.learning.rejections import change_key, earlier_rejection, holds_back
from graylogic_supervisor.learning.safety import verification_guard
from graylogic_supervisor.learning.trials import TrialKeeper
from graylogic_supervisor.learning.verdicts import Verdicts
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.analyses import AnalysisRepository
from graylogic_supervisor.store.audit import AuditEntry, AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.decisions import (
    DecidedMeanwhile,
    Decision,
    LearningDecisions,
    Rejected,
    Rollback,
)
from graylogic_supervisor.store.feedback import FeedbackRepository
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.learning import (
    DraftEvidence,
    LearningRepository,
    StoredRecommendation,
)
from graylogic_supervisor.store.learning_metrics import MetricsTables
from graylogic_supervisor.store.rejections import RejectionRepository
from graylogic_supervisor.store.trials import Trial, TrialRepository
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import (
    NewVersion,
    PlaybookVersions,
    playbook_yaml,
    semver_key,
)

if TYPE_CHECKING:
    from graylogic_supervisor.learning.analysis import PlaybookAnalysis

logger = logging.getLogger(__name__)

Alert = Callable[[str, str, dict[str, str]], None]  # severity, message, context
HIGH_PRIORITY = "high"  # a new recommendation of this priority is alerted
TOP_PATHS = 5  # the most frequent paths an analysis report shows


class LearningError(SupervisorError):
    """A recommendation that cannot be decided as asked (gone, stale, invalid)."""


class LearningService:
    def __init__(
        self,
        db: Database,
        versions: PlaybookVersions,
        audit: AuditLog,
        specs: Mapping[str, ActionSpec],
        *,
        settings: LearningConfig,
        clock: Clock,
        alert: Alert | None = None,
        ids: random.Random | None = None,
        site: DraftSite | None = None,
    ) -> None:
        """``ids`` is a simulation's seeded source of ids (None: the system's); ``site``
        what drafts may name (None: targets unknown, any accepted)."""
        self._db = db
        self._versions = versions
        self._specs = specs
        self._settings = settings
        self._clock = clock
        self._alert = alert
        self._ids = ids
        self._first_versions: set[tuple[str, str]] = set()
        self.metrics = LearningMetrics(MetricsTables(db))
        self.store = LearningRepository(db)
        self.feedback = FeedbackRepository(db, audit)  # people's word, counted as evidence
        self.analyses = AnalysisRepository(db)
        self.users = UserRepository(db)
        self.rejections = RejectionRepository(db)
        self.verdicts = Verdicts(
            versions,
            self.metrics,
            self.store,
            min_executions=settings.min_executions,
            manual_s=settings.manual_resolve_s,
        )
        self.decisions = LearningDecisions(db, audit)
        self.drafter = Drafter(
            DraftEvidence(db),
            versions,
            self.rejections,
            specs,
            settings=settings,
            site=site or DraftSite(),
        )
        self.drafts = DraftDecisions(
            self.store,
            versions,
            self.decisions,
            self.metrics,
            specs=specs,
            settings=settings,
            clock=clock,
            alert=alert,
            ids=ids,
        )
        self.trials = TrialKeeper(
            TrialRepository(db),
            versions,
            self.decisions,
            self.store,
            clock=clock,
            min_executions=settings.min_executions,
            manual_s=settings.manual_resolve_s,
            ids=ids,
        )

    @property
    def settings(self) -> LearningConfig:
        return self._settings

    @property
    def specs(self) -> Mapping[str, ActionSpec]:
        """The actions a changed playbook may use (and whether each is a fix)."""
        return self._specs

    # --- after each execution ------------------------------------------------------------

    async def after_execution(self, execution_id: str) -> dict[str, Any] | None:
        """Count a finished execution; returns the rollback it caused, if any (a trial's
        decision it brings is audited and alerted, and seen in the active version)."""
        trace = await self.metrics.apply(execution_id)
        if trace is None:
            return None
        rollback = await self.check_rollback(trace.playbook_id, trace.version)
        await self.check_trial(trace.playbook_id)
        return rollback

    async def catch_up(self) -> int:
        """Count what finished while nobody was counting (start-up, after a crash)."""
        total = 0
        while traces := await self.metrics.apply_pending():
            total += len(traces)
            for version in {(t.playbook_id, t.version) for t in traces}:
                await self.check_rollback(*version)
            for playbook_id in {t.playbook_id for t in traces}:
                await self.check_trial(playbook_id)
        return total

    async def check_trial(self, playbook_id: str) -> dict[str, Any] | None:
        """Promote or drop the playbook's running trial when its figures say so."""
        decision = await self.trials.check(playbook_id)
        if (
            decision is not None
            and decision["status"] == TrialStatus.DROPPED
            and not decision["judged"]
        ):
            carried = await self._carry_on(decision)
            if carried is not None:
                decision = {**decision, "carried_on_as": carried.id}
        if decision is not None and self._alert is not None:
            promoted = decision["status"] == TrialStatus.PROMOTED
            self._alert(
                "info" if promoted else "warning",
                f"{playbook_id} trial {decision['trial_version']} {decision['status']}:"
                f" {decision['reason']}",
                {"playbook": playbook_id, "trial": decision["id"]},
            )
        return decision

    async def _changed(self, active: Playbook, change: Change, what: str) -> Playbook:
        """``active`` with ``change`` made, as the playbook's next version; raises
        ``LearningError`` (naming ``what``) when it does not apply or would drop a last
        verification."""
        version = await self._next_version(active.id, change.type)
        try:
            proposed = apply_change(active, change, version, self._specs)
        except ChangeError as exc:
            raise LearningError(
                f"{what} does not apply to the active {active.version}: {exc}"
            ) from exc
        data = await load_cases(self.store, active.id, self._specs, self._settings.replay_window)
        unsafe = verification_guard(active, proposed, self._specs, data.success_means_health)
        if unsafe is not None:  # a modified change too: no approval drops a last verification
            raise LearningError(f"{what} {unsafe}")
        return proposed

    async def _carry_on(self, decision: Mapping[str, Any]) -> Trial | None:
        """A trial whose base an approval replaced goes on: its change made again on the
        new active version, its figures started again. Not after a rollback (the new
        active version does not descend from the base), nor when the change no longer
        applies."""
        trial = await self.trials.store.get(decision["id"])
        rec_id = decision["recommendation_id"]
        rec = None if rec_id is None else await self.store.get(rec_id)
        active = await self._versions.active_playbook(decision["playbook_id"])
        if trial is None or rec is None or active is None:
            return None
        info = await self._versions.version_info(active.id, active.version)
        if info is None or info["parent_version"] != trial.base_version:
            return None
        try:
            proposed = await self._changed(active, self._parse(rec.change), rec.id)
        except LearningError as exc:
            logger.info("trial %s not carried on: %s", trial.id, exc)
            return None
        why = f"trial {trial.id} carried on from {trial.base_version} to {active.version}"
        version = NewVersion(
            proposed,
            parent_version=active.version,
            created_by="workflow_learning",
            approved_by=trial.started_by,
            reason=why,
            recommendation_id=rec.id,
            changes=[{"type": rec.type, "description": rec.summary, "change": rec.change}],
            at=self._clock.now(),
            activate=False,
        )
        carried = self.trials.new_trial(
            proposed,
            active.version,
            share=trial.share,
            recommendation_id=rec.id,
            user="supervisor",
        )
        return await self.trials.start(carried, version, why)

    async def check_rollback(self, playbook_id: str, version: str) -> dict[str, Any] | None:
        """Roll the active ``version`` back to the last version that really ran when
        either test of ``rollback.py`` says it does worse."""
        if (playbook_id, version) in self._first_versions:
            return None
        info = await self._versions.version_info(playbook_id, version)
        if info is None or not info["active"] or info["status"] != "ok":
            return None
        if info["parent_version"] is None:
            if info["created_by"] == "workflow_learning":  # an approved draft
                return await self.drafts.check(playbook_id, version)
            self._first_versions.add((playbook_id, version))  # never has a parent to go back to
            return None
        baseline = await self.verdicts.baseline(playbook_id, version)
        if baseline is None:
            return None
        verdict = await self.verdicts.verdict(playbook_id, version, baseline)
        if verdict is None or not verdict.rollback:
            return None
        restored = baseline.version
        report = await self.verdicts.investigation(
            playbook_id, version, restored, verdict, baseline=baseline
        )
        now = self._clock.now()
        rollback_id = new_id("rollback", now, self._ids)
        reason = f"automatic rollback: {verdict.describe()}"
        rejections = await self._discarded(
            playbook_id, version, restored, by="supervisor", reason=reason, now=now
        )
        report["rejected_recommendations"] = [r.recommendation_id for r in rejections]
        rollback = Rollback(
            id=rollback_id,
            playbook_id=playbook_id,
            from_version=version,
            to_version=restored,
            by="supervisor",
            reason=reason,
            at=now,
            report=report,
            failed=True,
            rejections=rejections,
        )
        entry = AuditEntry(
            "supervisor",
            "playbook.rollback",
            playbook_id,
            {"from": version, "to": restored, "id": rollback_id, "reason": reason},
            now,
        )
        try:
            await self.decisions.roll_back(rollback, entry=entry)
        except DecidedMeanwhile as exc:  # a person replaced the version first
            logger.info("%s %s not rolled back: %s", playbook_id, version, exc)
            return None
        logger.warning("%s %s rolled back to %s: %s", playbook_id, version, restored, reason)
        await self.check_trial(playbook_id)  # a trial on the rolled-back base ends
        if self._alert is not None:
            self._alert(
                "warning",
                f"{playbook_id} {version} did worse than {restored} and was rolled back",
                {"playbook": playbook_id, "rollback": rollback_id},
            )
        return {"id": rollback_id, "to_version": restored, "report": report}

    async def pending_count(self) -> int:
        return await self.store.pending_count()

    async def expire(self) -> list[str]:
        """Archive recommendations nobody decided within their expiry."""
        return await self.store.archive_expired(self._clock.now())

    # --- analysis -----------------------------------------------------------------------------

    async def analyze(self, trigger: str, playbook_ids: list[str] | None = None) -> dict[str, Any]:
        """Analyse every active playbook (or those named) and store what it recommends."""
        started = self._clock.now()
        await self.catch_up()
        archived = await self.store.archive_expired(started)
        checked = await self.verdicts.check_predictions(started)
        analysis_id = new_id("analysis", started, self._ids)
        reports, created = [], []
        for playbook in await self._versions.active_playbooks():
            if playbook_ids is not None and playbook.id not in playbook_ids:
                continue
            result = await self.analyse(playbook)
            stored, held_back = await self._store_recommendations(result, analysis_id)
            created += stored
            reports.append({**result.report(), "held_back": held_back})
        drafts: list[dict[str, Any]] = []
        if playbook_ids is None:  # drafts are for failures no playbook covers
            drafts = await self._propose_drafts(created)
        finished = self._clock.now()
        report = {
            "id": analysis_id,
            "trigger": trigger,
            "started_at": isoformat(started),
            "finished_at": isoformat(finished),
            "archived": archived,
            "recommendations": created,
            "playbooks": reports,
            "drafts": drafts,
            "predictions_checked": checked,
            "prediction_bias": await self.verdicts.bias(),
        }
        await self.store.record_analysis(
            analysis_id, started, finished, trigger, recommendations=len(created), report=report
        )
        await self.analyses.link(analysis_id, created)
        await self._announce(created, analysis_id)
        return report

    async def _announce(self, created: list[str], analysis_id: str) -> None:
        """An alert for each new recommendation of high priority (its own ``priority``:
        at least 5 points fewer escalations or a quarter of the resolution time saved,
        by replay): somebody should look at it before the weekly round."""
        if self._alert is None:
            return
        for rec_id in created:
            rec = await self.store.get(rec_id)
            if rec is None or rec.priority != HIGH_PRIORITY:
                continue
            self._alert(
                "info",
                f"{rec.playbook_id}: new high-priority recommendation {rec.id}: {rec.summary}",
                {
                    "playbook": rec.playbook_id,
                    "recommendation": rec.id,
                    "priority": rec.priority,
                    "analysis": analysis_id,
                },
            )

    async def pending_by_priority(self) -> dict[str, int]:
        """Pending recommendations per priority (/metrics, the dashboards)."""
        return await self.analyses.pending_by_priority()

    async def analyse(self, playbook: Playbook) -> PlaybookAnalysis:
        """Analyse one playbook's active version, if it ran ``min_executions`` times in
        the last ``window_days`` days (overlapping windows are fine: a change already
        pending is not stored twice, a rejected one is held back)."""
        from graylogic_supervisor.learning.analysis import analyse_playbook  # on its first run

        settings = self._settings
        now = self._clock.now()
        since = now - timedelta(days=self._settings.window_days)
        fresh = await self.store.counted_since(playbook.id, playbook.version, isoformat(since))
        data = await load_cases(self.store, playbook.id, self._specs, settings.replay_window)
        result = analyse_playbook(
            playbook,
            await self.metrics.version(playbook.id, playbook.version),
            fresh,
            await self.metrics.steps(playbook.id, playbook.version),
            pairs=await self.metrics.pairs(playbook.id, playbook.version),
            data=data,
            specs=self._specs,
            settings=settings,
            feedback=await self.feedback.of_playbook(playbook.id),
        )
        paths = await self.metrics.paths(playbook.id, playbook.version)
        result.findings["paths"] = [p.as_dict() for p in paths[:TOP_PATHS]]
        await self.store.set_analysed_at(playbook.id, now)
        return result

    async def _store_recommendations(
        self, result: PlaybookAnalysis, analysis_id: str
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Store what is new; returns the ids stored, and what an earlier rejection holds
        back (with that rejection)."""
        now = self._clock.now()
        pending = await self.store.pending_fingerprints(result.playbook_id)
        fresh = {rec.fingerprint for rec in result.recommendations}
        stale = [rec_id for fp, rec_id in pending.items() if fp not in fresh]
        await self.store.supersede(stale, now, f"analysis {analysis_id} no longer recommends it")
        rejected = await self.rejections.latest(result.playbook_id)
        executions = await self.store.counted_executions(result.playbook_id)
        created, held_back = [], []
        for rec in result.recommendations:
            if rec.fingerprint in pending:  # kept, with the feedback counted this time
                await self.feedback.refresh_pending_evidence(
                    pending[rec.fingerprint], rec.evidence.get("feedback")
                )
                continue
            key = change_key(rec.playbook_id, rec.change)
            rejection = rejected.get(key)
            if holds_back(rejection, executions):
                assert rejection is not None
                held_back.append(
                    {"summary": rec.summary, **earlier_rejection(rejection, executions)}
                )
                continue
            evidence = rec.evidence
            if rejection is not None:
                evidence = {
                    **evidence,
                    "earlier_rejection": earlier_rejection(rejection, executions),
                }
            rec_id = new_id("rec", now, self._ids)
            await self.store.add_recommendation(
                {
                    "id": rec_id,
                    "playbook_id": rec.playbook_id,
                    "base_version": rec.base_version,
                    "type": rec.type,
                    "priority": rec.priority,
                    "confidence": rec.confidence,
                    "sample_size": rec.sample_size,
                    "summary": rec.summary,
                    "change": rec.change,
                    "evidence": evidence,
                    "expected_impact": rec.expected_impact,
                    "fingerprint": rec.fingerprint,
                    "change_key": key,
                    "trial": int(rec.trial),
                    "analysis_id": None,
                    "status": RecommendationStatus.PENDING,
                    "generated_at": isoformat(now),
                    "expires_at": isoformat(
                        now + timedelta(days=self._settings.recommendation_expiry_days)
                    ),
                }
            )
            created.append(rec_id)
        return created, held_back

    # --- decisions -------------------------------------------------------------------------

    async def approve(
        self,
        recommendation_id: str,
        user: str,
        reason: str,
        modified_change: Mapping[str, Any] | None = None,
        *,
        trial: bool | None = None,
        share: float | None = None,
    ) -> str:
        """Make the recommended (or modified) change a new active version, or, approved as
        a trial (``trial`` None: as the recommendation proposes), a version that runs on
        ``share`` of the incidents beside the active one. Returns the new version."""
        await self.users.require_approver(user)
        rec = await self._pending(recommendation_id)
        if rec.type == NEW_PLAYBOOK:
            if trial:
                raise LearningError("a new playbook has no version to be tried beside")
            return await self._adopt(rec, user, reason, modified_change)
        as_trial = rec.trial if trial is None else trial
        share = self._settings.trial_share if share is None else share
        if as_trial:
            if not 0 < share < 1:
                raise LearningError(f"a trial's share must be between 0 and 1, not {share}")
            running = await self.trials.store.running(rec.playbook_id)
            if running is not None:
                raise LearningError(
                    f"{rec.playbook_id} already has a trial running ({running.id},"
                    f" {running.trial_version}); stop it or wait for its decision"
                )
        active = await self._versions.active_playbook(rec.playbook_id)
        if active is None:
            raise LearningError(f"{rec.playbook_id} has no active version")
        change = self._parse(modified_change if modified_change is not None else rec.change)
        proposed = await self._changed(active, change, recommendation_id)
        version = proposed.version
        if modified_change is None and active.version != rec.base_version and not as_trial:
            verdict = await self._still_helps(active, change, rec)
            if verdict is not None:
                raise LearningError(
                    f"{recommendation_id} was made for {rec.base_version}, and on the active"
                    f" {active.version} it {verdict}; run the analysis again"
                )
        now = self._clock.now()
        description = rec.summary if modified_change is None else f"{rec.summary} (modified)"
        stored = NewVersion(
            proposed,
            parent_version=active.version,
            created_by="workflow_learning",
            approved_by=user,
            reason=reason or rec.summary,
            recommendation_id=rec.id,
            changes=[
                {
                    "type": change.type,
                    "description": description,
                    "change": change.model_dump(mode="json"),
                    "evidence": rec.evidence.get("pattern", {}).get("description"),
                }
            ],
            at=now,
            activate=not as_trial,
        )
        decision = Decision(
            recommendation_id=rec.id,
            status=RecommendationStatus.APPROVED,
            by=user,
            reason=reason or ("approved as a trial" if as_trial else "approved"),
            at=now,
            new_version=version,
            change=change.model_dump(mode="json") if modified_change is not None else None,
        )
        trial_run = None
        entries = []
        if as_trial:
            trial_run = self.trials.new_trial(
                proposed, active.version, share=share, recommendation_id=rec.id, user=user
            )
            entries.append(self.trials.start_entry(trial_run, reason or rec.summary))
        detail = {
            "recommendation": rec.id,
            "from_version": active.version,
            "new_version": version,
            "modified": modified_change is not None,
            "trial": None if trial_run is None else trial_run.id,
            "reason": reason,
        }
        entries.append(AuditEntry(user, "recommendation.approve", rec.playbook_id, detail, now))
        try:
            await self.decisions.approve(decision, stored, trial=trial_run, entries=entries)
        except DecidedMeanwhile as exc:
            raise LearningError(str(exc)) from exc
        if trial_run is not None:
            self.trials.started(trial_run)
        else:
            await self.check_trial(rec.playbook_id)  # a trial on the replaced base ends
        return version

    async def stop_trial(self, trial_id: str, user: str, reason: str) -> dict[str, Any]:
        """A person ends a running trial; the base stays active."""
        if not reason.strip():
            raise LearningError("stopping a trial needs a reason")
        await self.users.require_approver(user)
        trial = await self.trials.store.get(trial_id)
        if trial is None:
            raise LearningError(f"no trial {trial_id}")
        if trial.status != TrialStatus.RUNNING:
            raise LearningError(f"{trial_id} is {trial.status}, not running")
        stopped = await self.trials.stop(trial, user, reason)
        if stopped is None:
            raise LearningError(f"{trial_id} was decided meanwhile")
        return stopped

    async def reject(self, recommendation_id: str, user: str, reason: str) -> None:
        if not reason.strip():
            raise LearningError("a rejection needs a reason")
        await self.users.require_approver(user)
        rec = await self._pending(recommendation_id)
        now = self._clock.now()
        decision = Decision(
            recommendation_id=rec.id,
            status=RecommendationStatus.REJECTED,
            by=user,
            reason=reason,
            at=now,
        )
        rejection = Rejected(
            playbook_id=rec.playbook_id,
            change_key=rec.change_key or change_key(rec.playbook_id, rec.change),
            recommendation_id=rec.id,
            kind="rejected",
            version=None,
            by=user,
            at=now,
            reason=reason,
            executions=(
                rec.sample_size  # a draft's evidence: the resolutions it was drafted from
                if rec.type == NEW_PLAYBOOK
                else await self.store.counted_executions(rec.playbook_id)
            ),
        )
        entry = AuditEntry(
            user,
            "recommendation.reject",
            rec.playbook_id,
            {"recommendation": rec.id, "reason": reason},
            now,
        )
        try:
            await self.decisions.reject(decision, rejection, entry=entry)
        except DecidedMeanwhile as exc:
            raise LearningError(str(exc)) from exc

    async def rollback(self, playbook_id: str, to_version: str, user: str, reason: str) -> str:
        """Re-activate an earlier version by hand; returns the version it replaced."""
        if not reason.strip():
            raise LearningError("a rollback needs a reason")
        await self.users.require_approver(user)
        if to_version == NO_BASE:  # an adopted draft back to no playbook: escalation
            try:
                return await self.drafts.retire_by_hand(playbook_id, user, reason)
            except DraftRefused as exc:
                raise LearningError(str(exc)) from exc
        current = await self._versions.active_version(playbook_id)
        if current is None:
            raise LearningError(f"no playbook {playbook_id}")
        if await self._versions.version_info(playbook_id, to_version) is None:
            raise LearningError(f"{playbook_id} has no version {to_version}")
        if to_version == current:
            raise LearningError(f"{to_version} is already the active version")
        now = self._clock.now()
        baseline = await self.verdicts.baseline(playbook_id, current)
        verdict = None
        if baseline is not None and baseline.version == to_version:
            verdict = await self.verdicts.verdict(
                playbook_id, current, baseline, every_execution=True
            )
        report = await self.verdicts.investigation(
            playbook_id, current, to_version, verdict, baseline=baseline
        )
        rollback_id = new_id("rollback", now, self._ids)
        rejections = await self._discarded(
            playbook_id, current, to_version, by=user, reason=reason, now=now
        )
        report["rejected_recommendations"] = [r.recommendation_id for r in rejections]
        rollback = Rollback(
            id=rollback_id,
            playbook_id=playbook_id,
            from_version=current,
            to_version=to_version,
            by=user,
            reason=reason,
            at=now,
            report={"manual": True, "reason": reason, **report},
            rejections=rejections,
        )
        entry = AuditEntry(
            user,
            "playbook.rollback",
            playbook_id,
            {"from": current, "to": to_version, "id": rollback_id, "reason": reason},
            now,
        )
        try:
            await self.decisions.roll_back(rollback, entry=entry)
        except DecidedMeanwhile as exc:
            raise LearningError(str(exc)) from exc
        await self.check_trial(playbook_id)  # a trial on the replaced base ends
        return current

    async def diff(self, playbook_id: str, old: str, new: str) -> str:
        texts = []
        for version in (old, new):
            playbook = await self._versions.definition(playbook_id, version)
            if playbook is None:
                raise LearningError(f"{playbook_id} has no version {version}")
            texts.append(playbook_yaml(playbook).splitlines(keepends=True))
        return "".join(
            difflib.unified_diff(texts[0], texts[1], f"{playbook_id} {old}", f"{playbook_id} {new}")
        )

    async def _discarded(
        self, playbook_id: str, failed: str, restored: str, *, by: str, reason: str, now: datetime
    ) -> list[Rejected]:
        """The changes of every version a rollback discards, remembered as rejected in
        the rollback's transaction."""
        executions = await self.store.counted_executions(playbook_id)
        return [
            Rejected(
                playbook_id=playbook_id,
                change_key=change_key(playbook_id, rec.change),  # as approved: perhaps modified
                recommendation_id=rec.id,
                kind="rolled_back",
                version=rec.new_version,
                by=by,
                at=now,
                reason=reason,
                executions=executions,
            )
            for rec in await self.verdicts.discarded(playbook_id, failed, restored)
        ]

    # --- drafts for failures no playbook covers (drafts.py, draft_decisions.py) ------------

    async def _propose_drafts(self, created: list[str]) -> list[dict[str, Any]]:
        """Store the drafts the evidence supports (ids appended to ``created``); returns
        the verdict on every uncovered failure considered."""
        proposed, considered = await self.drafter.drafts()
        for draft in proposed:
            created.append(await self.drafts.store(draft))
        return considered

    async def _adopt(
        self,
        rec: StoredRecommendation,
        user: str,
        reason: str,
        modified: Mapping[str, Any] | None,
    ) -> str:
        change = self._parse(modified if modified is not None else rec.change)
        try:
            return await self.drafts.adopt(rec, change, user, reason, modified=modified is not None)
        except DraftRefused as exc:
            raise LearningError(str(exc)) from exc

    async def _pending(self, recommendation_id: str) -> StoredRecommendation:
        rec = await self.store.get(recommendation_id)
        if rec is None:
            raise LearningError(f"no recommendation {recommendation_id}")
        if rec.status != RecommendationStatus.PENDING:
            raise LearningError(f"{recommendation_id} is {rec.status}, not pending")
        return rec

    def _parse(self, data: Mapping[str, Any]) -> Change:
        try:
            return parse_change(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'change'}: {e['msg']}"
                for e in exc.errors()
            )
            raise LearningError(f"the change is not valid: {problems}") from exc

    async def _next_version(self, playbook_id: str, change_type: str) -> str:
        versions = [v["version"] for v in await self._versions.versions_of(playbook_id)]
        return bump(max(versions, key=semver_key), change_type)

    async def _still_helps(
        self, active: Playbook, change: Change, rec: StoredRecommendation
    ) -> str | None:
        """None when the change still lowers the expected time on ``active``."""
        from graylogic_supervisor.learning.analysis import evaluate
        from graylogic_supervisor.learning.candidate import Candidate

        settings = self._settings
        data = await load_cases(self.store, active.id, self._specs, settings.replay_window)
        model = data.model(self._specs, settings.manual_resolve_s)
        verdict = evaluate(
            active,
            Candidate(change, rec.summary, rec.evidence),
            data,
            model,
            specs=self._specs,
            settings=settings,
        )
        return verdict if isinstance(verdict, str) else None
