"""Crash consistency: ``kill -9`` of the daemon at random points of its runs, then a restart.

One daemon (``BenchDaemon``: its own broker, store and topic root) supervises a worker
that exits by itself every second or so; each exit runs ``PLAYBOOK`` below (idempotent
checks and sleeps, an alert and a restart that are not, retries, undo steps). Until the
store holds ``--executions`` executions, the daemon gets SIGKILL at a seeded moment
(inside a step, around a step's commit, between steps, in the undo steps, during
start-up, during a resumption, at random) and is started again. Each step the daemon
reports finished on MQTT (after its row is committed) is kept by our own client.

Checked at every kill, after every start-up and after the final SIGTERM: no finished
step row or ended execution lost or changed; every step reported finished is in the
store as reported; each run a kill stopped is ``interrupted``, or resumed at the step it
was in and only if that step is idempotent; nothing else left ``running``;
``PRAGMA integrity_check``; ``graylogic-supervisor audit verify``; no traceback; a clean
stop. The policy is relaxed (``RELAXED_POLICY``, breaker cooldowns 0) and the failure
memory off. bench/README.md has the method, the checks and the figures.

    .venv/bin/python bench/crash.py [--executions 200] [--seed 1] [--json] [--keep]
    .venv/bin/python bench/crash.py --short --json              # CI: --executions 20
    .venv/bin/python bench/crash.py --recheck DIR --json        # a kept run's store, again
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import queue
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import yaml
from crash_store import (
    DETAIL,
    ERROR,
    KILLED_DETAIL,
    OUTCOME,
    RUN_AGAIN,
    STATUS,
    SeenStep,
    StoreState,
    audit_problems,
    audit_verify,
    landed,
    lost_or_changed,
    read_state,
    start_up_problems,
    stopped_runs,
    unrecorded,
)
from daemon_under_test import BenchDaemon, logged_at
from mqtt_ping import HOST
from processes import BenchError, descendants, free_port, run_harness
from recovery import workspace
from supervisors import RELAXED_POLICY

logger = logging.getLogger("bench.crash")

PLAYBOOK = """\
id: PLAY-CRASH-WORKER-001
name: Worker recovery, killed at random by bench/crash.py
version: 1.0.0
trigger: {component: worker, error_ids: [ERR-SVC-PROC-001]}
limits: {max_attempts: 100, cooldown_seconds: 0, timeout_seconds: 30}
steps:
  - {id: check, name: Is the worker running, action: check_service, target: worker,
     idempotent: true, on_success: done, on_failure: settle}
  - {id: settle, name: Let it settle, action: sleep, params: {seconds: 0.3},
     idempotent: true, on_success: announce}
  - id: announce
    name: Tell the site the worker restarts
    action: alert
    params: {severity: low, message: restarting the worker}
    compensate: {action: alert, params: {severity: low, message: worker restart withdrawn}}
    on_success: restart
  - id: restart
    name: Restart the worker
    action: restart_service
    target: worker
    retry: {attempts: 2, backoff_seconds: 0.1}
    compensate: {action: sleep, params: {seconds: 0.3}}  # a slow undo: kills land in it
    on_success: soak
  - {id: soak, name: Let it run, action: sleep, params: {seconds: 0.4},
     idempotent: true, on_success: confirm}
  - id: confirm
    name: Is it still running
    action: check_service
    target: worker
    idempotent: true
    retry: {attempts: 3, backoff_seconds: 0.1}
    on_success: done
    on_failure: escalate
