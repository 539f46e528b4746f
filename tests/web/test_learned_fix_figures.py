"""A learned fix's evidence and its own record on the pages (issue 17): the failure memory
page's patterns table (history against the one asked for, runs first, resolutions, last
use, what the memory does now), the same in the API, and the learned fix's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from graylogic_supervisor.domain.memory import FailureRecord, Resolution
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.memory.learned import learned_playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.memory.test_service import context
from tests.web.test_admin_auth import client, log_in

__all__ = ["client"]  # the fixture, used by name

USED = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


async def a_pattern_of(db: Database, members: int) -> MemoryRepository:
    """``members`` alike broker failures fixed by restarting mosquitto, and their pattern."""
    repository = MemoryRepository(db)
    ids = []
    for n in range(members):
        failure = context(n, component="mqtt", error_id="ERR-INFRA-MQTT-001")
        resolution = Resolution(
            resolved_at=failure.detected_at + timedelta(minutes=1),
            fixed_by="supervisor",
            what_fixed_it="restarted",
            fix_action="restart_service",
            fix_target="mosquitto",
        )
        await repository.save(FailureRecord(context=failure, resolution=resolution), USED)
        ids.append(failure.failure_id)
    await repository.save_pattern(
        "pat-broker",
        error_id="ERR-INFRA-MQTT-001",
        component="mqtt",
        tokens=["killed"],
        fix_action="restart_service",
        fix_target="mosquitto",
        members=ids,
        now=USED,
    )
    return repository


async def test_a_pattern_short_of_history_shows_it_waits_and_runs_nothing_first(
    client: httpx.AsyncClient, db: Database
) -> None:
    await a_pattern_of(db, 9)
    await log_in(client, "vic")
    page = (await client.get("/failures")).text
    table = page[page.index('id="patterns"') :]
    assert '<td data-label="History">9 of 10</td>' in table
    assert '<td data-label="Ran first">0</td>' in table
    assert '<td data-label="Last used">never</td>' in table
    assert "<b>waits for history</b>" in table
    assert "not enough history (9 of 10): the playbook runs first" in table
    [shown] = (await client.get("/api/v1/failures")).json()["patterns"]
    assert (shown["history"], shown["min_history"], shown["state"]) == (
        9,
        10,
        "waits for history",
    )


async def test_a_learned_fix_that_ran_shows_its_record_on_both_pages(
    client: httpx.AsyncClient, db: Database
) -> None:
    repository = await a_pattern_of(db, 10)
    fix = learned_playbook(
        "mqtt", "ERR-INFRA-MQTT-001", "restart_service", "mosquitto", actions=builtin_specs()
    )
    assert fix is not None
    await PlaybookVersions(db).register_inactive(fix, "failure-memory", "learned", USED)
    for resolved in (True, True, True, False):
        await repository.record_learned_fix_run(fix.id, "pat-broker", resolved=resolved, now=USED)
    await log_in(client, "vic")
    page = (await client.get("/failures")).text
    table = page[page.index('id="patterns"') :]
    assert '<td data-label="History">10 of 10</td>' in table
    assert f'<a href="/playbooks/{fix.id}">4</a>' in table  # ran first, to the fix's page
    assert '<td data-label="Resolved">3</td>' in table
    assert '<td data-label="Worked">75 %</td>' in table
    assert '<td data-label="Last used">2026-12-01T08:30:00' in table
    assert "<b>may run first</b>" in table
    [shown] = (await client.get("/api/v1/failures")).json()["patterns"]
    assert (shown["times_matched"], shown["times_resolved"], shown["learned_playbook_id"]) == (
        4,
        3,
        fix.id,
    )

    learned = (await client.get(f"/playbooks/{fix.id}")).text
    assert 'id="fix-ran-first">4<' in learned
    assert 'id="fix-resolved">3<' in learned
    assert 'id="fix-success-rate">75 %<' in learned
    assert 'id="fix-last-used">2026-12-01T08:30:00+00:00<' in learned
    assert 'id="fix-failed-in-a-row">1 of 5<' in learned
    assert 'id="fix-held-back"' not in learned


async def test_a_learned_fix_held_back_says_so_on_both_pages(
    client: httpx.AsyncClient, db: Database
) -> None:
    repository = await a_pattern_of(db, 30)
    fix = learned_playbook(
        "mqtt", "ERR-INFRA-MQTT-001", "restart_service", "mosquitto", actions=builtin_specs()
    )
    assert fix is not None
    await PlaybookVersions(db).register_inactive(fix, "failure-memory", "learned", USED)
    for _ in range(5):
        await repository.record_learned_fix_run(fix.id, "pat-broker", resolved=False, now=USED)
    await log_in(client, "vic")
    page = (await client.get("/failures")).text
    table = page[page.index('id="patterns"') :]
    assert "<b>held back</b>" in table
    assert "failed its last 5 runs ahead of the playbook" in table
    learned = (await client.get(f"/playbooks/{fix.id}")).text
    assert 'id="fix-held-back">failed its last 5 runs' in learned
    assert 'id="fix-success-rate">0 %<' in learned
