"""Draft playbooks for failures no playbook covers: drafted from people's fixes, judged,
approved by a person, never active by themselves (learning/drafts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    Resolution,
    Resources,
)
from graylogic_supervisor.engine.plugins import action_specs
from graylogic_supervisor.learning.draft_steps import ComponentSite, DraftSite, playbook_id_for
from graylogic_supervisor.learning.service import LearningError, LearningService
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.versions import PlaybookVersions, playbook_yaml

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ERROR = "ERR-SVC-PROC-001"
COMPONENT = "nvr"
DRAFT = playbook_id_for(ERROR, COMPONENT)
SITE = DraftSite(
    targets=frozenset({"mosquitto", "nvr-recorder", "nvr"}),
    components={COMPONENT: ComponentSite("service", "nvr-recorder"), "mqtt": ComponentSite("mqtt")},
)


class Site:
    """A store with the shipped MQTT playbook, people and a failure memory."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = VirtualClock(NOW)
        self.versions = PlaybookVersions(db)
        self.memory = MemoryRepository(db)
        self.learning = LearningService(
            db,
            self.versions,
            AuditLog(db),
            action_specs(),
            settings=LearningConfig(),
            clock=self.clock,
            site=SITE,
        )
        self.fixed = 0

    async def start(self) -> Site:
        loaded = load_playbook(REPO / "playbooks" / "mqtt-recover.yaml", action_specs())
        playbook = loaded.playbook
        await self.versions.seed(playbook, playbook_yaml(playbook), "mqtt-recover.yaml", NOW)
        await self.learning.users.add("ada", "admin", "correct horse battery", NOW)
        await self.learning.users.add("vic", "viewer", "correct horse battery", NOW)
        return self

    async def fixed_by_hand(
        self,
        action: str | None,
        target: str | None = "nvr-recorder",
        *,
        by: str = "ana",
        error_id: str = ERROR,
        component: str = COMPONENT,
        times: int = 1,
    ) -> list[str]:
        ids = []
        for _ in range(times):
            self.fixed += 1
            at = NOW + timedelta(hours=self.fixed)
            failure_id = f"fail-{self.fixed:04d}"
            record = FailureRecord(
                context=FailureContext(
                    failure_id=failure_id,
                    incident_id=None,
                    detected_at=at,
                    error_id=error_id,
                    component=component,
                    severity="high",
                    message=f"{component} is not running",
                    other_health={},
                    recent_events=[],
                    resources=Resources(
                        memory_percent=40, disk_percent=30, cpu_percent=5, load_per_cpu=0.1
                    ),
                    environment=Environment(hour=at.hour, weekday=at.weekday(), uptime_s=99),
                ),
                resolution=Resolution(
                    resolved_at=at + timedelta(minutes=40),
                    fixed_by=by,
                    what_fixed_it=f"{action or 'replaced the cable'} by hand",
                    fix_action=action,
                    fix_target=target if action else None,
                ),
            )
            await self.memory.save(record, at)
            ids.append(failure_id)
        return ids

    async def drafts(self) -> list[str]:
        pending = await self.learning.store.listing("pending")
        return [r.id for r in pending if r.type == "new_playbook"]


@pytest.fixture
async def site(db: Database) -> Site:
    return await Site(db).start()


