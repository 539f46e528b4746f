"""What every attack of ``attack.py`` shares: the daemon under attack, the broker kills and
their timing, the watch on the daemon while it is attacked, and the must-hold criteria.

The daemon is ``faults.FaultDaemon`` (its own Mosquitto through the process backend, the
shipped recovery policy with only durations shortened, ``mqtt`` essential) with one
``tests/bridge_sim.py`` bridge, ``bridge-knx``, and the soft file limit systemd gives a
unit that sets none (``LimitNOFILE=1024``, hard limit as inherited).

Each attack is run through ``Attack``: its body breaks things while ``Watch`` samples the
daemon (RSS, file descriptors, its broker's pid), ``Attack.kill`` kills the broker during
the attack and once after it, and ``Attack.result`` adds the criteria every attack must
hold (``COMMON``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from crash_store import audit_problems, audit_verify
from daemon_under_test import Bridge, stored_at
from faults import MIB, FaultDaemon, shipped_policy
from mqtt_ping import HOST, mqtt_connect
from processes import BenchError, is_live
from supervisors import REPO

UNIT = REPO / "systemd" / "graylogic-supervisor.service"
BRIDGE = Bridge("bridge-knx", heartbeat_window_s=1.0, check_interval_s=0.25)
# Shortened durations (SHORTENABLE in faults.py), as soak.py: each kill meets a re-armed
# budget; counts, windows, rates and the termination gate stay as shipped.
DURATIONS = {
    "rearm_after_s": 1.0,
    "open_cooldown_s": 1.0,
    "max_open_cooldown_s": 8.0,
    "stabilisation_s": 2.0,
}
PLAYBOOK_COOLDOWN_S = 2.0
SOFT_NOFILE = 1024  # systemd's DefaultLimitNOFILE soft limit; the unit sets no LimitNOFILE
RECOVERED_WITHIN_S = 1.0  # the requirement: SIGKILL to a successful MQTT round trip
RECOVERY_WAIT_S = 30.0  # how long a kill is followed (short mode: a third of it)
UP_BEFORE_KILL_S = 2.0  # the broker up this long (a re-armed budget) before the next kill
CAUSE_SLACK_S = 2.0  # an execution started this long after our kill's recovery is still ours
HEALTHZ_WAIT_S = 10.0
SAMPLE_EVERY_S = 0.1
COMMON = (
    "daemon_alive",
    "kill_during_recovered",
    "kill_after_recovered",
    "no_healthy_broker_restart",
    "rss_under_memory_max",
    "store_intact",
    "audit_verifies",
)

logger = logging.getLogger("bench.attack")


def memory_max_mb(unit: Path = UNIT) -> float:
    """The unit's ``MemoryMax=`` in MiB (systemd's suffixes are powers of 1024)."""
    found = re.search(r"^MemoryMax=(\d+)([KMGT]?)\s*$", unit.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise BenchError(f"{unit} sets no MemoryMax=")
    power = " KMGT".index(found[2] or " ")
    return float(int(found[1]) * 1024**power / MIB)


class AttackDaemon(FaultDaemon):
    """The daemon under attack, with what the attacks read from it."""

    def __init__(self, workdir: Path) -> None:
        policy = shipped_policy(["mqtt"], **DURATIONS)
        super().__init__(
            workdir, policy=policy, playbook_cooldown_s=PLAYBOOK_COOLDOWN_S, bridges=(BRIDGE,)
        )

    def __enter__(self) -> AttackDaemon:
        super().__enter__()
        try:
            proc = psutil.Process(self.pid)
            hard = proc.rlimit(psutil.RLIMIT_NOFILE)[1]
            proc.rlimit(psutil.RLIMIT_NOFILE, (min(SOFT_NOFILE, hard), hard))
            self.wait_for_log(r"MQTT link to \S+ up")
            self.wait_for_log(rf"{BRIDGE.name} is healthy")
        except BaseException:
            self.close()
            raise
        return self

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "supervisor.yaml"

    def password(self) -> str:
        found = self.wait_for_log(r"created the admin page user 'admin'; its password is in (\S+) ")
        return Path(found[1]).read_text().strip()

    def healthz(self, timeout_s: float = 2.0) -> bool:
        url = f"{self.base_url}/healthz"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=timeout_s) as answer,
        ):
            return int(answer.status) == 200
        return False

    def component_healthy(self, name: str) -> float | None:
        """The daemon's ``component_healthy`` gauge for ``name`` (1, 0 or -1), if scraped."""
        with contextlib.suppress(OSError, urllib.error.URLError):
            for line in self.scrape(timeout_s=2.0).splitlines():
                if line.startswith(f'graylogic_supervisor_component_healthy{{component="{name}"'):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def alive(self) -> bool:
        return self.daemon.popen.poll() is None

    def broker_children(self) -> list[int]:
        """The daemon's live Mosquitto children (cheaper than a scan of every process)."""
        found = []
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children():
                with contextlib.suppress(psutil.Error):
                    if child.name() == "mosquitto" and is_live(child):
                        found.append(child.pid)
        return found

    def integrity(self) -> str:
        try:
            with self.store() as db:
                return str(db.execute("PRAGMA integrity_check").fetchone()[0])
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def audit_problems(self, config: Path | None = None) -> list[str]:
        return audit_problems(audit_verify(config or self.config_path))

    def mqtt_executions(self, since_wall: float) -> list[float]:
        """Start times (epoch seconds) of the executions for ``mqtt`` since ``since_wall``."""
        with self.store() as db:
            rows = db.execute(
                "SELECT started_at FROM executions WHERE component = 'mqtt'"
            ).fetchall()
        return sorted(t for t in (stored_at(r[0]) for r in rows) if t >= since_wall)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL of the daemon's broker and what followed."""

    label: str
    wall: float  # time.time() just before the kill
    pid: int | None  # None: there was no live broker to kill
    new_pid: int | None
    recovered_s: float | None  # SIGKILL to the first CONNACK of a new broker of the daemon

    def recovered_within(self, limit_s: float) -> bool:
        return self.recovered_s is not None and self.recovered_s <= limit_s


