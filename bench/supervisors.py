"""The supervisors under test, each with its own Mosquitto in its own directory."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import psutil
import yaml
from mqtt_ping import HOST, mqtt_connect
from processes import (
    BenchError,
    Child,
    broker_child,
    ensure_installed,
    free_port,
    is_live,
    is_ours,
    kill_leftovers,
    served_by,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "config" / "supervisor.yaml"
READY_TIMEOUT_S = 30.0

logger = logging.getLogger("bench.recovery")


def mosquitto_conf(port: int, pid_file: Path | None = None) -> str:
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "persistence false",
    ]
    if pid_file is not None:
        lines.append(f"pid_file {pid_file}")
    return "\n".join(lines) + "\n"


class Target(ABC):
    """One supervisor with its own Mosquitto, started on enter and stopped on exit."""

    name: ClassVar[str]

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.children: list[Child] = []

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def broker_pid(self) -> int | None:
        """The live broker's pid as the supervisor knows it, or None."""

    def findings(self) -> dict[str, object]:
        return {}

    @property
    def supervisor_pid(self) -> int:
        """The supervisor's own process (the first one we started), not its broker."""
        return self.children[0].popen.pid

    def wait_started(self) -> None:
        """Return once the supervisor has finished starting: by default, when the broker is up."""
        wait_ready(self)

    def spawn(self, argv: Sequence[str], log_name: str) -> Child:
        child = Child(argv, self.workdir / log_name, self.workdir)
        self.children.append(child)
        return child

    def check_running(self) -> None:
        for child in self.children:
            child.check_running()

    def __enter__(self) -> Target:
        try:
            self.start()
            pid = wait_ready(self)
        except BaseException:
            self.close()
            raise
        logger.info("%s ready: broker pid %d on %s:%d", self.name, pid, HOST, self.port)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        kill_leftovers(self.workdir)


# Every rule of the recovery policy out of the way of a benchmark that breaks the same
# component on purpose every few seconds: no safe mode, no flapping hold, and the
# attempt budget re-armed as soon as the component is healthy again. Failures are
# recorded before the policy is asked, so none of this changes when they are detected.
RELAXED_POLICY: dict[str, Any] = {
    "rearm_after_s": 0,
    "safe_mode_failures": 1_000_000,
    "flap_changes": 1_000_000,
    "termination_min_sample": 1_000_000,
}