"""
_PARSED = yaml.safe_load(PLAYBOOK)
IDEMPOTENT = {_PARSED["id"]: frozenset(s["id"] for s in _PARSED["steps"] if s.get("idempotent"))}
LAST_CONFIRM = next(s["retry"]["attempts"] for s in _PARSED["steps"] if s["id"] == "confirm")
# How long each step takes here: a kill aimed inside one is spread over it.
STEP_SECONDS = {
    "check": 0.002,
    "settle": 0.3,
    "announce": 0.002,
    "restart": 0.05,
    "soak": 0.4,
    "confirm": 0.002,
}
FAST_STEPS = ("check", "announce", "confirm")
COMMIT_WINDOW_S = 0.003
UNDO_S = 0.32  # the undo steps: a 0.3 s sleep, then an alert
RESUMED_S = 0.5
RANDOM_S = 2.5
AIM_TIMEOUT_S = 8.0  # a moment that does not come: kill anyway, counted as missed
AIMS = {"step": 3.0, "commit": 2.0, "between": 2.0, "compensation": 1.5, "random": 1.5}
START_UP_WEIGHT = 1.0
RESUMPTION_CHANCE = 0.3  # when the last kill left a run to resume
DEFAULT_START_UP_S = 0.25
START_UP_SHARE = 0.8  # of the last start-up's length, from its broker line

WORKER_ARGV = [sys.executable, "-c", "import random, time; time.sleep(random.uniform(0.2, 1.0))"]
WORKER_SERVICE = {"name": "worker", "backend": "process", "argv": WORKER_ARGV, "stop_timeout_s": 1}
WORKER = {"kind": "service", "service": "worker", "error_id": "ERR-SVC-PROC-001", "grace_s": 0}
POLICY = {**RELAXED_POLICY, "open_cooldown_s": 0, "max_open_cooldown_s": 0}

BROKER_LINE = r"broker: running our own Mosquitto"
BROKER_PORT = rf"{BROKER_LINE} .* on {re.escape(HOST)}:(\d+)"
RUNNING_LINE = r"graylogic-supervisor \S+ running for site"
RESUMING = re.compile(r"resuming (exec-\S+) of \S+ at step (\S+) \(it is idempotent\)")
RESUME_LOG_S = 5.0
ADMIN_PORT_TRIES = 5
OBSERVED = "crash-observed.json"
CHECKS = (
    "no_finished_step_lost",
    "mqtt_steps_recorded",
    "interrupted_or_resumed",
    "none_left_running",
    "integrity_ok",
    "audit_chain_ok",
    "no_tracebacks",
    "clean_stop",
)


class CrashDaemon(BenchDaemon):
    """``BenchDaemon`` supervising the worker with the crash playbook only; memory off."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, components={"worker": WORKER}, policy=POLICY)
        self.config_path = workdir / "supervisor.yaml"
        self.admin_port = free_port()  # kept across restarts

    def _config(self) -> str:
        config = yaml.safe_load(super()._config())
        config["admin"]["port"] = self.admin_port
        config["services"] = [WORKER_SERVICE]
        config["memory"] = {"enabled": False}
        return yaml.safe_dump(config, sort_keys=False)

    def _playbooks(self) -> Path:
        directory = self.workdir / "playbooks"
        directory.mkdir(exist_ok=True)
        (directory / "crash.yaml").write_text(PLAYBOOK, encoding="utf-8")
        return directory

    def check_running(self) -> None:
        """Only the daemon started last: the ones killed before are meant to be dead."""
        self.daemon.check_running()

    def launch(self) -> tuple[int, float]:
        """Start a daemon; returns where its log begins and the wall time it started."""
        log = self.workdir / self.LOG_NAME
        offset = log.stat().st_size if log.exists() else 0
        launched_at = time.time()
        self.start()
        return offset, launched_at

    def until_running(self, offset: int, launched_at: float) -> tuple[int, float]:
        """Wait for start-up. An admin port another process took while the daemon was
        down ends a start ("cannot listen on"): start again on another one."""
        for _ in range(ADMIN_PORT_TRIES):
            try:
                self.wait_for_log(RUNNING_LINE, offset)
                return offset, launched_at
            except BenchError:
                if "cannot listen on" not in self.log_since(offset):
                    raise
            logger.warning("admin port %d taken meanwhile; starting on another", self.admin_port)
            self.admin_port = free_port()
            offset, launched_at = self.launch()
        raise BenchError(f"no admin port after {ADMIN_PORT_TRIES} tries")

    def kill(self) -> list[int]:
        """SIGKILL the daemon; returns the pids of the children it leaves behind."""
        orphans = [p.pid for p in descendants(self.pid)]
        self.daemon.popen.kill()
        self.daemon.popen.wait()
        return orphans


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress message: a step started or finished, or the execution ended."""

    execution_id: str
    run_started: str  # the progress's ``started_at``: a resumed run has its own
    steps_done: int
    step: str | None
    attempt: int | None
    outcome: str | None
    result: str | None
    status: str

    @property
    def kind(self) -> str:
        if self.status != "running":
            return "ended"
        return "finished" if self.outcome is not None else "started"


class Observer:
    """Our own MQTT client on the progress topics: what the daemon said it finished.

    A step's end is published after its row is committed, so each one seen here must
    be in the store whatever happens to the daemon next. Keyed by run and count, so a
    QoS 1 duplicate is not counted twice.
    """

    def __init__(self, port: int, topic_root: str) -> None:
        self.finished: dict[tuple[str, str, int], SeenStep] = {}
        self.ended: dict[str, str] = {}
        self._port = port
        self._topic = f"{topic_root}/supervisor/execution/+"
        self._queue: queue.Queue[Progress] = queue.Queue()
        self._attempts: dict[tuple[str, str], int] = {}
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"crash-{port}")
        self._client.on_connect = self._subscribe
        self._client.on_message = self._received
        # the broker dies with each daemon's successor: come back within tens of ms
        self._client.reconnect_delay_set(min_delay=0.02, max_delay=0.1)  # type: ignore[arg-type]

    def __enter__(self) -> Observer:
        self._client.connect_async(HOST, self._port, keepalive=10)
        self._client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def follow(self, port: int) -> None:
        """Move to the broker the daemon runs now (it moves when its port is held)."""
        if port != self._port:
            logger.warning("the daemon moved its broker from port %d to %d", self._port, port)
            self.__exit__()
            self._port = port
            self.__enter__()

    def _subscribe(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _received(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        step = payload.get("step") or {}
        self._queue.put(
            Progress(
                payload["execution_id"],
                str(payload.get("started_at")),
                int(payload.get("steps_done", 0)),
                step.get("id"),
                step.get("attempt"),
                step.get("outcome"),
                step.get("result"),
                payload.get("status", "running"),
            )
        )

    def next(self, timeout_s: float) -> Progress | None:
        try:
            progress = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        run = (progress.execution_id, progress.run_started)
        if progress.kind == "started" and progress.attempt is not None:
            self._attempts[run] = progress.attempt
        if progress.kind == "finished" and progress.step is not None:
            # the end says no attempt: it is the one that started last in this run
            progress = dataclasses.replace(progress, attempt=self._attempts.get(run))
            key = (progress.execution_id, progress.run_started, progress.steps_done)
            seen = (progress.execution_id, progress.step, progress.outcome or "", progress.result)
            self.finished[key] = seen
        elif progress.kind == "ended":
            self.ended[progress.execution_id] = progress.status
        return progress

    def drain(self) -> None:
        while self.next(0.0) is not None:
            pass

    def seen(self) -> Counter[SeenStep]:
        return Counter(self.finished.values())


# -- the run --------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    kills: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)  # (aim, landed)
    missed: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {c: [] for c in CHECKS}
    )
    resumed: Counter[str] = dataclasses.field(default_factory=Counter)
    resumable_not_resumed: int = 0
    rows_compared: int = 0
    start_ups: int = 0
    leaked: dict[int, str] = dataclasses.field(default_factory=dict)  # pid -> command line

    def add(self, problems: Mapping[str, list[str]]) -> None:
        for check, found in problems.items():
            self.problems[check].extend(found)


def resumed_in(log: str) -> dict[str, str]:
    return {m[1]: m[2] for m in RESUMING.finditer(log)}


def start_up_seconds(log: str) -> float | None:
    """From the broker line to "running for site", by the log's own timestamps."""
    begin = re.search(rf"^(\S+ \S+) .*{BROKER_LINE}", log, re.MULTILINE)
    end = re.search(rf"^(\S+ \S+) .*{RUNNING_LINE}", log, re.MULTILINE)
    if begin is None or end is None:
        return None
    return logged_at(end[1]) - logged_at(begin[1])


