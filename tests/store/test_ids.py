"""Record ids: readable, time-ordered, and unique even in a burst."""

from __future__ import annotations

from datetime import UTC, datetime

from graylogic_supervisor.store.ids import new_id


def test_ids_start_with_their_kind_and_time() -> None:
    moment = datetime(2026, 1, 19, 14, 25, tzinfo=UTC)
    assert new_id("exec", moment).startswith("exec-20260119-142500-")


def test_a_burst_in_one_second_does_not_collide() -> None:
    moment = datetime(2026, 1, 19, 14, 25, tzinfo=UTC)
    ids = {new_id("exec", moment) for _ in range(20_000)}
    assert len(ids) == 20_000
