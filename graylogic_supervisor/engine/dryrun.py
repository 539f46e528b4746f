"""Dry run of a playbook: the real engine, scripted outcomes, virtual time, nothing touched.

There is one engine (DESIGN.md): a dry run does not re-implement transitions,
retries, loop bounds or deadlines, it runs ``Runner.run`` itself. Only the
edges are swapped: every action is a stand-in that answers what it was told,
time is a virtual clock on which waiting costs nothing, and the store is a
throwaway database in a temporary directory that is removed afterwards. The
path is then read back from that execution record, so what a dry run shows
is what a real run would have recorded.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.action import Action, ActionRegistry, StepContext, StepResult
from graylogic_supervisor.engine.plugins import action_specs
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.errors import StoreError, SupervisorError
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.history import History, read_step_durations
from graylogic_supervisor.store.versions import PlaybookVersions

T = TypeVar("T")

OUTCOMES = ("success", "failure", "timeout", "error")


class DryRunError(SupervisorError):
    """The dry run was asked something it cannot simulate (a bad --outcome or --history)."""

    def __init__(self, message: str, step: str | None = None, outcome: str | None = None) -> None:
        self.step = step
        self.outcome = outcome
        super().__init__(message)


# --- virtual time -------------------------------------------------------------------------


class _MeanJitter(random.Random):
    """Jitter at its mean, so a retry's pause is the policy's expected one, the same each run."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


# --- what each step is told to do ---------------------------------------------------------


@dataclass(frozen=True)
class _Runnable:
    """Something the runner calls an action for, under the id its rows will carry."""

    action: str
    timeout_seconds: float
    attempts: int


def _runnables(playbook: Playbook) -> dict[str, _Runnable]:
    """Steps by id, a group's branches as ``group.branch``, undos as ``step:compensate``.

    These are the ids the runner puts in a ``StepContext`` and in the step
    rows; a group itself calls no action (its outcome is its branches').
    """
    found: dict[str, _Runnable] = {}
    for step in playbook.steps:
        if step.parallel is None:
            calls = [(step.id, step)]
        else:
            calls = [(f"{step.id}.{branch.id}", branch) for branch in step.parallel.branches]
        for step_id, call in calls:
            attempts = call.retry.attempts if call.retry else 1
            found[step_id] = _Runnable(call.action, call.timeout_seconds, attempts)
            if call.compensate is not None:
                undo = call.compensate
                found[f"{step_id}:compensate"] = _Runnable(undo.action, undo.timeout_seconds, 1)
    return found


@dataclass(frozen=True)
class _Plan:
    call: _Runnable
    outcome: str
    seconds: float  # how long one attempt takes on the virtual clock
    source: str  # where that time came from, for the person reading the report


class _StandIn:
    """A scripted action: the real one's identity, the outcome it was told, no side effect."""

    name: ClassVar[str]
    kind: ClassVar[ActionKind]
    params_model: ClassVar[type[BaseModel]]
    needs_target: ClassVar[bool]

    def __init__(self, plans: Mapping[str, _Plan]) -> None:
        self._plans = plans

    async def run(self, ctx: StepContext) -> StepResult:
        plan = self._plans[ctx.step_id]
        if plan.outcome == StepOutcome.TIMEOUT:
            # Longer than the step's timeout: the runner's own wait_for has to cut it.
            await ctx.clock.sleep(plan.call.timeout_seconds + 1.0)
            raise RuntimeError("the simulated timeout was not cut by the clock")
        await ctx.clock.sleep(plan.seconds)
        if plan.outcome == StepOutcome.SUCCESS:
            return StepResult.ok("simulated success")
        if plan.outcome == StepOutcome.FAILURE:
            return StepResult.failed("simulated failure")
        raise RuntimeError("simulated error")


def _stand_in(spec: ActionSpec, plans: Mapping[str, _Plan]) -> Action:
    """A stand-in class per action, because the Action protocol's identity is class-level."""

    class StandIn(_StandIn):
        name = spec.name
        kind = spec.kind
        params_model = spec.params_model
        needs_target = spec.needs_target

    return StandIn(plans)