def wait_progress(
    daemon: CrashDaemon, observer: Observer, wanted: Callable[[Progress], bool]
) -> bool:
    deadline = time.monotonic() + AIM_TIMEOUT_S
    while time.monotonic() < deadline:
        progress = observer.next(0.05)
        if progress is not None and wanted(progress):
            return True
        daemon.check_running()
    return False


def await_moment(
    aim: str, daemon: CrashDaemon, observer: Observer, rng: random.Random, offset: int
) -> bool:
    """Wait for the moment ``aim`` names, then its seeded pause; False if it never came."""
    observer.drain()  # what is queued happened before: it must not trigger the kill
    if aim == "random":
        time.sleep(rng.uniform(0, RANDOM_S))
        return True
    if aim == "resumption":
        try:
            daemon.wait_for_log(RESUMING.pattern, offset, timeout_s=AIM_TIMEOUT_S)
        except BenchError:
            return False
        time.sleep(rng.uniform(0, RESUMED_S))
        return True
    if aim in ("step", "commit"):
        target = rng.choice(list(STEP_SECONDS) if aim == "step" else FAST_STEPS)
        pause = rng.uniform(0, STEP_SECONDS[target] if aim == "step" else COMMIT_WINDOW_S)
        came = wait_progress(daemon, observer, lambda p: p.kind == "started" and p.step == target)
    elif aim == "between":
        pause = 0.0
        came = wait_progress(daemon, observer, lambda p: p.kind == "finished")
    else:  # compensation: the last check's last attempt failed, the undo steps run next
        pause = rng.uniform(0, UNDO_S)
        came = wait_progress(
            daemon,
            observer,
            lambda p: (
                p.kind == "finished"
                and (p.step, p.outcome, p.attempt) == ("confirm", "failure", LAST_CONFIRM)
            ),
        )
    if came:
        time.sleep(pause)
    return came


