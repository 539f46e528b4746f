"""The learning loop's decisions are each one transaction with their audit entry: a
failure in the middle leaves nothing half-done, and of two at once exactly one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.learning.service import LearningError, LearningService
from graylogic_supervisor.sim.simulator import Simulation
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.learning.test_service import PLAYBOOK, analysed, pending_of
from tests.learning.test_trials import CHEAP_FIRST, cache_site, propose
from tests.learning.test_trials import PLAYBOOK as CACHE
from tests.store.test_use_case_atomicity import accept_audit, audited, refuse_audit


async def decided(sim: Simulation, rec_id: str) -> tuple[str, str | None]:
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None
    return rec.status, rec.new_version


async def test_an_approval_whose_audit_entry_fails_leaves_no_version_and_a_pending_rec(
    db: Database,
) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    before = await audited(db)
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await sim.learning.approve(rec_id, "ada", "firewall")
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    assert await sim.versions.version_info(PLAYBOOK, "1.1.0") is None
    assert await decided(sim, rec_id) == ("pending", None)
    assert await audited(db) == before
    await accept_audit(db)
    assert await sim.learning.approve(rec_id, "ada", "firewall") == "1.1.0"
    assert await decided(sim, rec_id) == ("approved", "1.1.0")


async def test_a_rejection_whose_audit_entry_fails_is_not_kept(db: Database) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await sim.learning.reject(rec_id, "ada", "not now")
    assert await decided(sim, rec_id) == ("pending", None)
    assert await sim.learning.rejections.latest(PLAYBOOK) == {}


async def test_a_rollback_whose_audit_entry_fails_leaves_the_version_active(
    db: Database,
) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    await sim.learning.approve(rec_id, "ada", "firewall")
    before = await audited(db)
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await sim.learning.rollback(PLAYBOOK, "1.0.0", "olu", "night shift prefers it")
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"
    assert await sim.learning.store.rollbacks(PLAYBOOK) == []
    assert await sim.learning.rejections.latest(PLAYBOOK) == {}
    assert await audited(db) == before
    await accept_audit(db)
    assert await sim.learning.rollback(PLAYBOOK, "1.0.0", "olu", "night shift") == "1.1.0"
    assert await sim.versions.active_version(PLAYBOOK) == "1.0.0"
    assert len(await sim.learning.rejections.latest(PLAYBOOK)) == 1


async def test_of_two_approvals_at_once_exactly_one_wins_with_one_audit_entry(
    db: Database,
) -> None:
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    results = await asyncio.gather(
        sim.learning.approve(rec_id, "ada", "first"),
        sim.learning.approve(rec_id, "olu", "second"),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, str)]
    lost = [r for r in results if isinstance(r, LearningError)]
    assert won == ["1.1.0"] and len(lost) == 1, results
    assert "meanwhile" in str(lost[0])
    assert (await audited(db)).count("recommendation.approve") == 1
    assert [v["version"] for v in await sim.versions.versions_of(PLAYBOOK)] == ["1.0.0", "1.1.0"]
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"


async def test_of_two_processes_approving_at_once_exactly_one_wins(
    db: Database, tmp_path: Path
) -> None:
    """The daemon and a CLI: two connections to one store file."""
    sim = await analysed(db)
    rec_id = await pending_of(sim.learning, "add_step")
    async with Database(tmp_path / "s.db") as other_db:
        other = LearningService(
            other_db,
            PlaybookVersions(other_db),
            AuditLog(other_db),
            sim.learning.specs,
            settings=sim.learning.settings,
            clock=sim.clock,
        )
        results = await asyncio.gather(
            sim.learning.approve(rec_id, "ada", "daemon side"),
            other.approve(rec_id, "olu", "cli side"),
            return_exceptions=True,
        )
    won = [r for r in results if isinstance(r, str)]
    lost = [r for r in results if isinstance(r, LearningError)]
    assert won == ["1.1.0"] and len(lost) == 1, results
    entries = await AuditLog(db).entries(action="recommendation.approve")
    assert len(entries) == 1
    rec = await sim.learning.store.get(rec_id)
    assert rec is not None and rec.decided_by == entries[0]["actor"]
    assert await sim.versions.active_version(PLAYBOOK) == "1.1.0"
    assert (await AuditLog(db).verify()).ok


async def test_a_trial_started_or_stopped_without_its_audit_entry_leaves_nothing(
    db: Database, tmp_path: Path
) -> None:
    sim = await cache_site(db, tmp_path, incidents=0)
    rec_id = await propose(sim, CHEAP_FIRST)
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await sim.learning.approve(rec_id, "ada", "try it")
    assert await sim.learning.trials.store.listing() == []
    assert await sim.versions.version_info(CACHE, "1.1.0") is None
    await accept_audit(db)
    await sim.learning.approve(rec_id, "ada", "try it")
    [trial] = await sim.learning.trials.store.listing("running")
    assert await audited(db) == ["recommendation.approve", "trial.start"]
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await sim.learning.stop_trial(trial.id, "ada", "the vendor fixed the cache")
    assert [t.status for t in await sim.learning.trials.store.listing()] == ["running"]
    assert await sim.learning.rejections.latest(CACHE) == {}
    await accept_audit(db)
    await sim.learning.stop_trial(trial.id, "ada", "the vendor fixed the cache")
    assert len(await sim.learning.rejections.latest(CACHE)) == 1
