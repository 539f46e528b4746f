"""The learning loop's public functions: what the daemon, the CLI, the simulator
and (later) the admin page call. Everything that changes a playbook goes
through here, checks the user's role, and lands in the audit log."""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.engine.action import ActionSpec
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.analysis import (
    AnalysisSettings,
    Candidate,
    PlaybookAnalysis,
    analyse_playbook,
    evaluate,
)
from graylogic_supervisor.learning.cases import load_cases
from graylogic_supervisor.learning.changes import (
    Change,
    ChangeError,
    apply_change,
    bump,
    parse_change,
)
from graylogic_supervisor.learning.metrics import LearningMetrics
from graylogic_supervisor.learning.rollback import rollback_test
from graylogic_supervisor.learning.safety import verification_guard
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.learning import LearningRepository, StoredRecommendation
from graylogic_supervisor.store.users import UserRepository
from graylogic_supervisor.store.versions import PlaybookVersions, playbook_yaml, semver_key

logger = logging.getLogger(__name__)

Alert = Callable[[str, str, dict[str, str]], None]  # severity, message, context


class LearningError(SupervisorError):
    """A recommendation that cannot be decided as asked (gone, stale, invalid)."""


@dataclass(frozen=True)
class LearningSettings:
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    expiry_days: float = 7.0


def learning_settings(config: LearningConfig) -> LearningSettings:
    return LearningSettings(
        AnalysisSettings(
            min_executions=config.min_executions,
            confidence_threshold=config.confidence_threshold,
            replay_window=config.replay_window,
            default_manual_s=config.manual_resolve_s,
            min_improvement=config.min_improvement,
        ),
        expiry_days=config.recommendation_expiry_days,
    )


