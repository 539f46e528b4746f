"""The operator's commands, run as a person would: the real CLI in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.daemon_process import REPO


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {"mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"}},
            }
        )
    )
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_safe_mode_is_entered_and_left_by_a_named_person_and_audited(config: Path) -> None:
    assert cli(config, "safe-mode", "status").stdout == "safe mode off\n"
    entered = cli(config, "safe-mode", "enter", "--reason", "storm", "--by", "alice")
    assert (entered.returncode, entered.stdout) == (0, "safe mode entered\n")
    status = cli(config, "safe-mode", "status").stdout
    assert status.startswith("safe mode ON since ") and status.endswith("(storm, alice)\n")
    assert cli(config, "safe-mode", "enter", "--reason", "x").stdout == "safe mode was already on\n"
    assert (
        cli(config, "safe-mode", "leave", "--reason", "ok", "--by", "bob").stdout
        == "safe mode left\n"
    )
    entries = [
        json.loads(line) for line in cli(config, "audit", "list", "--json").stdout.splitlines()
    ]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("alice", "safe_mode.enter"),
        ("bob", "safe_mode.leave"),
    ]
    verified = cli(config, "audit", "verify")
    assert verified.returncode == 0
    assert verified.stdout.startswith('audit log ok: 2 entries, chain intact\nhead: {"seq": 2,')


def test_a_maintenance_window_is_opened_listed_and_ended_early(config: Path) -> None:
    started = cli(
        config, "maintenance", "start", "mqtt", "--for", "2h", "--reason", "switch", "--by", "carol"
    )
    assert started.returncode == 0
    window = started.stdout.split(":")[0]
    assert started.stdout == f"{window}: maintenance of mqtt for 7200 s\n"
    listing = cli(config, "maintenance", "list").stdout
    assert window in listing and "carol: switch" in listing and "until " in listing
    assert cli(config, "maintenance", "end", window, "--by", "carol").stdout == f"{window} ended\n"
    again = cli(config, "maintenance", "end", window)
    assert (again.returncode, again.stderr) == (1, f"no current window {window}\n")
    site = cli(config, "maintenance", "start", "site", "--for", "30m", "--reason", "works")
    assert site.returncode == 0


def test_bad_maintenance_requests_are_refused_clearly(config: Path) -> None:
    unknown = cli(config, "maintenance", "start", "pump", "--for", "1h", "--reason", "x")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "unknown component 'pump' (known: mqtt, or 'site')\n",
    )
    bad = cli(config, "maintenance", "start", "mqtt", "--for", "soon", "--reason", "x")
    assert bad.returncode == 2
    assert "not a duration: 'soon' (e.g. 30m, 2h, 1d)" in bad.stderr


def test_acknowledging_an_unknown_escalation_says_so(config: Path) -> None:
    assert cli(config, "escalation", "list").stdout == ""
    ack = cli(config, "escalation", "ack", "esc-nope", "--by", "dave")
    assert (ack.returncode, ack.stderr) == (1, "no unacknowledged escalation esc-nope\n")


def remember_failure(config: Path) -> None:
    """``fail-1``, an MQTT failure nobody resolved yet, in the config's store."""
    import asyncio
    from datetime import UTC, datetime

    from graylogic_supervisor.domain.memory import (
        Environment,
        FailureContext,
        FailureRecord,
        Resources,
    )
    from graylogic_supervisor.store.database import Database
    from graylogic_supervisor.store.memory import MemoryRepository

    state = yaml.safe_load(config.read_text())["state_dir"]

    async def remember() -> None:
        async with Database(Path(state) / "supervisor.db") as db:
            context = FailureContext(
                failure_id="fail-1",
                incident_id=None,
                detected_at=datetime(2026, 11, 26, tzinfo=UTC),
                error_id="ERR-INFRA-MQTT-001",
                component="mqtt",
                severity="critical",
                message="MQTT broker connection failed: port 1883 refused",
                other_health={},
                recent_events=[],
                resources=Resources(
                    memory_percent=1, disk_percent=1, cpu_percent=1, load_per_cpu=0
                ),
                environment=Environment(hour=1, weekday=1, uptime_s=1),
            )
            await MemoryRepository(db).save(FailureRecord(context=context), datetime.now(UTC))

    asyncio.run(remember())


