"""Learned fixes wait for evidence (issue 17, BR-WF-LEARNING-001): a history of alike
failures before a learned fix runs ahead of the playbook, do no harm, and its own record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graylogic_supervisor.config import MemoryConfig, load_config
from graylogic_supervisor.errors import ConfigError
from graylogic_supervisor.memory.learned import learned_playbook_id
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.memory.standing import standing
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from tests.clocks import ManualClock
from tests.memory.test_service import context, remember_fixed

PLAYBOOK = "PLAY-SVC-RECOVER-001"
FIX = learned_playbook_id("worker", "restart_service", "worker")


@dataclass
class Site:
    db: Database
    repository: MemoryRepository
    clock: ManualClock

    def memory(self, settings: MemoryConfig) -> FailureMemory:
        return FailureMemory(self.repository, settings, self.clock)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    clock = ManualClock()
    clock.advance(86400 * 30)
    async with Database(tmp_path / "s.db") as db:
        yield Site(db, MemoryRepository(db), clock)


def test_the_default_history_is_ten_and_the_config_can_change_it(tmp_path: Path) -> None:
    assert MemoryConfig().learned_fix_min_history == 10
    assert MemoryConfig().pattern_min_members == 3  # patterns are still learned at 3
    path = tmp_path / "supervisor.yaml"
    path.write_text("memory:\n  learned_fix_min_history: 25\n")
    assert load_config(path).memory.learned_fix_min_history == 25
    path.write_text("memory:\n  learned_fix_min_history: 0\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert "memory.learned_fix_min_history" in message
    assert ":2" in message  # the line it is on


async def test_nine_alike_failures_are_not_enough_history_the_playbook_runs(site: Site) -> None:
    memory = site.memory(MemoryConfig())
    await remember_fixed(memory, range(9))
    [pattern] = await site.repository.patterns()  # learned, and shown, at 3 already
    assert pattern.occurrences == 9
    decision = await memory.decide(context(20), PLAYBOOK)
    best = decision.best
    assert best is not None and best.source == "pattern"
    assert best.history == 9
    assert best.confidence == pytest.approx(10 / 11)  # confident: only the history is short
    assert not decision.use_learned_fix
    assert "not enough history (9 of 10)" in decision.why()
    record = decision.record()
    assert record["chosen"] == PLAYBOOK
    assert record["set_aside"] == "restart_service worker (pattern)"
    assert (record["evidence"]["history"], record["min_history"]) == (9, 10)


async def test_the_tenth_alike_failure_lets_the_learned_fix_run_first(site: Site) -> None:
    memory = site.memory(MemoryConfig())
    await remember_fixed(memory, range(10))
    decision = await memory.decide(context(20), PLAYBOOK)
    assert decision.use_learned_fix
    assert decision.best is not None and decision.best.history == 10
    assert "history 10 of 10 alike failures" in decision.why()
    assert decision.record()["chosen"] == "restart_service worker (pattern)"


async def test_merged_failures_count_what_they_stand_for(site: Site) -> None:
    """A record consolidation merged counts every failure it absorbed."""
    memory = site.memory(MemoryConfig())
    await remember_fixed(memory, range(3))
    record = await site.repository.get("fail-0")
    assert record is not None
    await site.repository.save(record.model_copy(update={"count": 8}), site.clock.now())
    await memory.load()
    [pattern] = await site.repository.patterns()
    assert pattern.occurrences == 10
    assert (await memory.decide(context(20), PLAYBOOK)).use_learned_fix


async def test_similar_failures_without_a_pattern_wait_for_the_history_too(site: Site) -> None:
    """Fixes people recorded, fewer than a pattern needs: the similar-failures evidence."""
    memory = site.memory(MemoryConfig(pattern_min_members=20, learned_fix_min_history=5))
    await remember_fixed(memory, range(4), who="alice")
    short = await memory.decide(context(20), PLAYBOOK)
    assert short.best is not None and short.best.source == "similar failures"
    assert short.best.history == 4
    assert not short.use_learned_fix
    assert "not enough history (4 of 5)" in short.why()
    await remember_fixed(memory, range(4, 5), who="alice")
    enough = await memory.decide(context(20), PLAYBOOK)
    assert enough.best is not None and enough.best.history == 5
    assert enough.use_learned_fix


async def test_a_history_above_ten_is_looked_for_among_enough_similar_failures(
    site: Site,
) -> None:
    memory = site.memory(MemoryConfig(pattern_min_members=50, learned_fix_min_history=15))
    await remember_fixed(memory, range(15), who="alice")
    decision = await memory.decide(context(20), PLAYBOOK)
    assert decision.best is not None and decision.best.history == 15
    assert decision.use_learned_fix


async def test_its_own_record_counts_every_run_first_and_what_it_resolved(site: Site) -> None:
    memory = site.memory(MemoryConfig())
    await remember_fixed(memory, range(10))
    decision = await memory.decide(context(20), PLAYBOOK)
    assert decision.best is not None and decision.best.pattern_id is not None
    assert await site.repository.learned_fix_use(FIX) is None  # never ran yet
    await memory.learned_fix_outcome(FIX, decision.best.pattern_id, resolved=True)
    site.clock.advance(60)
    await memory.learned_fix_outcome(FIX, decision.best.pattern_id, resolved=False)
    use = await site.repository.learned_fix_use(FIX)
    assert use is not None
    assert (use.ran_first, use.resolved, use.failed_in_a_row) == (2, 1, 1)
    assert use.success_rate == pytest.approx(0.5)
    assert use.last_used == site.clock.now()
    [pattern] = await site.repository.patterns()
    assert (pattern.times_matched, pattern.times_resolved) == (2, 1)
    assert pattern.last_matched == site.clock.now()
    shown = standing(pattern, await site.repository.learned_fix_uses(), MemoryConfig())
    assert (shown.history, shown.min_history, shown.ran_first, shown.resolved) == (10, 10, 2, 1)
    assert shown.state == "may run first"


async def test_a_fix_that_failed_its_last_runs_never_runs_first(site: Site) -> None:
    """Do no harm: thirty alike failures keep the confidence above 0.8 after five failed
    runs (31 / 37), so only the rule on its last runs keeps it from running first."""
    settings = MemoryConfig(review_min_matches=5)
    memory = site.memory(settings)
    await remember_fixed(memory, range(30))
    first = await memory.decide(context(40), PLAYBOOK)
    assert first.use_learned_fix and first.best is not None
    pattern_id = first.best.pattern_id
    for _ in range(4):
        await memory.learned_fix_outcome(FIX, pattern_id, resolved=False)
    assert (await memory.decide(context(40), PLAYBOOK)).use_learned_fix  # 4 of 5: still
    await memory.learned_fix_outcome(FIX, pattern_id, resolved=False)
    held = await memory.decide(context(40), PLAYBOOK)
    assert not held.use_learned_fix
    assert held.best is None  # neither the pattern nor the similar failures choose it
    assert held.held_back == (
        "restart_service worker failed its last 5 runs ahead of the playbook"
        " (memory.review_min_matches 5)",
    )
    assert held.why().startswith("the remembered fix is held back: restart_service worker")
    assert held.record()["chosen"] == PLAYBOOK
    [pattern] = await site.repository.patterns()
    shown = standing(pattern, await site.repository.learned_fix_uses(), settings)
    assert shown.state == "held back"
    assert pattern.times_matched == 5
    without_rule = (pattern.occurrences + 1) / (pattern.occurrences + pattern.times_matched + 2)
    assert without_rule >= settings.confidence_threshold  # the confidence alone would run it


async def test_a_pattern_below_the_history_is_shown_as_waiting(site: Site) -> None:
    memory = site.memory(MemoryConfig())
    await remember_fixed(memory, range(7))
    [pattern] = await site.repository.patterns()
    shown = standing(pattern, {}, MemoryConfig())
    assert (shown.state, shown.history) == ("waits for history", 7)
    assert shown.detail == "not enough history (7 of 10): the playbook runs first"
