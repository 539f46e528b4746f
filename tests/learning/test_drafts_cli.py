"""A draft playbook as an installer sees it: `analyze`, then `recommendations show` with
its evidence and the real engine's dry run of it (the CLI's own config names the site)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.learning.draft_steps import playbook_id_for
from graylogic_supervisor.store.database import Database
from tests.daemon_process import REPO
from tests.learning.test_drafts import Site
from tests.learning.test_learning_cli import cli

DRAFT = playbook_id_for("ERR-SYS-MEM-001", "memory")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A site with a memory component whose failures people fixed by restarting the
    broker (a leak in a plugin of it)."""
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {
                    "mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"},
                    "memory": {"kind": "memory", "error_id": "ERR-SYS-MEM-001"},
                },
            }
        )
    )

    async def fill() -> None:
        async with Database(tmp_path / "state" / "supervisor.db") as db:
            site = await Site(db).start()
            for by in ("ana", "ben", "ana", "ana"):
                await site.fixed_by_hand(
                    "restart_service",
                    "mosquitto",
                    by=by,
                    error_id="ERR-SYS-MEM-001",
                    component="memory",
                )

    asyncio.run(fill())
    return path


def test_show_gives_the_draft_its_evidence_and_a_dry_run(config: Path) -> None:
    ran = cli(config, "analyze", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    [rec_id] = report["recommendations"]
    assert report["drafts"][0]["playbook_id"] == DRAFT

    shown = cli(config, "recommendations", "show", rec_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "recommendation_type: new_playbook" in text
    assert f"id: {DRAFT}" in text
    assert "resolved_by_people: 4" in text and "ana: 3" in text
    assert "dry_run: |" in text
    assert f"dry run of {DRAFT} 1.0.0" in text
    # the check finds the failure, the restart works and its verification sees health
    assert "resolved by restart_service_mosquitto" in text

    as_json = json.loads(cli(config, "recommendations", "show", rec_id, "--json").stdout)
    steps = [s["action"] for s in as_json["recommendation"]["playbook"]["steps"]]
    assert steps == ["wait_for_health", "restart_service", "wait_for_health", "alert"]
    assert as_json["dry_run"].startswith(f"dry run of {DRAFT} 1.0.0")


def test_the_show_help_names_the_draft(config: Path) -> None:
    ran = cli(config, "recommendations", "show", "--help")
    assert "new_playbook" in ran.stdout and "dry run" in ran.stdout


def test_an_adopted_draft_is_retired_from_the_command_line(config: Path) -> None:
    [rec_id] = json.loads(cli(config, "analyze", "--json").stdout)["recommendations"]
    approved = cli(config, "recommendations", "approve", rec_id, "--by", "ada", "--reason", "ok")
    assert approved.returncode == 0, approved.stderr
    assert "version 1.0.0 is active" in approved.stdout
    ran = cli(config, "playbook", "rollback", DRAFT, "--to", "none", "--by", "ada", "--reason", "x")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"{DRAFT}: 1.0.0 retired; no playbook handles its failures"


def test_analyze_says_what_it_drafted(config: Path) -> None:
    ran = cli(config, "analyze")
    assert ran.returncode == 0, ran.stderr
    assert "draft for ERR-SYS-MEM-001 on memory: proposed" in ran.stdout
