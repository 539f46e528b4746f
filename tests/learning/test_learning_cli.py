"""The learning commands as an installer runs them: the real CLI in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.cli import main
from graylogic_supervisor.store.database import Database
from tests.daemon_process import REPO
from tests.learning.simulated import run, simulation

PLAYBOOK = "PLAY-MQTT-RECOVER-001"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A site whose store holds 150 executions of the stock MQTT playbook."""
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

    async def fill() -> None:
        async with Database(tmp_path / "state" / "supervisor.db") as db:
            # seed 2: enough of the 3 % failed restarts among 150 for a retry to be learned;
            # over the last few days: the analysis counts the last 30.
            start = datetime.now(UTC) - timedelta(days=3)
            await run(await simulation(db, "already-good", seed=2, start=start), 150)

    asyncio.run(fill())
    return path


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(config: Path, *args: str, stdin: str | None = None) -> Ran:
    """``main`` in this process (a child process costs a second of start-up per call);
    ``test_a_refusal_is_a_message_not_a_traceback`` covers the real entry point."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, "--config", str(config)])
            except SystemExit as exit_:  # argparse refusing the command line
                code = int(exit_.code or 0)
    finally:
        sys.stdin = old_stdin
    return Ran(code, out.getvalue(), err.getvalue())


def test_a_refusal_is_a_message_not_a_traceback(config: Path) -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "recommendations",
            "approve",
            "rec-x",
            "--by",
            "nobody",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1
    assert (
        ran.stderr
        == "graylogic-supervisor: no user 'nobody' (add one with: graylogic-supervisor user add)\n"
    )


def test_analyse_then_approve_then_roll_back_from_the_command_line(config: Path) -> None:
    added = cli(
        config, "user", "add", "ada", "--role", "admin", "--password-stdin", stdin="s3cret-pass\n"
    )
    assert (added.returncode, added.stdout) == (0, "user ada added as admin\n")
    viewer = cli(config, "user", "add", "vic", "--role", "viewer")
    assert "password (shown once): " in viewer.stdout

    analysis = cli(config, "analyze")
    assert analysis.returncode == 0, analysis.stderr
    assert f"{PLAYBOOK} 1.0.0: 150 executions" in analysis.stdout
    listed = json.loads(cli(config, "recommendations", "list", "--json").stdout)
    retry = next(r for r in listed if r["recommendation_type"] == "set_retry")
    assert retry["confidence"] >= 0.8 and retry["sample_size"] == 150

    shown = yaml.safe_load(cli(config, "recommendations", "show", retry["id"]).stdout)
    assert shown["recommendation"] == {
        "type": "set_retry",
        "step_id": "restart",
        "retry": shown["recommendation"]["retry"],
    }

    refused = cli(config, "recommendations", "approve", retry["id"], "--by", "vic")
    assert (
        refused.returncode == 1 and "viewer" in refused.stderr and "Traceback" not in refused.stderr
    )
    approved = cli(
        config, "recommendations", "approve", retry["id"], "--by", "ada", "--reason", "ok"
    )
    assert approved.stdout == f"{retry['id']}: approved by ada; version 1.0.1 is active\n"

    versions = cli(config, "playbook", "versions", PLAYBOOK).stdout.splitlines()
    assert versions[0].startswith("1.0.0 ") and "active" not in versions[0]
    assert (
        versions[1].startswith("1.0.1")
        and "active" in versions[1]
        and "approved by ada" in versions[1]
    )
    diff = cli(config, "playbook", "diff", PLAYBOOK, "1.0.0", "1.0.1").stdout
    assert "+  retry:" in diff
    exported = yaml.safe_load(cli(config, "playbook", "export", PLAYBOOK).stdout)
    assert exported["version"] == "1.0.1"

    back = cli(
        config, "playbook", "rollback", PLAYBOOK, "--to", "1.0.0", "--by", "ada", "--reason", "test"
    )
    assert back.stdout == f"{PLAYBOOK}: 1.0.0 is active again (was 1.0.1)\n"
    audit = [
        json.loads(line)["action"]
        for line in cli(config, "audit", "list", "--json").stdout.splitlines()
    ]
    assert audit == ["user.add", "user.add", "recommendation.approve", "playbook.rollback"]


def test_metrics_and_rejections_from_the_command_line(config: Path) -> None:
    cli(config, "user", "add", "olu", "--role", "system_owner")
    metrics = json.loads(cli(config, "playbook", "metrics", PLAYBOOK, "--json").stdout)
    assert metrics["playbook_metrics"]["total_executions"] == 150
    assert {s["step"] for s in metrics["steps"]} == {"check_broker", "restart", "verify"}
    assert metrics["common_paths"][0]["path"] == ["check_broker", "restart", "verify", "done"]
    cli(config, "analyze")
    pending = json.loads(cli(config, "recommendations", "list", "--json").stdout)
    first = pending[0]["id"]
    no_reason = cli(config, "recommendations", "reject", first, "--by", "olu")
    assert no_reason.returncode == 2  # argparse: --reason is required
    rejected = cli(config, "recommendations", "reject", first, "--by", "olu", "--reason", "not now")
    assert rejected.stdout == f"{first}: rejected by olu\n"
    statuses = {
        r["id"]: r["approval"]["status"]
        for r in json.loads(
            cli(config, "recommendations", "list", "--status", "all", "--json").stdout
        )
    }
    assert statuses[first] == "rejected"
    missing = cli(config, "recommendations", "approve", "rec-nope", "--by", "olu")
    assert missing.returncode == 1 and "no recommendation rec-nope" in missing.stderr


def test_a_rejected_change_stays_rejected_and_a_rollback_is_read_from_the_command_line(
    config: Path,
) -> None:
    cli(config, "user", "add", "olu", "--role", "system_owner")
    assert cli(config, "analyze").returncode == 0
    pending = json.loads(cli(config, "recommendations", "list", "--json").stdout)
    first, second = pending[0], pending[1]
    cli(config, "recommendations", "reject", first["id"], "--by", "olu", "--reason", "we log it")
    again = json.loads(cli(config, "analyze", "--json").stdout)
    (held,) = again["playbooks"][0]["held_back"]
    assert (held["recommendation_id"], held["reason"], held["executions"]) == (
        first["id"],
        "we log it",
        150,
    )
    now_pending = json.loads(cli(config, "recommendations", "list", "--json").stdout)
    assert first["recommendation"] not in [r["recommendation"] for r in now_pending]

    cli(config, "recommendations", "approve", second["id"], "--by", "olu")
    cli(config, "playbook", "rollback", PLAYBOOK, "--to", "1.0.0", "--by", "olu", "--reason", "no")
    listed = cli(config, "rollbacks", "list")
    assert f"{PLAYBOOK} " in listed.stdout and "by olu: no" in listed.stdout
    (rollback,) = json.loads(cli(config, "rollbacks", "list", "--json").stdout)
    shown = json.loads(cli(config, "rollbacks", "show", rollback["id"], "--json").stdout)
    report = shown["report"]
    assert report["rejected_recommendations"] == [second["id"]]
    assert report["versions"][0]["approved_by"] == "olu"
    assert report["baseline"]["version"] == "1.0.0"
    assert "unresolved_executions" in report and set(report["steps"]) == {
        "1.0.0",
        report["failed_version"],
    }
    missing = cli(config, "rollbacks", "show", "rollback-nope")
    assert missing.returncode == 1 and "no rollback rollback-nope" in missing.stderr
    after = json.loads(cli(config, "analyze", "--json").stdout)
    assert second["id"] in {h["recommendation_id"] for h in after["playbooks"][0]["held_back"]}


def test_approve_as_a_trial_then_follow_and_stop_it_from_the_command_line(config: Path) -> None:
    cli(config, "user", "add", "ada", "--role", "admin")
    cli(config, "analyze")
    listed = json.loads(cli(config, "recommendations", "list", "--json").stdout)
    retry = next(r for r in listed if r["recommendation_type"] == "set_retry")
    assert retry["trial"] is False  # replay judged it; a person may still try it first
    bad = cli(
        config, "recommendations", "approve", retry["id"], "--by", "ada", "--trial", "--share", "2"
    )
    assert bad.returncode == 1 and "between 0 and 1" in bad.stderr
    approved = cli(
        config,
        "recommendations",
        "approve",
        retry["id"],
        "--by",
        "ada",
        "--trial",
        "--share",
        "0.3",
    )
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(
        f"{retry['id']}: approved by ada as a trial; version 1.0.1 runs on 30% of incidents"
        " beside 1.0.0 (trial-"
    )
    assert "1.0.0 " in cli(config, "playbook", "versions", PLAYBOOK).stdout.splitlines()[0]
    [trial] = json.loads(cli(config, "trials", "list", "--status", "running", "--json").stdout)
    assert (trial["base_version"], trial["trial_version"], trial["share"]) == (
        "1.0.0",
        "1.0.1",
        0.3,
    )
    line = cli(config, "trials", "list").stdout
    assert f"{trial['id']}  running   {PLAYBOOK} 1.0.1 beside 1.0.0 on 30%" in line
    shown = json.loads(cli(config, "trials", "show", trial["id"], "--json").stdout)
    assert shown["statistics"]["base"]["version"] == "1.0.0"
    assert shown["statistics"]["trial"]["executions"] == 0
    assert "waiting for 10 executions" in shown["statistics"]["reason"]
    missing = cli(config, "trials", "show", "trial-nope")
    assert missing.returncode == 1 and "no trial trial-nope" in missing.stderr
    stopped = cli(config, "trials", "stop", trial["id"], "--by", "ada", "--reason", "not now")
    assert stopped.stdout == f"{trial['id']}: stopped by ada; 1.0.0 stays active\n"
    again = cli(config, "trials", "stop", trial["id"], "--by", "ada", "--reason", "again")
    assert again.returncode == 1 and "dropped, not running" in again.stderr
    audit = [
        json.loads(line)["action"]
        for line in cli(config, "audit", "list", "--json").stdout.splitlines()
    ]
    assert audit[-3:] == ["trial.start", "recommendation.approve", "trial.stop"]
