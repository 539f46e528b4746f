"""The failure memory as the supervisor asks it: decisions with honest confidence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.domain.memory import (
    Attempt,
    Environment,
    FailureContext,
    Resolution,
    Resources,
)
from graylogic_supervisor.memory.learned import learned_playbook_id
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from tests.clocks import ManualClock


def context(
    n: int, message: str = "service worker killed by SIGKILL", **kw: object
) -> FailureContext:
    values: dict[str, object] = {
        "failure_id": f"fail-{n}",
        "incident_id": f"inc-{n}",
        "detected_at": datetime(2026, 11, 26, 12, tzinfo=UTC) + timedelta(minutes=n),
        "error_id": "ERR-SVC-PROC-001",
        "component": "worker",
        "severity": "high",
        "message": f"Supervised service not running: {message}",
        "other_health": {"mqtt": "healthy"},
        "recent_events": [],
        "resources": Resources(memory_percent=30, disk_percent=40, cpu_percent=5, load_per_cpu=0.2),
        "environment": Environment(hour=12, weekday=3, uptime_s=86400 * 3),
        **kw,
    }
    return FailureContext.model_validate(values)


def fixed_by_restart(who: str = "supervisor") -> Resolution:
    return Resolution(
        resolved_at=datetime(2026, 11, 26, 13, tzinfo=UTC),
        fixed_by=who,
        what_fixed_it="restarted",
        fix_action="restart_service",
        fix_target="worker",
    )


# These tests exercise the confidence arithmetic on three failures: the history a
# learned fix needs before it runs first is lowered to 3 here, and has its own tests
# (tests/memory/test_learned_fix_evidence.py) with the default of 10.
MECHANISM = MemoryConfig(learned_fix_min_history=3)


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[FailureMemory]:
    clock = ManualClock()
    clock.advance(86400 * 30)
    async with Database(tmp_path / "s.db") as db:
        yield FailureMemory(MemoryRepository(db), MECHANISM, clock)


async def remember_fixed(memory: FailureMemory, numbers: range, who: str = "supervisor") -> None:
    for n in numbers:
        await memory.capture(context(n))
        assert await memory.resolve(f"fail-{n}", fixed_by_restart(who))
        await memory.learn_around(f"fail-{n}")


async def test_three_alike_failures_fixed_alike_make_a_fix_worth_trying_first(
    memory: FailureMemory,
) -> None:
    await remember_fixed(memory, range(3))
    await memory.capture(context(9, "service worker killed by SIGKILL (again)"))
    decision = await memory.decide(context(9), "PLAY-SVC-RECOVER-001")
    assert decision.use_learned_fix
    best = decision.best
    assert best is not None
    assert (best.fix_action, best.fix_target, best.source) == (
        "restart_service",
        "worker",
        "pattern",
    )
    assert (best.successes, best.trials) == (3, 3)
    assert best.confidence == pytest.approx(0.8)  # fit 1.0 x (3 + 1) / (3 + 2), not clamped
    record = decision.record()
    assert record["chosen"] == "restart_service worker (pattern)"
    assert record["set_aside"] == "PLAY-SVC-RECOVER-001"
    assert record["evidence"]["sample_size"] == 3
    assert [m["failure_id"] for m in record["matched"]] == ["fail-2", "fail-1", "fail-0"]
    assert all(m["score"] > 0.9 for m in record["matched"])


async def test_two_are_not_enough_and_the_playbook_runs(memory: FailureMemory) -> None:
    await remember_fixed(memory, range(2))
    decision = await memory.decide(context(9), "PLAY-SVC-RECOVER-001")
    assert not decision.use_learned_fix
    assert decision.best is not None and decision.best.source == "similar failures"
    assert decision.best.confidence == pytest.approx(
        decision.best.fit * 3 / 4
    )  # two of two similar, Laplace
    assert decision.record()["chosen"] == "PLAY-SVC-RECOVER-001"
    assert "set aside" in decision.why()


async def test_a_learned_fix_that_fails_loses_the_confidence_it_had(memory: FailureMemory) -> None:
    await remember_fixed(memory, range(3))
    decision = await memory.decide(context(9), "PLAY-SVC-RECOVER-001")
    assert decision.best is not None and decision.best.pattern_id is not None
    # It was tried on fail-9 and did not work: the pattern and the memory both know.
    await memory.capture(context(9))
    await memory.learned_fix_outcome(
        learned_playbook_id("worker", "restart_service", "worker"),
        decision.best.pattern_id,
        resolved=False,
    )
    await memory.note_attempt(
        "fail-9",
        Attempt(
            execution_id="exec-9",
            kind="learned_fix",
            playbook_id=learned_playbook_id("worker", "restart_service", "worker"),
            status="escalated",
        ),
    )
    again = await memory.decide(context(10), "PLAY-SVC-RECOVER-001")
    assert again.best is not None
    assert again.best.source == "pattern"
    assert again.best.confidence == pytest.approx(4 / 6)  # (3 + 0 + 1) / (3 + 1 + 2)
    assert not again.use_learned_fix


async def test_an_unlike_failure_gets_no_remembered_fix(memory: FailureMemory) -> None:
    await remember_fixed(memory, range(3))
    other = context(
        9, "disk quota exceeded", component="bridge-knx", error_id="ERR-BRIDGE-HEARTBEAT-001"
    )
    decision = await memory.decide(other, "PLAY-BRIDGE-RECOVER-001")
    assert decision.best is None
    assert decision.why() == "no remembered fix for a failure like this one: the playbook runs"


async def test_fixes_people_recorded_teach_it_too(memory: FailureMemory) -> None:
    await remember_fixed(memory, range(3), who="alice")
    decision = await memory.decide(context(9), None)
    assert decision.use_learned_fix
    assert decision.best is not None and decision.best.fix_action == "restart_service"


async def test_what_another_process_wrote_is_taken_in_on_refresh(
    memory: FailureMemory, tmp_path: Path
) -> None:
    await memory.capture(context(1))
    await memory.load()
    async with Database(tmp_path / "s.db") as other:  # the CLI, recording a technician's fix
        later = datetime(2027, 1, 1, tzinfo=UTC)  # after the memory's own clock
        await MemoryRepository(other).resolve("fail-1", fixed_by_restart("bob"), later)
    assert await memory.refresh() == 1
    [match] = memory.similar(context(2))
    assert match.effectiveness == pytest.approx(0.7)
