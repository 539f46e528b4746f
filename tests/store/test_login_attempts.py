"""Login attempts reserved before hashing: per (user, address), a global ceiling, expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.sessions import LoginLimits, SessionRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LIMITS = LoginLimits()


async def fail(sessions: SessionRepository, user: str, remote: str, now: datetime) -> None:
    reservation = await sessions.reserve_attempt(user, remote, now, LIMITS)
    assert reservation.attempt_id is not None
    await sessions.finish_attempt(reservation.attempt_id, ok=False)


async def test_concurrent_reservations_grant_exactly_the_limit(db: Database) -> None:
    sessions = SessionRepository(db)
    reservations = await asyncio.gather(
        *(sessions.reserve_attempt("admin", "10.0.0.9", NOW, LIMITS) for _ in range(150))
    )
    granted = [r for r in reservations if r.attempt_id is not None]
    assert len(granted) == LIMITS.per_pair
    refused = [r for r in reservations if r.attempt_id is None]
    assert {r.refused for r in refused} == {"limit"}
    assert all(r.retry_after_s > 800 for r in refused)  # the 15-minute window, nearly whole


async def test_the_limit_is_per_user_and_address(db: Database) -> None:
    sessions = SessionRepository(db)
    for _ in range(LIMITS.per_pair):
        await fail(sessions, "admin", "10.0.0.9", NOW)
    assert (await sessions.reserve_attempt("admin", "10.0.0.9", NOW, LIMITS)).refused == "limit"
    # The same name from the site's own address, and another name from the guesser's: open.
    assert (await sessions.reserve_attempt("admin", "10.0.0.2", NOW, LIMITS)).attempt_id
    assert (await sessions.reserve_attempt("vic", "10.0.0.9", NOW, LIMITS)).attempt_id
    later = NOW + LIMITS.window + timedelta(seconds=1)
    assert (await sessions.reserve_attempt("admin", "10.0.0.9", later, LIMITS)).attempt_id


async def test_a_success_does_not_count_and_a_refusal_is_not_recorded(db: Database) -> None:
    sessions = SessionRepository(db)
    for _ in range(20):
        reservation = await sessions.reserve_attempt("ada", "10.0.0.2", NOW, LIMITS)
        assert reservation.attempt_id is not None
        await sessions.finish_attempt(reservation.attempt_id, ok=True)
    for _ in range(LIMITS.per_pair):
        await fail(sessions, "eve", "10.0.0.9", NOW)
    for _ in range(50):
        await sessions.reserve_attempt("eve", "10.0.0.9", NOW, LIMITS)
    row = await db.fetchone("SELECT COUNT(*) FROM login_attempts WHERE user = 'eve'")
    assert row is not None and row[0] == LIMITS.per_pair  # refusals leave no row to extend it


async def test_past_the_global_ceiling_everybody_waits_briefly_never_for_good(
    db: Database,
) -> None:
    sessions = SessionRepository(db)
    for i in range(LIMITS.overall):  # many names from many addresses, one try each
        await fail(sessions, f"name{i}", f"10.1.0.{i}", NOW)
    refused = await sessions.reserve_attempt("admin", "10.0.0.2", NOW, LIMITS)
    assert refused.refused == "global_limit"
    assert 1 <= refused.retry_after_s <= LIMITS.overall_window.total_seconds() + 1
    after = NOW + LIMITS.overall_window + timedelta(seconds=1)
    assert (await sessions.reserve_attempt("admin", "10.0.0.2", after, LIMITS)).attempt_id


async def test_a_reservation_never_finished_counts_until_it_expires(db: Database) -> None:
    """A daemon killed while hashing leaves its reservations pending: they stop counting."""
    sessions = SessionRepository(db)
    for _ in range(LIMITS.per_pair):
        assert (await sessions.reserve_attempt("admin", "10.0.0.9", NOW, LIMITS)).attempt_id
    assert (await sessions.reserve_attempt("admin", "10.0.0.9", NOW, LIMITS)).refused
    expired = NOW + LIMITS.pending_for + timedelta(seconds=1)
    assert (await sessions.reserve_attempt("admin", "10.0.0.9", expired, LIMITS)).attempt_id


async def test_unlock_forgets_the_failures_of_a_user_or_of_one_address(db: Database) -> None:
    sessions = SessionRepository(db)
    for remote in ("10.0.0.9", "10.0.0.8"):
        for _ in range(LIMITS.per_pair):
            await fail(sessions, "admin", remote, NOW)
    assert await sessions.unlock("admin", "10.0.0.9") == LIMITS.per_pair
    assert (await sessions.reserve_attempt("admin", "10.0.0.9", NOW, LIMITS)).attempt_id
    assert (await sessions.reserve_attempt("admin", "10.0.0.8", NOW, LIMITS)).refused
    assert await sessions.unlock("admin") == LIMITS.per_pair + 1  # with the one just reserved
    assert (await sessions.reserve_attempt("admin", "10.0.0.8", NOW, LIMITS)).attempt_id