def _plan(step_id: str, call: _Runnable, outcome: str, history: History | None) -> _Plan:
    """How long one attempt takes: the timeout, the step's history, or nothing.

    A timeout lasts as long as the timeout whatever history says, since the
    runner cuts the step there. Otherwise the mean of past attempts with the
    same outcome is the best guess, then the mean of any outcome (interrupted
    attempts excluded: a stop cut them short, not the step).
    """
    if outcome == StepOutcome.TIMEOUT:
        timeout = call.timeout_seconds
        return _Plan(call, outcome, timeout, f"timeout {timeout:g} s")
    if history is not None:
        same = history.get((step_id, outcome))
        if same is not None:
            total, count = same
            return _Plan(call, outcome, total / count, f"history: mean of {count}")
        seen = [value for (known, _), value in history.items() if known == step_id]
        if seen:
            total = sum(value[0] for value in seen)
            count = sum(value[1] for value in seen)
            return _Plan(call, outcome, total / count, f"history: mean of {count} (any outcome)")
    return _Plan(call, outcome, 0.0, "no history")


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunStep:
    """One attempt of one step, as the throwaway execution record has it."""

    step: int  # 1, 2, 3 … in the order the attempts ran
    id: str
    action: str
    target: str | None
    attempt: int
    attempts: int  # how many the step's retry policy allows
    outcome: str
    transitioned_to: str | None
    expected_seconds: float
    source: str
    pause_seconds: float  # virtual time between the previous attempt's end and this one's start
    asked: str | None  # the scripted outcome (none for a group's own row)