def choose_aim(rng: random.Random, resumable: bool) -> str:
    if resumable and rng.random() < RESUMPTION_CHANCE:
        return "resumption"
    weights = {**AIMS, "start-up": START_UP_WEIGHT}
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def reap_orphans(pids: list[int], leaked: dict[int, str]) -> list[int]:
    """Collect the killed daemons' children once dead (we are their subreaper); those
    still alive after a start-up, which should have stopped them, go into ``leaked``."""
    left = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done == 0:
            left.append(pid)
            with contextlib.suppress(psutil.Error):
                leaked[pid] = " ".join(psutil.Process(pid).cmdline())
    return left


def crash_loop(
    daemon: CrashDaemon, observer: Observer, rng: random.Random, wanted: int, tally: Tally
) -> StoreState | None:
    """Kill and restart until the store holds ``wanted`` executions after a start-up.

    Returns the store as the last kill left it; the daemon is left running.
    """
    death: StoreState | None = None
    start_up_s = DEFAULT_START_UP_S
    verify: subprocess.Popen[str] | None = None
    orphans: list[int] = []
    aim = ""
    while True:
        offset, launched_at = daemon.launch()
        resumable = death is not None and any(
            s.resumable for s in stopped_runs(death, IDEMPOTENT).values()
        )
        aim = choose_aim(rng, resumable and aim != "resumption")  # no chains of them
        resumed: dict[str, str] = {}
        if aim == "start-up":
            daemon.wait_for_log(BROKER_LINE, offset)  # polled: seen a little late
            time.sleep(rng.uniform(0, START_UP_SHARE * start_up_s))
        else:
            offset, launched_at = daemon.until_running(offset, launched_at)
            log = daemon.log_since(offset)
            start_up_s = start_up_seconds(log) or start_up_s
            observer.follow(int(re.findall(BROKER_PORT, log)[0]))
            now, resumed = after_start_up(daemon, observer, death, offset, launched_at, tally)
            if verify is not None:
                tally.add({"audit_chain_ok": audit_problems(verify)})
            verify = audit_verify(daemon.config_path)
            orphans = reap_orphans(orphans, tally.leaked)
            if len(now.executions) >= wanted:
                tally.add({"audit_chain_ok": audit_problems(verify)})
                return death
            if not await_moment(aim, daemon, observer, rng, offset):
                tally.missed[aim] += 1
        orphans += daemon.kill()
        state = read_state(daemon)
        started_up = re.search(RUNNING_LINE, daemon.log_since(offset)) is not None
        if aim == "start-up" and started_up:  # it landed late: start-up did its part
            _, resumed = after_start_up(daemon, observer, death, offset, launched_at, tally, state)
        tally.kills[aim, landed(state, started_up, resumed)] += 1
        observer.drain()
        check_death(observer, death, state, tally)
        death = state