def test_a_technician_records_a_resolution_the_memory_learns_from(config: Path) -> None:
    remember_failure(config)
    unknown = cli(config, "memory", "resolve", "fail-404", "--fix-action", "manual", "--what", "y")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "memory resolve: the memory has no failure fail-404\n",
    )
    done = cli(
        config,
        "memory",
        "resolve",
        "fail-1",
        "--fix-action",
        "restart_service",
        "--target",
        "mosquitto",
        "--what",
        "removed the DROP rule on 1883, then restarted",
        "--root-cause",
        "firewall",
        "--by",
        "erin",
    )
    assert (done.returncode, done.stdout) == (
        0,
        "fail-1: resolution recorded (restart_service mosquitto)\n",
    )
    [entry] = [
        json.loads(line)
        for line in cli(
            config, "audit", "list", "--json", "--action", "memory."
        ).stdout.splitlines()
    ]
    assert (entry["actor"], entry["action"], entry["subject"]) == (
        "erin",
        "memory.resolve",
        "fail-1",
    )
    why = cli(config, "why", "fail-1")
    assert why.returncode == 0
    assert why.stdout.splitlines()[:2] == [
        "memory: resolved_by_human",
        "  fixed by erin: removed the DROP rule on 1883, then restarted (restart_service"
        " mosquitto)",
    ]
    nothing = cli(config, "why", "exec-404")
    assert (nothing.returncode, nothing.stderr) == (
        1,
        "no execution, failure, incident, recommendation or rollback exec-404\n",
    )
    report = cli(config, "memory", "consolidate")
    assert report.returncode == 0 and "ConsolidationReport(" in report.stdout


