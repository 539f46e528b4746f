"""The store as bench/crash.py reads and checks it after each kill and start-up.

crash.py drives the daemon (config, kills, MQTT, output); this is what it asks of the
SQLite file the dead or restarted daemon left: the rows it reads, the checks on them,
where a kill landed, and the audit chain. Apart so that crash.py stays one concept.
What depends on the playbook comes in as an argument (``idempotent``: playbook id ->
its idempotent step ids), so this module does not import crash.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon_under_test import BenchDaemon, stored_at

STEP_COLUMNS = (  # the SQL select list; the indexes below are into it
    "execution_id, seq, step_id, attempt, started_at, outcome, result, output, error,"
    " transitioned_to, completed_at, duration_seconds"
)
EXECUTION_COLUMNS = (
    "playbook_id, status, started_at, completed_at, duration_seconds, resolved_by, detail"
)
EXEC, STEP, OUTCOME, RESULT, ERROR = 0, 2, 5, 6, 8  # in a step row
PLAYBOOK_ID, STATUS, STARTED, DETAIL = 0, 1, 2, 6  # in an execution row
KILLED_DETAIL = "the supervisor stopped"  # what start-up writes on an interrupted run
RUN_AGAIN = "run again"  # how start-up marks the row of a step it runs again

SeenStep = tuple[str, str, str, str | None]  # execution, step, outcome, result


@dataclasses.dataclass(frozen=True)
class StoreState:
    """Step rows and executions as the store holds them (row id / execution id keyed)."""

    steps: dict[int, tuple[Any, ...]]
    executions: dict[str, tuple[Any, ...]]
    integrity: str

    def running(self) -> list[str]:
        return [e for e, row in self.executions.items() if row[STATUS] == "running"]

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "executions": self.executions, "integrity": self.integrity}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> StoreState:
        return StoreState(
            {int(k): tuple(v) for k, v in data["steps"].items()},
            {k: tuple(v) for k, v in data["executions"].items()},
            data["integrity"],
        )


def read_state(daemon: BenchDaemon) -> StoreState:
    """The store, read-only (after a kill: exactly what the dead daemon left)."""
    with daemon.store() as conn:
        steps = conn.execute(f"SELECT id, {STEP_COLUMNS} FROM execution_steps")
        executions = conn.execute(f"SELECT id, {EXECUTION_COLUMNS} FROM executions")
        return StoreState(
            {int(r[0]): tuple(r)[1:] for r in steps},
            {str(r[0]): tuple(r)[1:] for r in executions},
            str(conn.execute("PRAGMA integrity_check").fetchone()[0]),
        )


# -- checks: each returns what is wrong, in words ------------------------------------


def lost_or_changed(before: StoreState, after: StoreState) -> list[str]:
    """Every step row that had ended, and every execution that had ended, as it was."""
    problems = []
    for row_id, row in before.steps.items():
        if row[OUTCOME] != "running" and after.steps.get(row_id) != row:
            now = after.steps.get(row_id)
            problems.append(
                f"step row {row_id} ({row[EXEC]} {row[STEP]} {row[OUTCOME]}) "
                + ("is gone" if now is None else f"changed to {now}")
            )
    for execution_id, row in before.executions.items():
        if row[STATUS] != "running" and after.executions.get(execution_id) != row:
            problems.append(f"execution {execution_id} ({row[STATUS]}) changed or is gone")
    return problems


def unrecorded(seen: Counter[SeenStep], ended: Mapping[str, str], after: StoreState) -> list[str]:
    """Every step reported finished on MQTT has its row; every reported end its status."""
    stored = Counter(
        (r[EXEC], r[STEP], r[OUTCOME], r[RESULT])
        for r in after.steps.values()
        if r[OUTCOME] not in ("running", "interrupted")
    )
    problems = [
        f"{execution} {step} {outcome} ({result}) reported finished {n} more time(s)"
        " than the store has it"
        for (execution, step, outcome, result), n in (seen - stored).items()
    ]
    for execution_id, status in ended.items():
        row = after.executions.get(execution_id)
        if row is None or row[STATUS] != status:
            problems.append(f"execution {execution_id} reported {status}, stored {row}")
    return problems


@dataclasses.dataclass(frozen=True)
class Stopped:
    """An execution running when the daemon was killed, and the step row it was in."""

    execution_id: str
    playbook: str
    row_id: int | None
    step_id: str | None
    idempotent: frozenset[str] = dataclasses.field(  # its playbook's; not in the messages
        default=frozenset(), repr=False, compare=False
    )

    @property
    def resumable(self) -> bool:
        """The daemon's rule: a plain (not undo, not branch) idempotent step."""
        return self.step_id is not None and self.step_id in self.idempotent


