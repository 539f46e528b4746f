"""Dry runs: the real runner walks a playbook on scripted outcomes and virtual time.

The shipped MQTT playbook is the main subject: its two ways in, its retry with
backoff and its 30 s verify timeout; small playbooks written here cover the
playbook deadline, loop bounds, conditions, parallel groups and undos. History
comes from a real store file built through the store's own classes; what the
dry run must not touch is checked on disk.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.engine.dryrun import (
    DryRunError,
    DryRunReport,
    VirtualClock,
    dry_run,
    format_report,
    parse_outcomes,
)
from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository, StepEnd
from graylogic_supervisor.store.versions import PlaybookVersions
from tests.sources import PLAYBOOK_HEADER

REPO = Path(__file__).resolve().parents[2]
MQTT = REPO / "playbooks" / "mqtt-recover.yaml"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def path_of(report: DryRunReport) -> list[tuple[str, int, str, str | None]]:
    return [(s.id, s.attempt, s.outcome, s.transitioned_to) for s in report.steps]


# --- the shipped MQTT playbook -----------------------------------------------------------


async def test_by_default_every_step_succeeds_and_the_probe_resolves_it() -> None:
    report = await dry_run(MQTT, {}, None)
    assert (report.playbook, report.version) == ("PLAY-MQTT-RECOVER-001", "1.0.0")
    assert path_of(report) == [
        ("check_broker", 1, "success", "probe_broker"),
        ("probe_broker", 1, "success", "done"),
    ]
    # No fix ran, so the runner credits the step that reached done.
    assert (report.status, report.resolved_by) == ("resolved", "probe_broker")
    assert report.expected_seconds == 0.0
    assert [s.source for s in report.steps] == ["no history", "no history"]


async def test_a_dead_broker_process_is_restarted_and_the_restart_resolves_it() -> None:
    report = await dry_run(MQTT, {"check_broker": "failure"}, None)
    assert path_of(report) == [
        ("check_broker", 1, "failure", "restart"),
        ("restart", 1, "success", "verify"),
        ("verify", 1, "success", "done"),
    ]
    assert (report.status, report.resolved_by) == ("resolved", "restart")
    assert [(s.id, s.action, s.target) for s in report.steps] == [
        ("check_broker", "check_service", "mosquitto"),
        ("restart", "restart_service", "mosquitto"),
        ("verify", "wait_for_health", "mqtt"),
    ]


async def test_a_failing_restart_is_retried_after_its_backoff_then_escalated() -> None:
    report = await dry_run(MQTT, {"check_broker": "failure", "restart": "failure"}, None)
    assert path_of(report) == [
        ("check_broker", 1, "failure", "restart"),
        ("restart", 1, "failure", "retry:restart"),
        ("restart", 2, "failure", "escalate"),
    ]
    assert (report.status, report.resolved_by) == ("escalated", None)
    # backoff_seconds 2 with its ±20 % jitter taken at the mean: 2 s of virtual time.
    assert [s.pause_seconds for s in report.steps] == [0.0, 0.0, 2.0]
    assert report.expected_seconds == pytest.approx(2.0)
    text = format_report(report)
    assert "1/2" in text
    assert "2/2" in text
    assert "(backoff 2.0 s)" in text
    assert text.endswith("expected time: 2.0 s")


async def test_a_verify_timeout_costs_its_30_seconds_and_escalates() -> None:
    report = await dry_run(MQTT, {"check_broker": "failure", "verify": "timeout"}, None)
    assert path_of(report)[-1] == ("verify", 1, "timeout", "escalate")
    verify = report.steps[-1]
    assert verify.expected_seconds == pytest.approx(30.0)
    assert verify.source == "timeout 30 s"
    assert report.status == "escalated"
    assert report.expected_seconds == pytest.approx(30.0)


async def test_an_action_that_raises_is_an_error_that_takes_the_failure_transition() -> None:
    report = await dry_run(MQTT, {"check_broker": "error"}, None)
    assert path_of(report)[0] == ("check_broker", 1, "error", "restart")
    assert report.resolved_by == "restart"


async def test_the_json_shape_is_the_documented_one() -> None:
    report = await dry_run(MQTT, {"check_broker": "failure"}, None)
    data = json.loads(json.dumps(report.as_json()))
    assert set(data) == {
        "playbook",
        "version",
        "status",
        "resolved_by",
        "expected_seconds",
        "steps",
    }
    assert data["steps"][1] == {
        "step": 2,
        "id": "restart",
        "action": "restart_service",
        "target": "mosquitto",
        "attempt": 1,
        "outcome": "success",
        "transitioned_to": "verify",
        "expected_seconds": 0.0,
        "source": "no history",
    }


async def test_the_text_report_shows_the_path_the_ending_and_the_total() -> None:
    text = format_report(await dry_run(MQTT, {"check_broker": "failure"}, None))
    lines = text.splitlines()
    assert lines[0].startswith("dry run of PLAY-MQTT-RECOVER-001 1.0.0")
    assert lines[1].split() == [
        "#",
        "step",
        "action",
        "target",
        "attempt",
        "outcome",
        "then",
        "expected",
        "source",
    ]
    assert lines[2].split() == [
        "1",
        "check_broker",
        "check_service",
        "mosquitto",
        "1/1",
        "failure",
        "restart",
        "0.0",
        "s",
        "no",
        "history",
    ]
    assert lines[-2] == "resolved by restart: resolved after step verify"
    assert lines[-1] == "expected time: 0.0 s"


# --- the playbook's own deadline ---------------------------------------------------------


def write(directory: Path, text: str) -> Path:
    path = directory / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_the_playbook_deadline_cuts_a_step_timeout_as_in_a_real_run(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        PLAYBOOK_HEADER
        + "limits: {timeout_seconds: 10}\n"
        + "steps:\n"
        + "  - {id: probe, name: Probe, action: check_mqtt, timeout_seconds: 30,"
        + " on_success: done}\n",
    )
    report = await dry_run(file, {"probe": "timeout"}, None)
    assert path_of(report) == [("probe", 1, "timeout", "failed")]
    assert report.status == "failed"
    assert report.expected_seconds == pytest.approx(10.0)


async def test_a_loop_ends_at_its_visit_bound(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        PLAYBOOK_HEADER
        + "steps:\n"
        + "  - {id: probe, name: Probe, action: check_mqtt, max_visits: 3,"
        + " on_success: done, on_failure: wait}\n"
        + "  - {id: wait, name: Wait, action: log, params: {message: again},"
        + " on_success: probe}\n",
    )
    report = await dry_run(file, {"probe": "failure"}, None)
    assert [s.id for s in report.steps] == ["probe", "wait"] * 3
    assert report.status == "escalated"
    assert "loop bound" in report.detail


# --- conditions --------------------------------------------------------------------------

CONDITIONS = (
    PLAYBOOK_HEADER
    + """\