def test_a_resolution_names_an_action_and_target_this_site_has(config: Path) -> None:
    remember_failure(config)

    def resolve(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(config, "memory", "resolve", "fail-1", "--what", "did it", "--by", "erin", *args)

    typo = resolve("--fix-action", "restart_servce", "--target", "mosquitto")
    assert typo.returncode == 1
    assert typo.stderr.startswith(
        "memory resolve: unknown fix action 'restart_servce'; did you mean 'restart_service'?"
        " (fix actions here: checkpoint_database, clean_up_files, playbook, restart_service,"
    )
    assert "or 'manual' for a fix no action can repeat)" in typo.stderr
    check = resolve("--fix-action", "check_disk")
    assert "'check_disk' is a check action and cannot be what fixed it" in check.stderr
    no_target = resolve("--fix-action", "restart_service")
    assert no_target.stderr == (
        "memory resolve: 'restart_service' needs a target (configured: mosquitto, mqtt)\n"
    )
    bad_target = resolve("--fix-action", "restart_service", "--target", "mosquito")
    assert bad_target.stderr == (
        "memory resolve: unknown target 'mosquito'; did you mean 'mosquitto'? (configured"
        " services and components: mosquitto, mqtt)\n"
    )
    assert cli(config, "audit", "list", "--json", "--action", "memory.").stdout == ""

    # a fix no action can repeat: recorded, never a fix the memory proposes
    manual = resolve()
    assert (manual.returncode, manual.stdout) == (
        0,
        "fail-1: resolution recorded (manual: not automatable)\n",
    )
    again = resolve("--fix-action", "restart_service", "--target", "mosquitto")
    assert again.returncode == 1
    assert (
        again.stderr.startswith("memory resolve: fail-1 was already resolved by erin at 20")
        and "(manual: did it); it is kept unless replaced on purpose (--force)\n" in again.stderr
    )
    forced = resolve("--fix-action", "restart_service", "--target", "mosquitto", "--force")
    assert forced.stdout == "fail-1: resolution recorded (restart_service mosquitto)\n"
    entries = cli(config, "audit", "list", "--json", "--action", "memory.").stdout.splitlines()
    details = [json.loads(json.loads(e)["detail"]) for e in entries]
    assert [d["fix_action"] for d in details] == [None, "restart_service"]


def test_resolve_help_says_how_to_record_a_manual_fix(config: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "memory", "resolve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert "'manual'" in " ".join(helped.split()) and "--force" in helped


def test_playbook_versions_export_and_import_as_yaml(config: Path, tmp_path: Path) -> None:
    shipped = REPO / "playbooks" / "mqtt-recover.yaml"
    first = cli(config, "playbook", "import", str(shipped), "--reason", "first", "--by", "ida")
    assert first.stdout == "PLAY-MQTT-RECOVER-001 1.0.0: created; active 1.0.0\n"
    exported = cli(config, "playbook", "export", "PLAY-MQTT-RECOVER-001")
    assert exported.stdout == shipped.read_text()

    newer = tmp_path / "newer.yaml"
    newer.write_text(shipped.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    second = cli(config, "playbook", "import", str(newer), "--reason", "tuned")
    assert second.stdout == "PLAY-MQTT-RECOVER-001 1.1.0: added; active 1.1.0\n"
    old = cli(config, "playbook", "export", "PLAY-MQTT-RECOVER-001", "--version", "1.0.0")
    assert old.stdout == shipped.read_text()

    broken = tmp_path / "broken.yaml"
    broken.write_text(shipped.read_text().replace("on_failure: restart", "on_failure: nowhere", 1))
    refused = cli(config, "playbook", "import", str(broken), "--reason", "x")
    assert refused.returncode == 1
    assert "transition to unknown step 'nowhere'" in refused.stderr
    missing = cli(config, "playbook", "export", "PLAY-NONE-001")
    assert (missing.returncode, missing.stderr) == (1, "no version (active) of PLAY-NONE-001\n")
    imports = [
        json.loads(line)
        for line in cli(
            config, "audit", "list", "--json", "--action", "playbook."
        ).stdout.splitlines()
    ]
    assert (imports[0]["actor"], imports[0]["subject"]) == ("ida", "PLAY-MQTT-RECOVER-001")


def test_memory_similar_reads_the_configs_threshold(config: Path) -> None:
    """The CLI's memory runs on the config's memory section, not on the defaults."""
    import asyncio
    from datetime import UTC, datetime

    from graylogic_supervisor.domain.memory import (
        Environment,
        FailureContext,
        FailureRecord,
        Resources,
    )
    from graylogic_supervisor.store.database import Database
    from graylogic_supervisor.store.memory import MemoryRepository

    settings = yaml.safe_load(config.read_text())

    def context(failure_id: str, message: str, hour: int) -> FailureContext:
        return FailureContext(
            failure_id=failure_id,
            incident_id=None,
            detected_at=datetime(2026, 11, 26, hour, tzinfo=UTC),
            error_id="ERR-INFRA-MQTT-001",
            component="mqtt",
            severity="critical",
            message=message,
            other_health={},
            recent_events=[],
            resources=Resources(memory_percent=1, disk_percent=1, cpu_percent=1, load_per_cpu=0),
            environment=Environment(hour=hour, weekday=1, uptime_s=1),
        )

    async def remember() -> None:
        async with Database(Path(settings["state_dir"]) / "supervisor.db") as db:
            repository = MemoryRepository(db)
            for record in (
                context("fail-1", "MQTT broker connection failed: port 1883 refused", 1),
                context("fail-2", "MQTT broker connection failed: connection reset by peer", 13),
            ):
                await repository.save(FailureRecord(context=record), datetime.now(UTC))

    asyncio.run(remember())
    note = "score below memory.similar_min_score"
    by_default = cli(config, "memory", "similar", "fail-1")
    assert by_default.returncode == 0
    assert by_default.stdout.startswith("fail-2: rank")
    assert note not in by_default.stdout  # 0.85 clears the default 0.8
    config.write_text(yaml.safe_dump({**settings, "memory": {"similar_min_score": 0.99}}))
    strict = cli(config, "memory", "similar", "fail-1")
    assert strict.stdout.startswith("fail-2: rank")
    assert f"{note} 0.99: not used to choose a fix" in strict.stdout
