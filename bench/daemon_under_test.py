"""The daemon under test, with a config of the benchmark's own: components, bridges, policy.

A ``Graylogic`` target (``supervisors.py``) whose config is built from parts: its own
broker on a free port, its own state directory and topic root, optional protocol
bridges (``tests/bridge_sim.py`` processes that publish a heartbeat every 0.2 s, run
by the daemon's process backend), extra components, and the shipped playbooks copied
into the work directory with test-sized step timeouts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from mqtt_ping import HOST
from processes import (
    BenchError,
    children_running,
    descendants,
    free_port,
    kill_recorded,
    kill_survivors,
)
from supervisors import READY_TIMEOUT_S, REPO, Graylogic

BRIDGE_SIM = REPO / "tests" / "bridge_sim.py"
SHIPPED_STEP_TIMEOUT = "timeout_seconds: 60"

logger = logging.getLogger("bench.recovery")

MQTT_COMPONENT: dict[str, Any] = {
    "kind": "mqtt",
    "service": "mosquitto",
    "error_id": "ERR-INFRA-MQTT-001",
    "check_interval_s": 5,
    "grace_s": 0,
}


@dataclass(frozen=True)
class Bridge:
    """A protocol bridge: a heartbeat publisher run by the daemon, watched as a component."""

    name: str
    heartbeat_window_s: float
    check_interval_s: float

    @property
    def service(self) -> str:
        return f"graylogic-{self.name}"


class BenchDaemon(Graylogic):
    """The daemon with its broker, ``bridges`` and ``components`` besides ``mqtt``."""

    OUTCOME = re.compile(r"(PLAY-\S+) \S+ for \S+: (\w+) in ([\d.]+) s")  # any component

    def __init__(
        self,
        workdir: Path,
        *,
        bridges: tuple[Bridge, ...] = (),
        components: Mapping[str, Mapping[str, Any]] | None = None,
        policy: Mapping[str, Any] | None = None,
        step_timeout_s: float = 3.0,
        expected_warnings: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir)
        self.bridges = bridges
        self.components = dict(components or {})
        self.policy = dict(policy or {})
        self.step_timeout_s = step_timeout_s
        self.topic_root = f"glbench/{workdir.name}"
        self.state_dir = workdir / "state"
        self.db_path = self.state_dir / "supervisor.db"
        self.expected_warnings = expected_warnings  # what the caller's faults cause

    # -- config ---------------------------------------------------------------

    def _config(self) -> str:
        playbooks = self._playbooks()
        config: dict[str, Any] = {
            "site": {"name": "bench"},
            "state_dir": str(self.state_dir),
            "catalog": str(REPO / "config" / "catalog.yaml"),
            "log_level": "INFO",
            "shutdown_grace_s": 2,
            "mqtt": {
                "topic_root": self.topic_root,
                "reconnect": {"initial_s": 0.05, "max_s": 1},
            },
            "broker": {"mode": "process", "process_port": self.port},
            "admin": {"bind": HOST, "port": free_port()},  # never the shipped 8080
            "playbooks": {"directory": str(playbooks)},
            "services": [self._service(b) for b in self.bridges],
            "components": {
                "mqtt": MQTT_COMPONENT,
                **{b.name: self._component(b) for b in self.bridges},
                **self.components,
            },
        }
        if self.policy:
            config["policy"] = self.policy
        return yaml.safe_dump(config, sort_keys=False)

    def _playbooks(self) -> Path:
        """The shipped playbooks, their 60 s step timeouts cut to ``step_timeout_s``."""
        directory = self.workdir / "playbooks"
        directory.mkdir(exist_ok=True)
        shorter = f"timeout_seconds: {self.step_timeout_s:g}"
        for source in sorted((REPO / "playbooks").glob("*.yaml")):
            text = source.read_text(encoding="utf-8").replace(SHIPPED_STEP_TIMEOUT, shorter)
            (directory / source.name).write_text(text, encoding="utf-8")
        return directory

    def _service(self, bridge: Bridge) -> dict[str, Any]:
        topic = f"{self.topic_root}/health/{bridge.name}"
        return {
            "name": bridge.service,
            "backend": "process",
            "argv": [sys.executable, str(BRIDGE_SIM), HOST, str(self.port), topic],
            "stop_timeout_s": 1,
        }

    def _component(self, bridge: Bridge) -> dict[str, Any]:
        return {
            "kind": "bridge",
            "service": bridge.service,
            "error_id": "ERR-BRIDGE-HEARTBEAT-001",
            "heartbeat_window_s": bridge.heartbeat_window_s,
            "check_interval_s": bridge.check_interval_s,
            "depends_on": ["mqtt"],
        }

    # -- running ----------------------------------------------------------------

    def start(self) -> None:
        chosen = self.port
        super().start()
        if self.bridges and self.port != chosen:
            raise BenchError(f"port {chosen} was taken meanwhile: the bridges would miss it")

    def __enter__(self) -> BenchDaemon:
        super().__enter__()
        try:
            self.wait_for_log(r"graylogic-supervisor \S+ running for site")
        except BaseException:
            self.close()
            raise
        return self

    @property
    def pid(self) -> int:
        return self.daemon.popen.pid

    def bridge_pid(self, bridge: Bridge) -> int | None:
        """The live process of this bridge, if the daemon runs exactly one."""
        found = children_running(self.pid, f"{self.topic_root}/health/{bridge.name}")
        return found[0] if len(found) == 1 else None

    def close(self) -> None:
        """Stop the daemon (it stops its children), then kill whatever it left behind.

        Ctrl-C is ignored meanwhile, so a second one cannot cut the clean-up short.
        """
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            family = descendants(self.pid) if self.children else []
            super().close()
            kill_survivors(family)
            kill_recorded(self.state_dir / "run")
        finally:
            signal.signal(signal.SIGINT, previous)

    # -- what it wrote ----------------------------------------------------------

    def _unexpected(self, line: str) -> bool:
        """ERRORs, tracebacks, and WARNINGs other than those the faults cause."""
        fields = line.split(maxsplit=3)
        if len(fields) > 2 and fields[2] == "WARNING":
            return not any(w in line for w in self.expected_warnings)
        return super()._unexpected(line)

    def log_size(self) -> int:
        return self.daemon.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.daemon.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def wait_for_log(
        self, pattern: str, offset: int = 0, timeout_s: float = READY_TIMEOUT_S
    ) -> re.Match[str]:
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = wanted.search(self.log_since(offset))
            if found:
                return found
            self.check_running()
            time.sleep(0.02)
        raise BenchError(f"no log line matching {pattern!r} in {timeout_s} s")

    @contextlib.contextmanager
    def store(self) -> Iterator[sqlite3.Connection]:
        """The daemon's SQLite file, read-only (the daemon stays its only writer)."""
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        connection.row_factory = sqlite3.Row
        try:
            yield connection
        finally:
            connection.close()


def logged_at(line_time: str) -> float:
    """Epoch seconds of a text log line's local ``asctime`` (millisecond resolution)."""
    return datetime.strptime(line_time, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def stored_at(iso: str) -> float:
    """Epoch seconds of a store timestamp (UTC, ``...T12:00:00.123Z``)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