def check_death(
    observer: Observer, before: StoreState | None, state: StoreState, tally: Tally
) -> None:
    tally.add(
        {
            "integrity_ok": [] if state.integrity == "ok" else [f"at a kill: {state.integrity}"],
            "mqtt_steps_recorded": unrecorded(observer.seen(), observer.ended, state),
            "no_finished_step_lost": lost_or_changed(before, state) if before else [],
        }
    )
    tally.rows_compared += len(before.steps) if before else 0


def chosen_to_resume(death: StoreState, now: StoreState) -> dict[str, str]:
    """Runs start-up decided to resume, from the store: not interrupted, and the row of
    the step they were in marked interrupted with "run again"."""
    chosen = {}
    for stopped in stopped_runs(death, IDEMPOTENT).values():
        row = now.steps.get(stopped.row_id) if stopped.row_id is not None else None
        if (
            stopped.step_id is not None
            and row is not None
            and row[OUTCOME] == "interrupted"
            and str(row[ERROR]).endswith(RUN_AGAIN)
            and now.executions[stopped.execution_id][STATUS] != "interrupted"
        ):
            chosen[stopped.execution_id] = stopped.step_id
    return chosen


def logged_resumptions(
    daemon: CrashDaemon, offset: int, chosen: Mapping[str, str], alive: bool
) -> dict[str, str]:
    """The ``resuming …`` lines of this start; a live daemon logs them as its loops
    begin, just after "running for site": wait for the chosen ones a little."""
    deadline = time.monotonic() + (RESUME_LOG_S if alive else 0.0)
    while True:
        logged = resumed_in(daemon.log_since(offset))
        if set(chosen) <= set(logged) or time.monotonic() >= deadline:
            return logged
        time.sleep(0.02)


