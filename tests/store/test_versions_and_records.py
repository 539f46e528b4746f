"""Playbook versions seeded from files, and execution records across a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.versions import PlaybookVersions

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def book(version: str, name: str = "MQTT") -> Playbook:
    return Playbook.model_validate(
        {
            "id": "PLAY-MQTT-RECOVER-001",
            "name": name,
            "version": version,
            "trigger": {"component": "mqtt", "error_ids": ["ERR-INFRA-MQTT-001"]},
            "steps": [{"id": "check", "name": "Check", "action": "log", "on_success": "done"}],
        }
    )


async def test_a_new_playbook_is_created_active_at_its_declared_version(db: Database) -> None:
    versions = PlaybookVersions(db)
    outcome = await versions.seed(book("1.2.0"), "yaml", "mqtt.yaml", NOW)
    assert outcome.action == "created"
    assert await versions.active_version("PLAY-MQTT-RECOVER-001") == "1.2.0"
    assert [p.version for p in await versions.active_playbooks()] == ["1.2.0"]
    assert await versions.source_yaml("PLAY-MQTT-RECOVER-001", "1.2.0") == "yaml"


async def test_reseeding_the_same_file_changes_nothing(db: Database) -> None:
    versions = PlaybookVersions(db)
    await versions.seed(book("1.0.0"), "yaml", "mqtt.yaml", NOW)
    assert (await versions.seed(book("1.0.0"), "yaml", "mqtt.yaml", NOW)).action == "unchanged"


async def test_an_edited_file_without_a_new_version_keeps_the_store_copy(db: Database) -> None:
    versions = PlaybookVersions(db)
    await versions.seed(book("1.0.0"), "yaml", "mqtt.yaml", NOW)
    outcome = await versions.seed(book("1.0.0", name="edited"), "yaml2", "mqtt.yaml", NOW)
    assert outcome.action == "kept-store"
    [active] = await versions.active_playbooks()
    assert active.name == "MQTT"


async def test_a_newer_file_version_is_added_and_activated_an_older_one_only_added(
    db: Database,
) -> None:
    versions = PlaybookVersions(db)
    await versions.seed(book("1.0.0"), "yaml", "mqtt.yaml", NOW)
    assert (await versions.seed(book("1.1.0"), "yaml", "mqtt.yaml", NOW)).action == "added"
    assert await versions.active_version("PLAY-MQTT-RECOVER-001") == "1.1.0"
    await versions.seed(book("1.0.5"), "yaml", "mqtt.yaml", NOW)
    assert await versions.active_version("PLAY-MQTT-RECOVER-001") == "1.1.0"
    rows = await db.fetchall("SELECT version, active FROM playbook_versions ORDER BY version")
    assert [(r["version"], r["active"]) for r in rows] == [("1.0.0", 0), ("1.0.5", 0), ("1.1.0", 1)]


async def test_running_executions_found_at_start_up_become_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Database(path) as db:
        await PlaybookVersions(db).seed(book("1.0.0"), "yaml", "mqtt.yaml", NOW)
        executions = ExecutionRepository(db)
        await executions.record_failure(
            "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "critical", message="m", detected_at=NOW
        )
        await executions.start_execution(
            "exec-1",
            "PLAY-MQTT-RECOVER-001",
            "1.0.0",
            "fail-1",
            error_id="ERR-INFRA-MQTT-001",
            component="mqtt",
            started_at=NOW,
        )
        await executions.start_step(
            "exec-1", 1, "check", "Check", action="log", target=None, attempt=1, started_at=NOW
        )
    async with Database(path) as db:  # as after a restart
        executions = ExecutionRepository(db)
        assert await executions.mark_interrupted(NOW) == ["exec-1"]
        record = await executions.record("exec-1")
        assert record is not None
        assert record["outcome"]["status"] == "interrupted"
        assert record["steps"][0]["outcome"] == "interrupted"
        assert record["steps"][0]["completed_at"] is not None
        assert await executions.mark_interrupted(NOW) == []