steps:
  - {id: check, name: Check, action: check_mqtt, on_failure: next}
  - id: fix
    name: Fix
    action: restart_service
    target: "{failure.component}"
    when: steps.check.outcome == "failure"
  - id: verify
    name: Verify
    action: check_mqtt
    success_when: steps.verify.output.latency_ms < 100
    on_success: done
"""
)


async def test_when_conditions_see_the_scripted_outcomes(tmp_path: Path) -> None:
    file = write(tmp_path, CONDITIONS)
    healthy = await dry_run(file, {}, None)
    assert [(s.id, s.outcome, s.source) for s in healthy.steps][:2] == [
        ("check", "success", "no history"),
        ("fix", "skipped", "not run"),
    ]
    broken = await dry_run(file, {"check": "failure"}, None)
    fix = broken.steps[1]
    assert (fix.id, fix.outcome, fix.target) == ("fix", "success", "mqtt")


async def test_a_scripted_outcome_stands_for_the_success_when_verdict(tmp_path: Path) -> None:
    file = write(tmp_path, CONDITIONS)
    assert (await dry_run(file, {}, None)).steps[-1].outcome == "success"
    assert (await dry_run(file, {"verify": "failure"}, None)).steps[-1].outcome == "failure"


# --- parallel groups and undos ----------------------------------------------------------

GROUP = (
    PLAYBOOK_HEADER
    + """\