def after_start_up(
    daemon: CrashDaemon,
    observer: Observer,
    death: StoreState | None,
    offset: int,
    launched_at: float,
    tally: Tally,
    state: StoreState | None = None,
) -> tuple[StoreState, dict[str, str]]:
    """The checks once a restarted daemon has finished start-up (``state``: it was killed
    since, and this is what it left). Returns the store and the runs it resumed."""
    tally.start_ups += 1
    now = state or read_state(daemon)
    observer.drain()
    tally.add(
        {
            "integrity_ok": [] if now.integrity == "ok" else [f"after start-up: {now.integrity}"],
            "mqtt_steps_recorded": unrecorded(observer.seen(), observer.ended, now),
        }
    )
    if death is None:
        return now, {}
    chosen = chosen_to_resume(death, now)
    logged = logged_resumptions(daemon, offset, chosen, alive=state is None)
    never = (
        [] if state else [f"{e} chosen to resume, never resumed" for e in chosen if e not in logged]
    )
    resumed = {**chosen, **logged}
    tally.resumed.update(resumed.keys())
    tally.rows_compared += len(death.steps)
    tally.add({"no_finished_step_lost": lost_or_changed(death, now)})
    tally.add(start_up_problems(death, now, resumed, launched_at, IDEMPOTENT))
    tally.add({"interrupted_or_resumed": never})
    for stopped in stopped_runs(death, IDEMPOTENT).values():
        if stopped.execution_id not in resumed:
            tally.resumable_not_resumed += stopped.resumable
    return now, resumed


def final_checks(
    daemon: CrashDaemon, observer: Observer, death: StoreState | None, tally: Tally
) -> tuple[int, StoreState]:
    """Stop the daemon with SIGTERM, then look at what it left."""
    daemon.daemon.popen.send_signal(signal.SIGTERM)
    code = daemon.daemon.popen.wait(timeout=30)
    time.sleep(0.2)  # the last progress messages in flight
    observer.drain()
    final = read_state(daemon)
    check_death(observer, death, final, tally)
    tally.add(
        {
            "none_left_running": [f"{e} running after the final stop" for e in final.running()],
            "audit_chain_ok": audit_problems(audit_verify(daemon.config_path)),
            "clean_stop": [] if code == 0 else [f"exit code {code} after SIGTERM"],
            "no_tracebacks": [
                line for line in daemon.log_since(0).splitlines() if "Traceback" in line
            ],
        }
    )
    return code, final


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    began = time.monotonic()
    tally = Tally()
    with workspace("crash", args.keep) as workdir:
        daemon = CrashDaemon(workdir)
        try:
            with Observer(daemon.port, daemon.topic_root) as observer:
                try:
                    death = crash_loop(daemon, observer, rng, args.executions, tally)
                    code, final = final_checks(daemon, observer, death, tally)
                finally:
                    if daemon.children:
                        daemon.close()
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("crash: %s", exc)
            return {"error": f"{type(exc).__name__}: {exc}"}
        if args.keep:
            observed = {
                "finished_seen": list(observer.finished.values()),
                "ended_seen": observer.ended,
                "final": final.to_json(),
            }
            (workdir / OBSERVED).write_text(json.dumps(observed), encoding="utf-8")
        result = summary(tally, final, observer, time.monotonic() - began, args)
        result["exit_code_after_sigterm"] = code
        if args.keep:
            result["workdir"] = str(workdir)
    return result


def summary(
    tally: Tally, final: StoreState, observer: Observer, seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    checks = {c: not tally.problems[c] for c in CHECKS}
    by_aim: dict[str, dict[str, int]] = {}
    for (aim, where), n in sorted(tally.kills.items()):
        by_aim.setdefault(aim, {})[where] = n
    by_phase: Counter[str] = Counter()
    for (_, where), n in tally.kills.items():
        by_phase[where] += n
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "violations": {c: p[:10] for c, p in tally.problems.items() if p},
        "executions": len(final.executions),
        "statuses": dict(Counter(row[STATUS] for row in final.executions.values())),
        "kills": sum(tally.kills.values()),
        "kills_by_phase": dict(by_phase),
        "kills_by_aim": by_aim,
        "aims_missed": dict(tally.missed),
        "start_ups_checked": tally.start_ups,
        "resumed_executions": len(tally.resumed),
        "interrupted_by_kills": sum(
            1
            for row in final.executions.values()
            if row[STATUS] == "interrupted" and str(row[DETAIL]).startswith(KILLED_DETAIL)
        ),
        "resumable_but_interrupted": tally.resumable_not_resumed,
        "leaked_orphans": sorted(set(tally.leaked.values())),
        "leaked_orphan_count": len(tally.leaked),
        "steps_reported_finished": len(observer.finished),
        "step_rows": len(final.steps),
        "finished_rows_compared": tally.rows_compared,
        "seconds": round(seconds, 1),
        "seed": args.seed,
        "executions_wanted": args.executions,
        "policy": POLICY,
        "memory": "off",
    }


