"""Escalations in the store: raised, acknowledged once (even from two processes), closed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import NOTHING_SENT, EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.incidents import IncidentRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ERROR_ID = "ERR-INFRA-MQTT-001"


@pytest.fixture
def repo(db: Database) -> EscalationRepository:
    return EscalationRepository(db, AuditLog(db))


async def open_incident(db: Database, incident_id: str, component: str = "mqtt") -> str:
    failure_id = f"fail-{incident_id}"
    await ExecutionRepository(db).record_failure(
        failure_id, component, ERROR_ID, "critical", message="broker down", detected_at=NOW
    )
    await IncidentRepository(db).open(
        incident_id, component, ERROR_ID, failure_id, detail="broker down", now=NOW
    )
    return incident_id


async def test_raise_records_nothing_sent_yet_with_the_incidents_error_id_and_audits_it(
    db: Database, repo: EscalationRepository
) -> None:
    incident = await open_incident(db, "inc-1")
    escalation_id = await repo.raise_(incident, "mqtt", "critical", "broker down", now=NOW)
    assert escalation_id.startswith("esc-20261126-120000-")
    row = await repo.get(escalation_id)
    assert row is not None
    assert (row["component"], row["severity"], row["message"], row["error_id"]) == (
        "mqtt",
        "critical",
        "broker down",
        ERROR_ID,
    )
    assert (row["raised_at"], row["level"]) == ("2026-11-26T12:00:00.000Z", NOTHING_SENT)
    entry = (await AuditLog(db).entries(limit=1))[0]
    assert (entry["actor"], entry["action"], entry["subject"]) == (
        "supervisor",
        "escalation.raise",
        "mqtt",
    )
    assert json.loads(entry["detail"])["escalation_id"] == escalation_id
    assert json.loads(entry["detail"])["message"] == "broker down"


async def test_acknowledge_is_true_once_and_audited_with_who(
    db: Database, repo: EscalationRepository
) -> None:
    escalation_id = await repo.raise_(
        await open_incident(db, "inc-1"), "mqtt", "high", "m", now=NOW
    )
    later = NOW + timedelta(minutes=3)
    assert await repo.acknowledge(escalation_id, "alice", later)
    assert not await repo.acknowledge(escalation_id, "bob", later)
    row = await repo.get(escalation_id)
    assert row is not None
    assert (row["acknowledged_by"], row["acknowledged_at"]) == ("alice", "2026-11-26T12:03:00.000Z")
    acks = [e for e in await AuditLog(db).entries() if e["action"] == "escalation.acknowledge"]
    assert [(e["actor"], e["subject"]) for e in acks] == [("alice", "mqtt")]
    assert json.loads(acks[0]["detail"])["escalation_id"] == escalation_id
    assert (await AuditLog(db).verify()).ok


async def test_acknowledging_an_unknown_id_is_false_and_audits_nothing(
    db: Database, repo: EscalationRepository
) -> None:
    assert not await repo.acknowledge("esc-nope", "alice", NOW)
    assert await AuditLog(db).entries() == []


async def test_acknowledge_needs_a_name(db: Database, repo: EscalationRepository) -> None:
    escalation_id = await repo.raise_(
        await open_incident(db, "inc-1"), "mqtt", "high", "m", now=NOW
    )
    with pytest.raises(ValueError, match="name"):
        await repo.acknowledge(escalation_id, "  ", NOW)


async def test_two_connections_acknowledging_at_once_make_exactly_one_ack(
    tmp_path: Path,
) -> None:
    """The daemon and the CLI are two processes: two connections, SQLite's lock between."""
    path = tmp_path / "s.db"
    async with Database(path) as daemon_db, Database(path) as cli_db:
        daemon = EscalationRepository(daemon_db, AuditLog(daemon_db))
        cli = EscalationRepository(cli_db, AuditLog(cli_db))
        ids = [
            await daemon.raise_(
                await open_incident(daemon_db, f"inc-{n}"), "mqtt", "high", "m", now=NOW
            )
            for n in range(5)
        ]
        results = await asyncio.gather(
            *(
                repo.acknowledge(i, who, NOW)
                for i in ids
                for repo, who in ((daemon, "a"), (cli, "b"))
            )
        )
        assert [results[2 * n] + results[2 * n + 1] for n in range(5)] == [1] * 5
        audit = AuditLog(daemon_db)
        acks = [e for e in await audit.entries() if e["action"] == "escalation.acknowledge"]
        assert len(acks) == 5
        assert (await audit.verify()).ok


async def test_open_unacknowledged_leaves_out_acknowledged_and_closed(
    db: Database, repo: EscalationRepository
) -> None:
    first = await repo.raise_(await open_incident(db, "inc-1"), "mqtt", "high", "a", now=NOW)
    acked = await repo.raise_(await open_incident(db, "inc-2", "api"), "api", "high", "b", now=NOW)
    closed = await repo.raise_(await open_incident(db, "inc-3", "knx"), "knx", "high", "c", now=NOW)
    await repo.acknowledge(acked, "alice", NOW)
    assert await repo.close_for_incident("inc-3", NOW) == 1
    assert await repo.close_for_incident("inc-3", NOW) == 0  # already closed
    assert [r["id"] for r in await repo.open_unacknowledged()] == [first]
    assert await repo.open_for_incident("inc-1") is not None
    assert await repo.open_for_incident("inc-3") is None
    row = await repo.get(closed)
    assert row is not None
    assert row["closed_at"] == "2026-11-26T12:00:00.000Z"


async def test_set_level_only_moves_forward(db: Database, repo: EscalationRepository) -> None:
    escalation_id = await repo.raise_(
        await open_incident(db, "inc-1"), "mqtt", "high", "m", now=NOW
    )
    assert await repo.set_level(escalation_id, 0)
    assert await repo.set_level(escalation_id, 2)
    assert not await repo.set_level(escalation_id, 1)
    row = await repo.get(escalation_id)
    assert row is not None
    assert row["level"] == 2


async def test_recent_is_newest_first_and_limited(db: Database, repo: EscalationRepository) -> None:
    ids = [
        await repo.raise_(
            await open_incident(db, f"inc-{n}"), "mqtt", "high", "m", now=NOW + timedelta(minutes=n)
        )
        for n in range(3)
    ]
    assert [r["id"] for r in await repo.recent(2)] == [ids[2], ids[1]]