def stopped_runs(state: StoreState, idempotent: Mapping[str, frozenset[str]]) -> dict[str, Stopped]:
    """Each running execution and the step it was stopped in: the row still running, or
    a last row an earlier start-up marked to run again before it was itself stopped."""
    found = {}
    for execution_id in state.running():
        rows = sorted(
            ((rid, r) for rid, r in state.steps.items() if r[EXEC] == execution_id),
            key=lambda item: int(item[1][1]),
        )
        current = next(((rid, r) for rid, r in reversed(rows) if r[OUTCOME] == "running"), None)
        if current is None and rows and str(rows[-1][1][ERROR]).endswith(RUN_AGAIN):
            current = rows[-1]
        playbook = str(state.executions[execution_id][PLAYBOOK_ID])
        found[execution_id] = Stopped(
            execution_id,
            playbook,
            current[0] if current else None,
            str(current[1][STEP]) if current else None,
            idempotent.get(playbook, frozenset()),
        )
    return found


def start_up_problems(
    death: StoreState,
    after: StoreState,
    resumed: Mapping[str, str],
    launched_at: float,
    idempotent: Mapping[str, frozenset[str]],
) -> dict[str, list[str]]:
    """What start-up did with the runs a kill stopped: interrupted, or resumed if safe."""
    wrong: list[str] = []
    left: list[str] = []
    stopped = stopped_runs(death, idempotent)
    for execution_id, step_id in resumed.items():
        was = stopped.get(execution_id)
        if was is None or not was.resumable or was.step_id != step_id:
            wrong.append(f"{execution_id} resumed at {step_id}; at the kill: {was}")
    for execution_id, was in stopped.items():
        row = after.executions.get(execution_id)
        status = "gone" if row is None else row[STATUS]
        if execution_id in resumed:
            row = after.steps.get(was.row_id) if was.row_id is not None else None
            if row is None or row[OUTCOME] != "interrupted":
                wrong.append(f"{execution_id} resumed, but its stopped step row is {row}")
            continue
        if status != "interrupted":
            wrong.append(f"{execution_id} stopped by the kill is {status}, not interrupted")
        still = [
            r[STEP]
            for r in after.steps.values()
            if r[EXEC] == execution_id and r[OUTCOME] == "running"
        ]
        if still:
            wrong.append(f"{execution_id} is interrupted with steps still running: {still}")
    for execution_id in after.running():
        started = stored_at(str(after.executions[execution_id][STARTED]))
        if execution_id not in resumed and started < launched_at:
            left.append(f"{execution_id} (started before this start) left running")
    return {"interrupted_or_resumed": wrong, "none_left_running": left}


def landed(state: StoreState, started_up: bool, resumed: Mapping[str, str]) -> str:
    if not started_up:
        return "start-up"
    running = state.running()
    if not running:
        return "idle"
    if any(e in resumed for e in running):
        return "resumption"
    steps = [
        r[STEP] for r in state.steps.values() if r[EXEC] in running and r[OUTCOME] == "running"
    ]
    if any(":" in s for s in steps):
        return "compensation"
    return "step" if steps else "between steps"


def audit_verify(config_path: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "graylogic_supervisor", "audit", "verify"]
    return subprocess.Popen(
        [*argv, "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def audit_problems(verify: subprocess.Popen[str]) -> list[str]:
    out, _ = verify.communicate(timeout=60)
    return [] if verify.returncode == 0 else [f"audit verify {verify.returncode}: {out.strip()}"]