class Graylogic(Target):
    name = "graylogic-supervisor"
    PORT_LINE = re.compile(r"broker: .* on 127\.0\.0\.1:(\d+)")
    RUNNING_LINE = re.compile(r"graylogic-supervisor \S+ running for site")
    OUTCOME = re.compile(r"(PLAY-\S+) \S+ for mqtt: (\w+) in ([\d.]+) s")
    EXPECTED_WARNINGS = ("exited unexpectedly", "mqtt is unhealthy", "MQTT link to")
    LOG_NAME = "daemon.log"

    def start(self) -> None:
        ensure_installed("mosquitto", "mosquitto")  # the daemon runs it from PATH
        config = self.workdir / "supervisor.yaml"
        config.write_text(self._config(), encoding="utf-8")
        argv = [sys.executable, "-m", "graylogic_supervisor", "run", "--config", str(config)]
        self.daemon = self.spawn([*argv, "--log-format", "text"], self.LOG_NAME)
        self.port = self._logged_port()

    def _config(self) -> str:
        """The shipped config, as an installer runs it (the ``mqtt`` component probed
        every 5 s, the admin page on), with this run's own directory, broker port and
        admin port, and the recovery policy relaxed (``RELAXED_POLICY``)."""
        config = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
        config["state_dir"] = str(self.workdir / "state")
        config["catalog"] = str(SHIPPED_CONFIG.parent / config["catalog"])
        config["playbooks"]["directory"] = str(REPO / "playbooks")
        config["broker"].update(mode="process", process_port=self.port)
        config["admin"]["port"] = free_port()  # never the shipped 8080
        config["policy"].update(RELAXED_POLICY)
        return yaml.safe_dump(config, sort_keys=False)

    def _logged_port(self) -> int:
        """The port the daemon chose: the next free one if ours was taken meanwhile."""
        port = int(self._wait_logged(self.PORT_LINE)[1])
        if port != self.port:
            logger.warning("daemon moved the broker to port %d", port)
        return port

    def wait_started(self) -> None:
        """Start-up is over: the first admin's password hashed, the admin page up."""
        self._wait_logged(self.RUNNING_LINE)

    def _wait_logged(self, pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.daemon.check_running()
            match = pattern.search(self.daemon.log_path.read_text(encoding="utf-8"))
            if match:
                return match
            time.sleep(0.01)
        raise BenchError(f"daemon logged no {pattern.pattern!r}: {self.daemon.log_tail()}")

    def broker_pid(self) -> int | None:
        return broker_child(self.daemon.popen.pid, self.workdir)

    def findings(self) -> dict[str, object]:
        """What the daemon's log says about the recoveries it ran."""
        with contextlib.suppress(OSError):
            return self._read_log((self.workdir / self.LOG_NAME).read_text(encoding="utf-8"))
        return {}

    def _read_log(self, text: str) -> dict[str, object]:
        outcomes: Counter[str] = Counter()
        durations: list[float] = []
        unexpected: list[str] = []
        for line in text.splitlines():
            match = self.OUTCOME.search(line)
            if match:
                outcomes[match[2]] += 1
                durations.append(float(match[3]))
            if self._unexpected(line):
                unexpected.append(line)
        return {
            "daemon_log": {
                "executions": dict(outcomes),
                "playbook_median_s": statistics.median(durations) if durations else None,
                "playbook_max_s": max(durations, default=None),
                "unexpected_lines": unexpected[:20],
            }
        }

    def _unexpected(self, line: str) -> bool:
        """ERRORs, tracebacks, and WARNINGs other than the kill, the drop and the alarm."""
        fields = line.split(maxsplit=3)
        level = fields[2] if len(fields) > 2 else ""
        if level == "WARNING":
            return not any(w in line for w in self.EXPECTED_WARNINGS)
        return level in ("ERROR", "CRITICAL") or line.startswith("Traceback")


class Supervisord(Target):
    name = "supervisord"

    def start(self) -> None:
        supervisord = ensure_installed("supervisord", "supervisor")
        mosquitto = ensure_installed("mosquitto", "mosquitto")
        (self.workdir / "mosquitto.conf").write_text(mosquitto_conf(self.port), encoding="utf-8")
        config = self.workdir / "supervisord.conf"
        config.write_text(self._config(mosquitto), encoding="utf-8")
        self.supervisord = self.spawn([supervisord, "-n", "-c", str(config)], "supervisord.out")

    def _config(self, mosquitto: str) -> str:
        d = self.workdir
        return f"""\
[unix_http_server]
file={d}/supervisor.sock

[supervisord]
nodaemon=true
user=root
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock

[program:mosquitto]
command={mosquitto} -c {d}/mosquitto.conf
autostart=true
autorestart=true
startsecs=0
startretries=1000
stopwaitsecs=3
stdout_logfile={d}/mosquitto.log
redirect_stderr=true
"""

    def broker_pid(self) -> int | None:
        return broker_child(self.supervisord.popen.pid, self.workdir)


class Monit(Target):
    name = "monit"

    def start(self) -> None:
        monit = ensure_installed("monit", "monit")
        mosquitto = ensure_installed("mosquitto", "mosquitto")
        pkill = ensure_installed("pkill", "procps")
        run_dir = self.workdir / "run"
        run_dir.mkdir()
        if os.geteuid() == 0:
            # Mosquitto writes its pid file after switching from root to its own user.
            with contextlib.suppress(KeyError):
                shutil.chown(run_dir, user=pwd.getpwnam("mosquitto").pw_uid)
        self.pid_file = run_dir / "mosquitto.pid"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(self.port, self.pid_file), encoding="utf-8")
        control = self.workdir / "monitrc"
        control.touch(mode=0o600)
        control.chmod(0o600)  # monit refuses a control file others can read
        control.write_text(
            f"""\
set daemon 1
set log {self.workdir}/monit.log
set pidfile {self.workdir}/monit.pid
set idfile {self.workdir}/monit.id
set statefile {self.workdir}/monit.state

check process mosquitto with pidfile {self.pid_file}
  start program = "{mosquitto} -c {conf} -d"
  stop program = "{pkill} -F {self.pid_file}"
""",
            encoding="utf-8",
        )
        self.spawn([monit, "-I", "-c", str(control)], "monit.out")

    def broker_pid(self) -> int | None:
        try:
            proc = psutil.Process(int(self.pid_file.read_text(encoding="utf-8")))
            ok = proc.name() == "mosquitto" and is_live(proc) and is_ours(proc, self.workdir)
        except (OSError, ValueError, psutil.Error):
            return None
        return proc.pid if ok else None


TARGETS: dict[str, type[Target]] = {t.name: t for t in (Graylogic, Supervisord, Monit)}


def wait_ready(target: Target) -> int:
    """Wait until the broker the supervisor knows answers CONNECT; returns its pid."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        target.check_running()
        pid = target.broker_pid()
        sock = mqtt_connect(target.port) if pid is not None else None
        if pid is not None and sock is not None:
            with sock:
                if served_by(sock, target.workdir) == pid:
                    return pid
        time.sleep(0.01)
    raise BenchError(f"{target.name}: no CONNACK on port {target.port} in {READY_TIMEOUT_S} s")