async def test_a_draft_is_built_from_the_fixes_people_recorded_most_successful_first(
    site: Site,
) -> None:
    restarts = await site.fixed_by_hand("restart_service", times=3)
    restarts += await site.fixed_by_hand("restart_service", by="ben")
    starts = await site.fixed_by_hand("start_service", by="ben")
    await site.fixed_by_hand(None)  # a cable re-seated: no action, not evidence
    report = await site.learning.analyze("test")

    [rec_id] = await site.drafts()
    assert rec_id in report["recommendations"]
    assert {"error_id": ERROR, "component": COMPONENT, "verdict": "proposed"}.items() <= (
        report["drafts"][0].items()
    )
    rec = await site.learning.store.get(rec_id)
    assert rec is not None
    assert (rec.playbook_id, rec.base_version, rec.type) == (DRAFT, "none", "new_playbook")
    assert rec.sample_size == 5 and 0 < rec.confidence < 1
    steps = rec.change["playbook"]["steps"]
    assert [(s["id"], s["action"], s.get("target")) for s in steps] == [
        ("check", "check_service", "nvr-recorder"),
        ("restart_service_nvr_recorder", "restart_service", "nvr-recorder"),
        ("verify_1", "wait_for_health", "nvr"),
        ("start_service_nvr_recorder", "start_service", "nvr-recorder"),
        ("verify_2", "wait_for_health", "nvr"),
        ("notify", "alert", None),
    ]
    by_id = {s["id"]: s for s in steps}
    assert (by_id["check"]["on_success"], by_id["check"]["on_failure"]) == (
        "done",
        "restart_service_nvr_recorder",
    )
    assert by_id["restart_service_nvr_recorder"]["on_success"] == "verify_1"
    assert by_id["restart_service_nvr_recorder"]["on_failure"] == "start_service_nvr_recorder"
    assert by_id["verify_1"]["on_failure"] == "start_service_nvr_recorder"
    assert by_id["verify_2"]["on_failure"] == "notify"
    assert by_id["notify"]["on_success"] == "escalate"
    assert rec.change["playbook"]["trigger"] == {"component": COMPONENT, "error_ids": [ERROR]}
    fixes = rec.evidence["fixes"]
    assert [(f["action"], f["resolved_by_people"]) for f in fixes] == [
        ("restart_service", 4),
        ("start_service", 1),
    ]
    assert fixes[0]["fixed_by"] == {"ana": 3, "ben": 1}
    assert sorted(fixes[0]["failures"]) == sorted(restarts)
    assert fixes[1]["failures"] == starts
    assert rec.expected_impact["resolution_time_s"]["change"] < 0
    # never active by itself
    assert await site.versions.active_version(DRAFT) is None


async def test_fewer_resolutions_than_the_minimum_draft_nothing(site: Site) -> None:
    await site.fixed_by_hand("restart_service", times=2)
    await site.fixed_by_hand(None, times=5)  # manual fixes do not count
    report = await site.learning.analyze("test")
    assert await site.drafts() == []
    [verdict] = report["drafts"]
    assert "2 resolutions by people" in verdict["verdict"] and "below 3" in verdict["verdict"]


async def test_a_covered_error_id_is_never_drafted(site: Site) -> None:
    await site.fixed_by_hand(
        "restart_service", "mosquitto", error_id="ERR-INFRA-MQTT-001", component="mqtt", times=6
    )
    report = await site.learning.analyze("test")
    assert await site.drafts() == []
    assert report["drafts"] == []


async def test_fixes_that_cannot_run_here_are_left_out_and_with_none_left_nothing_is_drafted(
    site: Site,
) -> None:
    await site.fixed_by_hand("restart_service", "old-recorder", times=3)  # not configured
    await site.fixed_by_hand("reflash_firmware", times=2)  # no such action any more
    report = await site.learning.analyze("test")
    assert await site.drafts() == []
    verdict = report["drafts"][0]["verdict"]
    assert "no recorded fix can run here" in verdict
    assert "'old-recorder' is not configured" in verdict and "'reflash_firmware'" in verdict

    await site.fixed_by_hand("start_service", times=3)
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    rec = await site.learning.store.get(rec_id)
    assert rec is not None
    actions = [s["action"] for s in rec.change["playbook"]["steps"]]
    assert "restart_service" not in actions and "start_service" in actions
    assert {lo["action"] for lo in rec.evidence["left_out"]} == {
        "restart_service",
        "reflash_firmware",
    }


async def test_a_pending_draft_is_not_proposed_twice_and_a_rejected_one_waits_for_evidence(
    site: Site,
) -> None:
    await site.fixed_by_hand("restart_service", times=3)
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    again = await site.learning.analyze("test")
    assert await site.drafts() == [rec_id]
    assert again["drafts"][0]["verdict"] == "a draft is pending already"

    await site.learning.reject(rec_id, "ada", "we replace that recorder next month")
    await site.fixed_by_hand("restart_service", times=3)  # 6: not yet 3 x 3
    held = await site.learning.analyze("test")
    assert await site.drafts() == []
    assert "rejected by ada" in held["drafts"][0]["verdict"]
    await site.fixed_by_hand("restart_service", times=3)  # 9
    await site.learning.analyze("test")
    [again_id] = await site.drafts()
    rec = await site.learning.store.get(again_id)
    assert rec is not None
    earlier = rec.evidence["earlier_rejection"]
    assert (earlier["recommendation_id"], earlier["by"], earlier["executions"]) == (
        rec_id,
        "ada",
        3,
    )
    assert earlier["executions_now"] == 9


