"""``executions feedback`` in a real process against a real store: stored and audited,
or refused with a message naming what is wrong (exit 1, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.feedback import FeedbackRepository
from tests.conftest import free_port
from tests.daemon_process import write_config
from tests.store.test_feedback import NOW, an_execution
from tests.store.test_hold import repository


def feedback(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "executions",
            "feedback",
            *args,
            "--config",
            str(config),
            "--by",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_feedback_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    state = Path(yaml.safe_load(config.read_text())["state_dir"])
    state.mkdir(parents=True)
    async with Database(state / "supervisor.db") as db:
        executions = await repository(db)
        await executions.record_failure(
            "fail-1", "mqtt", "ERR-INFRA-MQTT-001", "high", message="down", detected_at=NOW
        )
        await an_execution(executions, "exec-1")

    given = feedback(
        config,
        "exec-1",
        "--sufficient",
        "no",
        "--wasted",
        "check",
        "--wasted",
        "restart",
        "--escalation",
        "too-late",
        "--note",
        "restart twice is slow",
    )
    assert given.returncode == 0, given.stderr
    assert "exec-1: feedback 1 recorded by alice" in given.stdout
    wrong_step = feedback(config, "exec-1", "--wasted", "nap")
    assert wrong_step.returncode == 1
    assert "exec-1 ran no step 'nap' (its steps: check, restart) (--wasted)" in wrong_step.stderr
    unknown = feedback(config, "exec-9", "--sufficient", "yes")
    assert unknown.returncode == 1 and "no execution exec-9" in unknown.stderr
    nothing = feedback(config, "exec-1")
    assert nothing.returncode == 1 and "say something" in nothing.stderr

    async with Database(state / "supervisor.db") as db:
        [entry] = await FeedbackRepository(db, AuditLog(db)).of_execution("exec-1")
        entries = await AuditLog(db).entries()
    assert (entry.given_by, entry.sufficient, entry.escalation) == ("alice", False, "too_late")
    assert entry.wasted_steps == ("check", "restart") and entry.note == "restart twice is slow"
    assert [e["action"] for e in entries] == ["execution.feedback"]