steps:
  - id: both
    name: Restart both
    parallel:
      branches:
        - id: broker
          name: Restart the broker
          action: restart_service
          target: mosquitto
          compensate: {action: stop_service, target: mosquitto}
        - {id: bridge, name: Restart the bridge, action: restart_service, target: knx}
    on_success: verify
  - {id: verify, name: Verify, action: check_mqtt, on_success: done}
"""
)


async def test_a_group_is_scripted_through_its_branches_and_its_undos(tmp_path: Path) -> None:
    file = write(tmp_path, GROUP)
    report = await dry_run(
        file, {"both.bridge": "failure", "both.broker:compensate": "failure"}, None
    )
    rows = {s.id: (s.action, s.outcome, s.transitioned_to) for s in report.steps}
    assert rows == {
        "both": ("parallel", "failure", "escalate"),
        "both.broker": ("restart_service", "success", "join:both"),
        "both.bridge": ("restart_service", "failure", "join:both"),
        "both.broker:compensate": ("stop_service", "failure", None),
    }
    assert report.steps[0].source == "its branches"
    assert report.status == "escalated"


async def test_by_default_a_group_succeeds_and_nothing_is_undone(tmp_path: Path) -> None:
    report = await dry_run(write(tmp_path, GROUP), {}, None)
    assert [s.id for s in report.steps][-1] == "verify"
    assert not any(s.id.endswith(":compensate") for s in report.steps)
    assert report.status == "resolved"


async def test_branches_time_out_each_on_its_own_timeout(tmp_path: Path) -> None:
    report = await dry_run(
        write(tmp_path, GROUP), {"both.broker": "timeout", "both.bridge": "timeout"}, None
    )
    outcomes = {s.id: s.outcome for s in report.steps}
    assert (outcomes["both.broker"], outcomes["both.bridge"]) == ("timeout", "timeout")


async def test_a_group_itself_cannot_be_scripted(tmp_path: Path) -> None:
    with pytest.raises(DryRunError, match=r"parallel group.*both\.broker, both\.bridge"):
        await dry_run(write(tmp_path, GROUP), {"both": "failure"}, None)


# --- history -----------------------------------------------------------------------------


async def seed_history(path: Path, rows: dict[str, list[tuple[str, str, float]]]) -> None:
    """One execution per playbook file, with (step id, outcome, duration) rows."""
    async with Database(path) as db:
        versions = PlaybookVersions(db)
        executions = ExecutionRepository(db)
        for number, (file_name, steps) in enumerate(rows.items()):
            loaded = load_playbook(REPO / "playbooks" / file_name, builtin_specs())
            book = loaded.playbook
            await versions.seed(book, loaded.source, file_name, NOW)
            failure_id, execution_id = f"fail-{number}", f"exec-{number}"
            await executions.record_failure(
                failure_id,
                book.trigger.component,
                book.trigger.error_ids[0],
                "critical",
                message="down",
                detected_at=NOW,
            )
            await executions.start_execution(
                execution_id,
                book.id,
                book.version,
                failure_id,
                error_id=book.trigger.error_ids[0],
                component=book.trigger.component,
                started_at=NOW,
            )
            for seq, (step_id, outcome, seconds) in enumerate(steps, 1):
                row = await executions.start_step(
                    execution_id,
                    seq,
                    step_id,
                    step_id,
                    action="log",
                    target=None,
                    attempt=1,
                    started_at=NOW,
                )
                await executions.finish_step(
                    row,
                    NOW + timedelta(seconds=seconds),
                    seconds,
                    StepEnd(outcome, None, {}, None, None),
                )


HISTORY = {
    "mqtt-recover.yaml": [
        ("check_broker", "success", 1.0),
        ("check_broker", "success", 2.0),
        ("check_broker", "success", 3.0),
        ("check_broker", "failure", 4.0),
        ("restart", "failure", 8.0),
    ],
    # Another playbook's step of the same id must not count.
    "bridge-recover.yaml": [("check_broker", "success", 100.0)],
}


def snapshot(path: Path) -> tuple[list[str], int, bytes]:
    return sorted(p.name for p in path.parent.iterdir()), path.stat().st_mtime_ns, path.read_bytes()


async def test_history_gives_each_step_its_mean_duration(tmp_path: Path) -> None:
    store = tmp_path / "history.db"
    await seed_history(store, HISTORY)
    report = await dry_run(MQTT, {}, store)
    assert [(s.id, s.expected_seconds, s.source) for s in report.steps] == [
        ("check_broker", pytest.approx(2.0), "history: mean of 3"),
        ("probe_broker", 0.0, "no history"),
    ]
    assert report.expected_seconds == pytest.approx(2.0)
    assert "history: mean of 3" in format_report(report)


async def test_without_history_of_that_outcome_the_mean_of_any_outcome_is_used(
    tmp_path: Path,
) -> None:
    store = tmp_path / "history.db"
    await seed_history(store, HISTORY)
    report = await dry_run(MQTT, {"check_broker": "failure"}, store)
    assert [(s.id, s.expected_seconds, s.source) for s in report.steps] == [
        ("check_broker", pytest.approx(4.0), "history: mean of 1"),
        ("restart", pytest.approx(8.0), "history: mean of 1 (any outcome)"),
        ("verify", 0.0, "no history"),
    ]
    assert report.expected_seconds == pytest.approx(12.0)


async def test_a_history_longer_than_the_step_timeout_is_cut_by_it_as_in_a_real_run(
    tmp_path: Path,
) -> None:
    store = tmp_path / "history.db"
    # check_broker's timeout is 5 s: a step that took 9 s then would time out now.
    await seed_history(store, {"mqtt-recover.yaml": [("check_broker", "failure", 9.0)]})
    report = await dry_run(MQTT, {"check_broker": "failure"}, store)
    first = report.steps[0]
    assert (first.outcome, first.transitioned_to) == ("timeout", "restart")
    assert first.expected_seconds == pytest.approx(5.0)
    assert "timeout (asked failure)" in format_report(report)


async def test_history_is_read_without_changing_the_store_file_or_its_directory(
    tmp_path: Path,
) -> None:
    store = tmp_path / "history.db"
    await seed_history(store, HISTORY)
    before = snapshot(store)
    await dry_run(MQTT, {"check_broker": "failure", "restart": "failure"}, store)
    assert snapshot(store) == before


async def test_history_is_read_while_the_daemon_holds_the_store_open(tmp_path: Path) -> None:
    store = tmp_path / "history.db"
    await seed_history(store, HISTORY)
    async with Database(store):
        report = await dry_run(MQTT, {}, store)
    assert report.steps[0].source == "history: mean of 3"


async def test_a_history_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with pytest.raises(DryRunError, match="cannot open history"):
        await dry_run(MQTT, {}, missing)
    assert not missing.exists()
    garbage = tmp_path / "notes.db"
    garbage.write_text("not sqlite", encoding="utf-8")
    with pytest.raises(DryRunError, match="is not a supervisor store"):
        await dry_run(MQTT, {}, garbage)


# --- bad input ---------------------------------------------------------------------------


async def test_an_outcome_for_a_step_the_playbook_lacks_names_the_step() -> None:
    with pytest.raises(DryRunError) as caught:
        await dry_run(MQTT, {"reboot": "failure"}, None)
    assert caught.value.step == "reboot"
    assert "has no step 'reboot'" in str(caught.value)
    assert "check_broker, probe_broker, restart, verify" in str(caught.value)


async def test_an_outcome_word_outside_the_four_is_refused() -> None:
    with pytest.raises(DryRunError) as caught:
        await dry_run(MQTT, {"restart": "explode"}, None)
    assert (caught.value.step, caught.value.outcome) == ("restart", "explode")
    assert "not one of success, failure, timeout, error" in str(caught.value)


def test_outcome_arguments_are_step_equals_outcome() -> None:
    assert parse_outcomes(["restart=failure", "verify=timeout"]) == {
        "restart": "failure",
        "verify": "timeout",
    }
    with pytest.raises(DryRunError, match="expected STEP=OUTCOME"):
        parse_outcomes(["restart"])
    with pytest.raises(DryRunError, match="twice"):
        parse_outcomes(["restart=failure", "restart=success"])


async def test_an_invalid_playbook_reports_the_loaders_problems(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        PLAYBOOK_HEADER
        + "steps:\n  - {id: probe, name: Probe, action: reboot, on_success: done}\n",
    )
    with pytest.raises(PlaybookError) as caught:
        await dry_run(file, {}, None)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (file, 8, "steps[0].action")
    assert "unknown action 'reboot'" in problem.message


# --- nothing touched ---------------------------------------------------------------------


async def test_the_throwaway_store_is_removed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made: list[Path] = []

    class Recorded(tempfile.TemporaryDirectory[str]):
        def __enter__(self) -> str:
            name = super().__enter__()
            made.append(Path(name))
            assert made[-1].parent == scratch
            return name

    monkeypatch.setattr(tempfile, "TemporaryDirectory", Recorded)
    await dry_run(MQTT, {"check_broker": "failure", "restart": "failure"}, None)
    assert len(made) == 1
    assert not made[0].exists()
    assert list(scratch.iterdir()) == []


async def test_a_dry_run_takes_no_real_time_for_virtual_waits() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    report = await dry_run(MQTT, {"check_broker": "failure", "verify": "timeout"}, None)
    assert report.expected_seconds == pytest.approx(30.0)
    assert loop.time() - began < 5


# --- the virtual clock -------------------------------------------------------------------


async def test_the_virtual_clock_sleeps_at_once() -> None:
    clock = VirtualClock(NOW)
    await clock.sleep(90)
    assert clock.monotonic() == 90
    assert clock.now() == NOW + timedelta(seconds=90)


async def test_a_wait_that_sleeps_past_its_deadline_times_out_at_the_deadline() -> None:
    clock = VirtualClock(NOW)

    async def slow() -> str:
        try:
            await clock.sleep(100)
        except Exception:  # an action's broad handler must not swallow the timeout
            return "swallowed"
        return "answered"

    with pytest.raises(TimeoutError):
        await clock.wait_for(slow(), 30)
    assert clock.monotonic() == 30
    assert await clock.wait_for(slow(), 100) == "answered"
    assert clock.monotonic() == 130


async def test_concurrent_waits_each_spend_only_their_own_budget() -> None:
    clock = VirtualClock(NOW)

    async def branch() -> str:
        await clock.sleep(25)
        return "done"

    first, second = await asyncio.gather(clock.wait_for(branch(), 30), clock.wait_for(branch(), 30))
    assert (first, second) == ("done", "done")


async def test_the_earlier_of_nested_deadlines_is_the_one_that_fires() -> None:
    clock = VirtualClock(NOW)

    async def inner() -> Any:
        return await clock.wait_for(clock.sleep(50), 40)

    with pytest.raises(TimeoutError, match="within 10 s"):
        await clock.wait_for(inner(), 10)
    assert clock.monotonic() == 10