@dataclass(frozen=True)
class DryRunReport:
    playbook: str
    version: str
    file: Path
    status: str  # resolved | escalated | failed
    resolved_by: str | None
    detail: str
    expected_seconds: float
    steps: tuple[DryRunStep, ...]

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` shape."""
        return {
            "playbook": self.playbook,
            "version": self.version,
            "status": self.status,
            "resolved_by": self.resolved_by,
            "expected_seconds": self.expected_seconds,
            "steps": [{name: getattr(step, name) for name in _JSON_STEP} for step in self.steps],
        }


_JSON_STEP = (
    "step",
    "id",
    "action",
    "target",
    "attempt",
    "outcome",
    "transitioned_to",
    "expected_seconds",
    "source",
)


def parse_outcomes(items: Iterable[str]) -> dict[str, str]:
    """``STEP=OUTCOME`` arguments as a mapping; the words are checked by ``dry_run``."""
    outcomes: dict[str, str] = {}
    for item in items:
        step, sep, outcome = item.partition("=")
        if not sep or not step:
            raise DryRunError(f"--outcome {item!r}: expected STEP=OUTCOME", step=step or None)
        if step in outcomes and outcomes[step] != outcome:
            raise DryRunError(f"--outcome names step {step!r} twice", step=step)
        outcomes[step] = outcome
    return outcomes


async def dry_run(file: Path, outcomes: Mapping[str, str], history: Path | None) -> DryRunReport:
    """Walk ``file`` through the real runner with scripted outcomes (default: success).

    Raises ``PlaybookError`` when the file does not validate and ``DryRunError``
    for an outcome the playbook cannot take or a history that cannot be read.
    """
    for step_id, word in outcomes.items():
        if word not in OUTCOMES:
            raise DryRunError(
                f"--outcome {step_id}={word}: {word!r} is not one of {', '.join(OUTCOMES)}",
                step=step_id,
                outcome=word,
            )
    specs = action_specs()
    loaded = await asyncio.to_thread(load_playbook, file, specs)
    playbook = loaded.playbook
    runnables = _runnables(playbook)
    _check_steps(playbook, runnables, outcomes)
    means = None
    if history is not None:
        try:
            means = await asyncio.to_thread(read_step_durations, history, playbook.id)
        except StoreError as exc:
            raise DryRunError(str(exc)) from exc
    plans = {
        step_id: _plan(step_id, runnable, outcomes.get(step_id, StepOutcome.SUCCESS), means)
        for step_id, runnable in runnables.items()
    }
    actions = sorted({runnable.action for runnable in runnables.values()})
    registry = ActionRegistry(_stand_in(specs[name], plans) for name in actions)
    clock = VirtualClock(datetime.now(UTC).replace(microsecond=0))
    failure = FailureInfo(
        "dry-run",
        playbook.trigger.component,
        playbook.trigger.error_ids[0],
        "simulated failure (dry run)",
    )
    with tempfile.TemporaryDirectory(prefix="graylogic-dry-run-") as scratch:
        async with Database(Path(scratch) / "dry-run.db") as db:
            # The execution refers to its playbook version and failure: seed both.
            await PlaybookVersions(db).seed(playbook, loaded.source, str(file), clock.now())
            executions = ExecutionRepository(db)
            await executions.record_failure(
                failure_id=failure.failure_id,
                component=failure.component,
                error_id=failure.error_id,
                severity="low",
                message=failure.message,
                detected_at=clock.now(),
            )
            runner = Runner(registry, executions, clock, rng=_MeanJitter())
            outcome = await runner.run(_scripted(playbook), failure)
            record = await executions.record(outcome.execution_id)
    if record is None:
        raise StoreError(f"the dry run's execution {outcome.execution_id} was not recorded")
    return _report(file, playbook, plans, record)


def _check_steps(
    playbook: Playbook, runnables: Mapping[str, _Runnable], outcomes: Mapping[str, str]
) -> None:
    """Every scripted id is one the runner will call an action for; a group is not."""
    groups = {
        step.id: [f"{step.id}.{branch.id}" for branch in step.parallel.branches]
        for step in playbook.steps
        if step.parallel is not None
    }
    for step_id, word in outcomes.items():
        if step_id in runnables:
            continue
        if step_id in groups:
            message = (
                f"--outcome {step_id}: step {step_id!r} is a parallel group; its outcome is"
                f" its branches' (script {', '.join(groups[step_id])})"
            )
        else:
            message = (
                f"--outcome {step_id}: {playbook.id} has no step {step_id!r}"
                f" (its steps: {', '.join(runnables)})"
            )
        raise DryRunError(message, step=step_id, outcome=word)


def _scripted(playbook: Playbook) -> Playbook:
    """The playbook without ``success_when``: a scripted outcome is already the judged one.

    ``success_when`` turns an action's output into an outcome; a stand-in has no
    output to judge, so its verdict would overrule what --outcome asked for.
    """

    def unjudged(step: Step) -> Step:
        update: dict[str, Any] = {"success_when": None}
        if step.parallel is not None:
            branches = [branch.model_copy(update=update) for branch in step.parallel.branches]
            update["parallel"] = step.parallel.model_copy(update={"branches": branches})
        return step.model_copy(update=update)

    return playbook.model_copy(update={"steps": [unjudged(step) for step in playbook.steps]})


def _report(
    file: Path, playbook: Playbook, plans: Mapping[str, _Plan], record: Mapping[str, Any]
) -> DryRunReport:
    """The report, from the execution record the runner wrote."""
    steps = []
    latest_end: datetime | None = None
    for row in record["steps"]:
        started = datetime.fromisoformat(row["started_at"])
        pause = 0.0 if latest_end is None else (started - latest_end).total_seconds()
        ended = datetime.fromisoformat(row["completed_at"])
        latest_end = ended if latest_end is None else max(latest_end, ended)
        plan = plans.get(row["id"])  # none for a group's own row
        if plan is None:
            source = "its branches"
        else:
            source = "not run" if row["outcome"] == StepOutcome.SKIPPED else plan.source
        steps.append(
            DryRunStep(
                step=row["step"],
                id=row["id"],
                action=row["action"],
                target=row["target"],
                attempt=row["attempt"],
                attempts=plan.call.attempts if plan else 1,
                outcome=row["outcome"],
                transitioned_to=row["transitioned_to"],
                expected_seconds=row["duration_seconds"],
                source=source,
                asked=plan.outcome if plan else None,
                pause_seconds=round(max(pause, 0.0), 3),
            )
        )
    end = record["outcome"]
    return DryRunReport(
        playbook=playbook.id,
        version=playbook.version,
        file=file,
        status=end["status"],
        resolved_by=end["resolved_by"],
        detail=end["detail"],
        expected_seconds=record["duration_seconds"],
        steps=tuple(steps),
    )


def format_report(report: DryRunReport) -> str:
    """The path as a table a person reads, then how it ends and how long it is expected to take."""
    header = ("#", "step", "action", "target", "attempt", "outcome", "then", "expected", "source")
    rows = [
        (
            str(step.step),
            step.id,
            step.action,
            step.target or "-",
            f"{step.attempt}/{step.attempts}",
            _outcome(step),
            step.transitioned_to or "-",
            _seconds(step.expected_seconds),
            step.source,
        )
        for step in report.steps
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    right = {0, 7}  # numbers line up on the right

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [
        f"dry run of {report.playbook} {report.version} ({report.file}):"
        " simulated, nothing was run or written",
        line(header),
    ]
    for step, row in zip(report.steps, rows, strict=True):
        if step.pause_seconds > 0:
            lines.append(" " * (widths[0] + 2) + f"(backoff {_seconds(step.pause_seconds)})")
        lines.append(line(row))
    by = f" by {report.resolved_by}" if report.resolved_by else ""
    lines.append(f"{report.status}{by}: {report.detail}")
    lines.append(f"expected time: {_seconds(report.expected_seconds)}")
    return "\n".join(lines)


def _outcome(step: DryRunStep) -> str:
    """The outcome, and what was asked when the engine made it another (a history longer
    than the timeout, a target that cannot be filled in); skipped and interrupted
    explain themselves."""
    if step.asked in (None, step.outcome) or step.outcome not in OUTCOMES:
        return step.outcome
    return f"{step.outcome} (asked {step.asked})"


def _seconds(value: float) -> str:
    return f"{value:.1f} s"