class LearningService:
    def __init__(
        self,
        db: Database,
        versions: PlaybookVersions,
        audit: AuditLog,
        specs: Mapping[str, ActionSpec],
        settings: LearningSettings,
        clock: Clock,
        alert: Alert | None = None,
        ids: random.Random | None = None,
    ) -> None:
        """``ids`` is a simulation's seeded source of ids (None: the system's)."""
        self._db = db
        self._versions = versions
        self._audit = audit
        self._specs = specs
        self._settings = settings
        self._clock = clock
        self._alert = alert
        self._ids = ids
        self._first_versions: set[tuple[str, str]] = set()
        self.metrics = LearningMetrics(db)
        self.store = LearningRepository(db)
        self.users = UserRepository(db)

    @property
    def settings(self) -> LearningSettings:
        return self._settings

    @property
    def specs(self) -> Mapping[str, ActionSpec]:
        """The actions a changed playbook may use (and whether each is a fix)."""
        return self._specs

    # --- after each execution ------------------------------------------------------------

    async def after_execution(self, execution_id: str) -> dict[str, Any] | None:
        """Count a finished execution; returns the rollback it caused, if any."""
        trace = await self.metrics.apply(execution_id)
        if trace is None:
            return None
        return await self.check_rollback(trace.playbook_id, trace.version)

    async def catch_up(self) -> int:
        """Count what finished while nobody was counting (start-up, after a crash)."""
        total = 0
        while traces := await self.metrics.apply_pending():
            total += len(traces)
            for version in {(t.playbook_id, t.version) for t in traces}:
                await self.check_rollback(*version)
        return total

    async def check_rollback(self, playbook_id: str, version: str) -> dict[str, Any] | None:
        if (playbook_id, version) in self._first_versions:
            return None
        info = await self._versions.version_info(playbook_id, version)
        if info is None or not info["active"] or info["status"] != "ok":
            return None
        parent = info["parent_version"]
        if parent is None:
            self._first_versions.add((playbook_id, version))  # never has a parent to go back to
            return None
        counts = await self.metrics.counts(playbook_id, (version, parent))
        if version not in counts or parent not in counts:
            return None
        test = rollback_test(
            counts[parent][0],
            counts[parent][1],
            counts[version][0],
            counts[version][1],
            self._settings.analysis.min_executions,
        )
        if test is None or not test.rollback:
            return None
        report = {
            "playbook_id": playbook_id,
            "failed_version": version,
            "restored_version": parent,
            "statistics": test.as_dict(),
            "changes": (info["changes"] or {}).get("changes", []),
            "recommendation_id": info["recommendation_id"],
            "approved_by": info["approved_by"],
            "steps": {
                v: [s.as_dict() for s in await self.metrics.steps(playbook_id, v)]
                for v in (parent, version)
            },
            "unresolved_executions": await self.store.unresolved_executions(
                playbook_id, version, 20
            ),
        }
        now = self._clock.now()
        await self._versions.activate(playbook_id, parent, failed=version)
        rollback_id = new_id("rollback", now, self._ids)
        reason = f"automatic rollback: {test.describe()}"
        await self.store.record_rollback(
            rollback_id, playbook_id, version, parent, now, "supervisor", reason, report
        )
        await self._audit.append(
            "supervisor",
            "playbook.rollback",
            playbook_id,
            {"from": version, "to": parent, "id": rollback_id, "reason": reason},
            now,
        )
        logger.warning("%s %s rolled back to %s: %s", playbook_id, version, parent, reason)
        if self._alert is not None:
            self._alert(
                "warning",
                f"{playbook_id} {version} did worse than {parent} and was rolled back",
                {"playbook": playbook_id, "rollback": rollback_id},
            )
        return {"id": rollback_id, "to_version": parent, "report": report}

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
        analysis_id = new_id("analysis", started, self._ids)
        reports, created = [], []
        for playbook in await self._versions.active_playbooks():
            if playbook_ids is not None and playbook.id not in playbook_ids:
                continue
            result = await self.analyse(playbook)
            created += await self._store_recommendations(result, analysis_id)
            reports.append(result.report())
        finished = self._clock.now()
        report = {
            "id": analysis_id,
            "trigger": trigger,
            "started_at": isoformat(started),
            "finished_at": isoformat(finished),
            "archived": archived,
            "recommendations": created,
            "playbooks": reports,
        }
        await self.store.record_analysis(
            analysis_id, started, finished, trigger, len(created), report
        )
        return report

    async def analyse(self, playbook: Playbook) -> PlaybookAnalysis:
        """Analyse one playbook's active version; the period it judges ends now."""
        settings = self._settings.analysis
        now = self._clock.now()
        previous = await self.store.last_analysed_at(playbook.id)
        fresh = await self.store.counted_since(playbook.id, playbook.version, previous or "")
        data = await load_cases(self._db, playbook.id, self._specs, settings.replay_window)
        result = analyse_playbook(
            playbook,
            await self.metrics.version(playbook.id, playbook.version),
            fresh,
            await self.metrics.steps(playbook.id, playbook.version),
            await self.metrics.pairs(playbook.id, playbook.version),
            data,
            self._specs,
            settings,
        )
        await self.store.set_analysed_at(playbook.id, now)
        return result

    async def _store_recommendations(self, result: PlaybookAnalysis, analysis_id: str) -> list[str]:
        now = self._clock.now()
        pending = await self.store.pending_fingerprints(result.playbook_id)
        fresh = {rec.fingerprint for rec in result.recommendations}
        stale = [rec_id for fp, rec_id in pending.items() if fp not in fresh]
        await self.store.supersede(stale, now, f"analysis {analysis_id} no longer recommends it")
        created = []
        for rec in result.recommendations:
            if rec.fingerprint in pending:
                continue
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
                    "evidence": rec.evidence,
                    "expected_impact": rec.expected_impact,
                    "fingerprint": rec.fingerprint,
                    "analysis_id": None,
                    "status": "pending",
                    "generated_at": isoformat(now),
                    "expires_at": isoformat(now + timedelta(days=self._settings.expiry_days)),
                }
            )
            created.append(rec_id)
        return created

    # --- decisions -------------------------------------------------------------------------

    async def approve(
        self,
        recommendation_id: str,
        user: str,
        reason: str,
        modified_change: Mapping[str, Any] | None = None,
    ) -> str:
        """Make the recommended (or modified) change a new active version; returns it."""
        await self.users.require_approver(user)
        rec = await self._pending(recommendation_id)
        active = await self._versions.active_playbook(rec.playbook_id)
        if active is None:
            raise LearningError(f"{rec.playbook_id} has no active version")
        change = self._parse(modified_change if modified_change is not None else rec.change)
        version = await self._next_version(rec.playbook_id, change.type)
        try:
            proposed = apply_change(active, change, version, self._specs)
        except ChangeError as exc:
            raise LearningError(
                f"{recommendation_id} does not apply to the active {active.version}: {exc}"
            ) from exc
        data = await load_cases(
            self._db, active.id, self._specs, self._settings.analysis.replay_window
        )
        unsafe = verification_guard(active, proposed, self._specs, data.success_means_health)
        if unsafe is not None:  # a modified change too: no approval drops a last verification
            raise LearningError(f"{recommendation_id} {unsafe}")
        if modified_change is None and active.version != rec.base_version:
            verdict = await self._still_helps(active, change, rec)
            if verdict is not None:
                raise LearningError(
                    f"{recommendation_id} was made for {rec.base_version}, and on the active"
                    f" {active.version} it {verdict}; run the analysis again"
                )
        now = self._clock.now()
        description = rec.summary if modified_change is None else f"{rec.summary} (modified)"
        await self._versions.add_version(
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
            now=now,
        )
        decided = await self.store.decide(
            rec.id,
            "approved",
            user,
            reason or "approved",
            now,
            version,
            change.model_dump(mode="json") if modified_change is not None else None,
        )
        if not decided:  # decided by someone else in the meantime: undo ours
            await self._versions.activate(rec.playbook_id, active.version, failed=version)
            raise LearningError(f"{recommendation_id} was decided by someone else meanwhile")
        await self._audit.append(
            user,
            "recommendation.approve",
            rec.playbook_id,
            {
                "recommendation": rec.id,
                "from_version": active.version,
                "new_version": version,
                "modified": modified_change is not None,
                "reason": reason,
            },
            now,
        )
        return version

    async def reject(self, recommendation_id: str, user: str, reason: str) -> None:
        if not reason.strip():
            raise LearningError("a rejection needs a reason")
        await self.users.require_approver(user)
        rec = await self._pending(recommendation_id)
        now = self._clock.now()
        if not await self.store.decide(rec.id, "rejected", user, reason, now):
            raise LearningError(f"{recommendation_id} was decided by someone else meanwhile")
        await self._audit.append(
            user,
            "recommendation.reject",
            rec.playbook_id,
            {"recommendation": rec.id, "reason": reason},
            now,
        )

    async def rollback(self, playbook_id: str, to_version: str, user: str, reason: str) -> str:
        """Re-activate an earlier version by hand; returns the version it replaced."""
        if not reason.strip():
            raise LearningError("a rollback needs a reason")
        await self.users.require_approver(user)
        current = await self._versions.active_version(playbook_id)
        if current is None:
            raise LearningError(f"no playbook {playbook_id}")
        if await self._versions.version_info(playbook_id, to_version) is None:
            raise LearningError(f"{playbook_id} has no version {to_version}")
        if to_version == current:
            raise LearningError(f"{to_version} is already the active version")
        now = self._clock.now()
        await self._versions.activate(playbook_id, to_version)
        rollback_id = new_id("rollback", now, self._ids)
        await self.store.record_rollback(
            rollback_id,
            playbook_id,
            current,
            to_version,
            now,
            user,
            reason,
            {"manual": True, "reason": reason},
        )
        await self._audit.append(
            user,
            "playbook.rollback",
            playbook_id,
            {"from": current, "to": to_version, "id": rollback_id, "reason": reason},
            now,
        )
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

    async def _pending(self, recommendation_id: str) -> StoredRecommendation:
        rec = await self.store.get(recommendation_id)
        if rec is None:
            raise LearningError(f"no recommendation {recommendation_id}")
        if rec.status != "pending":
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
        settings = self._settings.analysis
        data = await load_cases(self._db, active.id, self._specs, settings.replay_window)
        model = data.model(self._specs, settings.default_manual_s)
        verdict = evaluate(
            active, Candidate(change, rec.summary, rec.evidence), data, model, self._specs, settings
        )
        return verdict if isinstance(verdict, str) else None
