"""Each operator's use case is one transaction with its audit entry: when the audit
insert fails inside it (a real trigger refusing it), nothing of the use case is left."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.users import UserRepository, ensure_first_admin
from tests.store.test_escalations import open_incident

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def refuse_audit(db: Database) -> None:
    """From now on every audit insert aborts its transaction."""
    await db.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
        " BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
    )


async def accept_audit(db: Database) -> None:
    await db.execute("DROP TRIGGER refuse_audit")


async def audited(db: Database) -> list[str]:
    return [entry["action"] for entry in await AuditLog(db).entries()]


async def test_safe_mode_is_not_entered_when_its_audit_entry_fails(db: Database) -> None:
    controls = ControlRepository(db, AuditLog(db))
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await controls.set_safe_mode(True, "storm", "alice", NOW)
    assert not (await controls.safe_mode()).active
    assert await audited(db) == []
    await accept_audit(db)
    assert await controls.set_safe_mode(True, "storm", "alice", NOW)
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await controls.set_safe_mode(False, "calm", "alice", NOW)
    assert (await controls.safe_mode()).active
    assert await audited(db) == ["safe_mode.enter"]


async def test_a_maintenance_window_opens_and_ends_only_with_its_audit_entry(
    db: Database,
) -> None:
    controls = ControlRepository(db, AuditLog(db))
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await controls.start_maintenance("mqtt", 600, "switch", by="alice", now=NOW)
    assert await controls.windows() == []
    await accept_audit(db)
    window_id = await controls.start_maintenance("mqtt", 600, "switch", by="alice", now=NOW)
    await refuse_audit(db)
    later = NOW + timedelta(seconds=60)
    with pytest.raises(StoreError, match="audit refused"):
        await controls.end_maintenance(window_id, "alice", later)
    assert await controls.window_for("mqtt", later) is not None
    with pytest.raises(StoreError, match="audit refused"):
        await controls.close_elapsed(NOW + timedelta(seconds=700))
    (window,) = await controls.windows()
    assert window["ended_at"] is None
    assert await audited(db) == ["maintenance.start"]


async def test_an_acknowledgement_is_not_kept_without_its_audit_entry(db: Database) -> None:
    escalations = EscalationRepository(db, AuditLog(db))
    escalation_id = await escalations.raise_(
        await open_incident(db, "inc-1"), "mqtt", "critical", "broker down", now=NOW
    )
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await escalations.acknowledge(escalation_id, "alice", NOW)
    row = await escalations.get(escalation_id)
    assert row is not None and row["acknowledged_at"] is None
    with pytest.raises(StoreError, match="audit refused"):
        await escalations.raise_(
            await open_incident(db, "inc-2", "api"), "api", "high", "api down", now=NOW
        )
    assert [row["id"] for row in await escalations.recent()] == [escalation_id]
    await accept_audit(db)
    assert await escalations.acknowledge(escalation_id, "alice", NOW)
    assert await audited(db) == ["escalation.acknowledge", "escalation.raise"]


async def test_the_first_admin_is_made_with_its_audit_entry_or_not_at_all(
    db: Database, tmp_path: Path
) -> None:
    users, audit = UserRepository(db), AuditLog(db)
    clock, out = VirtualClock(NOW), io.StringIO()
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    await refuse_audit(db)
    with pytest.raises(StoreError, match="audit refused"):
        await ensure_first_admin(users, audit, clock, state_dir, out=out)
    assert await users.all() == [] and out.getvalue() == ""
    assert list(state_dir.iterdir()) == []  # no password file for an admin never made
    await accept_audit(db)
    password = await ensure_first_admin(users, audit, clock, state_dir, out=out)
    assert password is not None and password not in out.getvalue()
    [written] = state_dir.iterdir()
    assert written.name == "initial-admin-password" and str(written) in out.getvalue()
    assert (written.read_text(), written.stat().st_mode & 0o777) == (f"{password}\n", 0o600)
    assert [user.name for user in await users.all()] == ["admin"]
    assert await audited(db) == ["user.add"]