async def test_approving_a_draft_makes_the_first_version_of_a_new_active_playbook(
    site: Site,
) -> None:
    await site.fixed_by_hand("restart_service", times=3)
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    with pytest.raises(LearningError, match="no version to be tried beside"):
        await site.learning.approve(rec_id, "ada", "try it", trial=True)
    with pytest.raises(Exception, match="vic"):
        await site.learning.approve(rec_id, "vic", "a viewer may not")
    assert await site.versions.active_version(DRAFT) is None

    version = await site.learning.approve(rec_id, "ada", "the recorder hangs weekly")
    assert version == "1.0.0"
    assert await site.versions.active_version(DRAFT) == "1.0.0"
    info = await site.versions.version_info(DRAFT, "1.0.0")
    assert info is not None
    assert (info["parent_version"], info["approved_by"], info["recommendation_id"]) == (
        None,
        "ada",
        rec_id,
    )
    active = {p.id: p for p in await site.versions.active_playbooks()}
    assert active[DRAFT].trigger.error_ids == [ERROR]  # the supervisor selects it now
    audit = await site.db.fetchall(
        "SELECT actor, action, subject FROM audit_log WHERE action = 'recommendation.approve'"
    )
    assert [tuple(row) for row in audit] == [("ada", "recommendation.approve", DRAFT)]
    # covered now: never drafted again
    await site.fixed_by_hand("restart_service", times=5)
    report = await site.learning.analyze("test")
    assert await site.drafts() == [] and report["drafts"] == []


async def test_a_modified_draft_is_checked_like_a_file(site: Site) -> None:
    await site.fixed_by_hand("restart_service", times=3)
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    rec = await site.learning.store.get(rec_id)
    assert rec is not None
    broken = {**rec.change["playbook"]}
    broken["steps"] = [{**s} for s in broken["steps"]]
    broken["steps"][1]["action"] = "restart_servcie"
    with pytest.raises(LearningError, match="restart_servcie"):
        await site.learning.approve(
            rec_id, "ada", "typo", {"type": "new_playbook", "playbook": broken}
        )
    assert await site.versions.active_version(DRAFT) is None


async def test_a_learned_pattern_alone_is_enough_evidence(site: Site) -> None:
    members = await site.fixed_by_hand("restart_service", times=1)
    await site.memory.save_pattern(
        "pat-nvr-1",
        error_id=ERROR,
        component=COMPONENT,
        tokens=["nvr", "running"],
        fix_action="start_service",
        fix_target="nvr-recorder",
        members=members,
        now=NOW,
    )
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    rec = await site.learning.store.get(rec_id)
    assert rec is not None
    fixes = {f["action"]: f for f in rec.evidence["fixes"]}
    assert fixes["start_service"]["memory_patterns"] == ["pat-nvr-1"]
    assert fixes["restart_service"]["resolved_by_people"] == 1


async def test_a_person_retires_an_adopted_draft_back_to_escalation(site: Site) -> None:
    await site.fixed_by_hand("restart_service", times=3)
    await site.learning.analyze("test")
    [rec_id] = await site.drafts()
    await site.learning.approve(rec_id, "ada", "try it")
    with pytest.raises(LearningError, match="only a drafted playbook's first version"):
        await site.learning.rollback("PLAY-MQTT-RECOVER-001", "none", "ada", "no")
    replaced = await site.learning.rollback(DRAFT, "none", "ada", "the vendor fixed the leak")
    assert replaced == "1.0.0"
    assert await site.versions.active_version(DRAFT) is None  # escalated at once again
    [rollback] = await site.learning.store.rollbacks(DRAFT)
    assert (rollback["to_version"], rollback["by"]) == ("none", "ada")
    report = await site.learning.analyze("test")
    assert await site.drafts() == []
    assert "approved before" in report["drafts"][0]["verdict"]