class Watch:
    """A thread that samples the daemon while it is attacked: its peak RSS and file
    descriptors, and its broker's pid. A broker that goes away, or is replaced, without
    our kill is a restart of a healthy broker."""

    def __init__(self, daemon: AttackDaemon) -> None:
        self.daemon = daemon
        self.killed: set[int] = set()
        self.rss_mb_peak = 0.0
        self.fds_peak = 0
        self.restarts: list[dict[str, Any]] = []  # pid changes we did not cause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        brokers = self.daemon.broker_children()
        while not self._stop.wait(SAMPLE_EVERY_S):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.daemon.pid)  # a new one after a restart
                with proc.oneshot():
                    self.rss_mb_peak = max(self.rss_mb_peak, proc.memory_info().rss / MIB)
                    self.fds_peak = max(self.fds_peak, proc.num_fds())
            now = self.daemon.broker_children()
            for gone in set(brokers) - set(now) - self.killed:
                at_s = round(time.monotonic() - self._started, 2)
                self.restarts.append({"at_s": at_s, "pid": gone, "replaced_by": now})
                logger.warning("broker pid %d went away without our kill", gone)
            brokers = now


class Attack:
    """One attack's run: its figures, its criteria, its kills and its watch."""

    def __init__(
        self,
        name: str,
        daemon: AttackDaemon,
        short: bool,
        recovered_within_s: float = RECOVERED_WITHIN_S,
    ) -> None:
        self.name = name
        self.daemon = daemon
        self.short = short
        self.recovered_within_s = recovered_within_s
        self.figures: dict[str, Any] = {}
        self.criteria: dict[str, bool] = {}
        self.kills: list[Kill] = []
        self.error: str | None = None
        self.watch = Watch(daemon)
        self.wait_s = RECOVERY_WAIT_S / 3 if short else RECOVERY_WAIT_S
        self._last_up = 0.0

    # -- the broker -------------------------------------------------------------

    def kill(self, label: str) -> Kill:
        """SIGKILL the daemon's broker once it has been up ``UP_BEFORE_KILL_S``; time the
        first CONNACK from its successor. Recorded, whatever happens."""
        pid = self._broker_up()
        if pid is None:
            done = Kill(label, time.time(), None, None, None)
            self.kills.append(done)
            return done
        self.watch.killed.add(pid)
        wall, t0 = time.time(), time.perf_counter()
        self.daemon.kill_broker(pid)
        recovered_s, new_pid = None, None
        while time.perf_counter() - t0 < self.wait_s:
            sock = mqtt_connect(self.daemon.port, timeout_s=0.25)
            if sock is not None:
                elapsed = time.perf_counter() - t0
                sock.close()
                children = self.daemon.broker_children()
                if children and pid not in children:
                    recovered_s, new_pid = elapsed, children[0]
                    break
            if not self.daemon.alive():
                break
            time.sleep(0.002)
        self._last_up = time.monotonic()
        done = Kill(
            label, wall, pid, new_pid, None if recovered_s is None else round(recovered_s, 4)
        )
        logger.info(
            "%s: kill %s of pid %d: recovered in %s s", self.name, label, pid, done.recovered_s
        )
        self.kills.append(done)
        return done

    def _broker_up(self) -> int | None:
        """The live broker, once it has answered for ``UP_BEFORE_KILL_S``; None if none comes."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and self.daemon.alive():
            pid = self.daemon.live_broker()
            if pid is None:
                self._last_up = time.monotonic()
            elif time.monotonic() - self._last_up >= UP_BEFORE_KILL_S:
                return pid
            time.sleep(0.05)
        logger.error("%s: no live broker to kill", self.name)
        return None

    def kill_in_background(self, label: str, delay_s: float) -> threading.Thread:
        """``kill(label)`` after ``delay_s``, on a thread, while the caller attacks."""

        def later() -> None:
            time.sleep(delay_s)
            self.kill(label)

        thread = threading.Thread(target=later, name=f"kill-{label}", daemon=True)
        thread.start()
        return thread

    # -- the run ----------------------------------------------------------------

    def run(self, body: Callable[[Attack], None], *, kill_after: bool = True) -> dict[str, Any]:
        """The body under the watch, then the kill after it and the common criteria."""
        started = time.time()
        log_path, log_offset = self.daemon.daemon.log_path, self.daemon.log_size()
        logger.info("attack %s", self.name)
        with self.watch:
            try:
                body(self)
            except (BenchError, OSError, psutil.Error, ValueError, RuntimeError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                logger.error("%s: %s", self.name, self.error)
            if kill_after:  # recorded as not recovered when the daemon is gone
                self.kill("after")
        if self.daemon.daemon.log_path == log_path:  # else restarted, with a log of its own
            log = self.daemon.log_since(log_offset)
            self.figures["log_lines"] = log.count("\n")
            self.figures["log_bytes"] = len(log.encode())
        self.common(started)
        return self.result()

    def common(self, since_wall: float) -> None:
        """The criteria every attack must hold."""
        daemon = self.daemon
        alive = daemon.alive() and wait_until(daemon.healthz, HEALTHZ_WAIT_S)
        during = [k for k in self.kills if k.label != "after"]
        after = [k for k in self.kills if k.label == "after"]
        try:
            started = daemon.mqtt_executions(since_wall)
        except sqlite3.Error as exc:  # unreadable: nothing can be said to be ours
            logger.error("%s: executions unreadable: %s", self.name, exc)
            started = [float("nan")]
        uncaused = uncaused_executions(self.kills, started, self.wait_s)
        limit = memory_max_mb()
        integrity = daemon.integrity()
        audit = daemon.audit_problems()
        self.criteria = {
            "daemon_alive": alive,
            "kill_during_recovered": bool(during)
            and all(k.recovered_within(self.recovered_within_s) for k in during),
            "kill_after_recovered": bool(after)
            and all(k.recovered_within(self.recovered_within_s) for k in after),
            "no_healthy_broker_restart": not self.watch.restarts and not uncaused,
            "rss_under_memory_max": 0 < self.watch.rss_mb_peak < limit,
            "store_intact": integrity == "ok",
            "audit_verifies": not audit,
            **self.criteria,
        }
        self.figures.update(
            kills=[asdict(k) for k in self.kills],
            broker_gone_without_our_kill=self.watch.restarts,
            mqtt_executions_we_did_not_cause=len(uncaused),
            rss_mb_peak=round(self.watch.rss_mb_peak, 1),
            memory_max_mb=limit,
            fds_peak=self.watch.fds_peak,
            integrity_check=integrity,
            audit_verify=audit,
        )

    def result(self) -> dict[str, Any]:
        return {
            "ok": self.error is None and all(self.criteria.values()),
            "criteria": self.criteria,
            "figures": self.figures,
            "error": self.error,
        }


def uncaused_executions(kills: list[Kill], started: list[float], wait_s: float) -> list[float]:
    """Executions for ``mqtt`` that began outside every window of our kills (from the kill
    to its recovery, or to the end of the wait when it did not recover, plus a slack)."""
    windows = [
        (k.wall - 0.1, k.wall + (k.recovered_s or wait_s) + CAUSE_SLACK_S)
        for k in kills
        if k.pid is not None
    ]
    return [t for t in started if not any(lo <= t <= hi for lo, hi in windows)]


def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)