def recheck(workdir: Path) -> dict[str, Any]:
    """A kept run's store against what that run saw: is anything gone since?"""
    daemon = CrashDaemon(workdir)
    observed = json.loads((workdir / OBSERVED).read_text(encoding="utf-8"))
    reference = StoreState.from_json(observed["final"])
    seen: Counter[SeenStep] = Counter((e, s, o, r) for e, s, o, r in observed["finished_seen"])
    now = read_state(daemon)
    problems = {
        "no_finished_step_lost": lost_or_changed(reference, now),
        "mqtt_steps_recorded": unrecorded(seen, observed["ended_seen"], now),
        "none_left_running": [f"{e} running" for e in now.running()],
        "integrity_ok": [] if now.integrity == "ok" else [now.integrity],
        "audit_chain_ok": audit_problems(audit_verify(daemon.config_path)),
    }
    checks = {c: not p for c, p in problems.items()}
    violations = {c: p[:10] for c, p in problems.items() if p}
    return {"ok": all(checks.values()), "checks": checks, "violations": violations}


def table(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"crash: error: {result['error']}"
    phases = ["step", "between steps", "compensation", "resumption", "start-up", "idle"]
    lines = [
        f"crash: {result['executions']} executions, {result['kills']} kills in"
        f" {result['seconds']:g} s (seed {result['seed']}); policy relaxed"
        " (RELAXED_POLICY, breaker cooldowns 0), failure memory off",
        f"{'kills: aimed at / landed in':<30}" + "".join(f"{p:>14}" for p in phases),
    ]
    for aim, where in result["kills_by_aim"].items():
        lines.append(f"  {aim:<28}" + "".join(f"{where.get(p, 0):>14}" for p in phases))
    lines.append(
        f"  {'total':<28}" + "".join(f"{result['kills_by_phase'].get(p, 0):>14}" for p in phases)
    )
    lines += [
        f"aims that never came           {result['aims_missed'] or 'none'}",
        f"executions                     {result['statuses']}",
        f"resumed / interrupted by kills {result['resumed_executions']}"
        f" / {result['interrupted_by_kills']}"
        f" (resumable but interrupted: {result['resumable_but_interrupted']})",
        f"steps reported finished (MQTT) {result['steps_reported_finished']};"
        f" finished rows compared at kills and start-ups {result['finished_rows_compared']}",
    ]
    lines += [
        f"check {name:<25}{'ok' if ok else 'FAILED'}" for name, ok in result["checks"].items()
    ]
    for check, problems in result["violations"].items():
        lines += [f"  {check}: {p}" for p in problems]
    if result["leaked_orphan_count"]:
        lines.append(
            f"FINDING: {result['leaked_orphan_count']} children of killed daemons outlived the"
            " next start-up (no pid file to stop them by): " + "; ".join(result["leaked_orphans"])
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=200, help="executions wanted (200)")
    parser.add_argument("--short", action="store_true", help="CI: --executions 20")
    parser.add_argument("--seed", type=int, default=1, help="seed for the aims and waits (1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir and logs")
    parser.add_argument("--recheck", type=Path, help="check a kept run's directory again")
    args = parser.parse_args(argv)
    if args.short:
        args.executions = 20
    if args.executions < 1:
        parser.error("--executions >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.recheck is not None:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
        result = recheck(args.recheck)
        print(json.dumps(result) if args.json else table(result))
        return 0 if result.get("ok") else 1
    return run_harness(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
