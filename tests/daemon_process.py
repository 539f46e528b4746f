"""The daemon as a real child process, with a config of the test's own."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from graylogic_supervisor.store.users import INITIAL_PASSWORD_FILE
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, port: int, playbooks: Path | None = None, **extra: Any) -> Path:
    config = {
        "site": {"name": "test-site"},
        "state_dir": str(tmp_path / "state"),
        "catalog": str(REPO / "config" / "catalog.yaml"),
        "log_level": "DEBUG",
        "shutdown_grace_s": 2,
        "mqtt": {"topic_root": f"t{port}", "reconnect": {"initial_s": 0.05, "max_s": 1}},
        "broker": {"mode": "process", "process_port": port},
        "components": {
            "mqtt": {
                "kind": "mqtt",
                "service": "mosquitto",
                "error_id": "ERR-INFRA-MQTT-001",
                "check_interval_s": 5,
            }
        },
        "playbooks": {"directory": str(playbooks or REPO / "playbooks")},
        "admin": {"port": free_port()},
        **extra,
    }
    path = tmp_path / "supervisor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Daemon:
    def __init__(
        self,
        config: Path | None,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log_format: str = "text",
    ) -> None:
        """``config=None`` runs on the embedded defaults, in ``cwd``."""
        self.config = config
        self.cwd = cwd or (config.parent if config else Path.cwd())
        data = yaml.safe_load(config.read_text()) if config else {"state_dir": ".state"}
        self.state_dir = self.cwd / data["state_dir"]
        self.env = env or {}
        self.log_format = log_format
        self.db_path = self.state_dir / "supervisor.db"
        self.log_path = self.cwd / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_start = 0

    def start(self) -> Daemon:
        """Start the daemon; log searches look only at what this run writes."""
        self.log_start = len(self.log) if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        config = ["--config", str(self.config)] if self.config else []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "graylogic_supervisor",
                "run",
                *config,
                "--log-format",
                self.log_format,
            ],
            stdout=log,
            stderr=log,
            cwd=self.cwd,
            # this checkout's package, not whatever the venv has installed (another worktree)
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _pythonpath(), **self.env},
        )
        log.close()
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(
        self, pattern: str, timeout: float = 15, after: int | None = None
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.compile(pattern).search(self.log, self.log_start if after is None else after)
            if found:
                return found
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited ({self.process.returncode}):\n{self.log}")
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s:\n{self.log}")

    def broker_pid(self) -> int:
        assert self.process is not None
        for child in psutil.Process(self.process.pid).children():
            if "mosquitto" in child.name():
                return child.pid
        raise AssertionError("the daemon runs no mosquitto")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command of the command line on this daemon's config, as an operator runs it."""
        config = ["--config", str(self.config)] if self.config else []
        return subprocess.run(
            [sys.executable, "-m", "graylogic_supervisor", *args, *config],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.cwd,
            env={**os.environ, "PYTHONPATH": _pythonpath(), **self.env},
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def wait_for(self, condition: Callable[[], Any], timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout} s:\n{self.log}")

    def terminate(self, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def cleanup(self) -> None:
        """Kill the daemon and every child it left (a test that failed midway)."""
        if self.process is None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        for pid_file in (self.state_dir / "run").glob("*.pid"):
            try:
                orphan = psutil.Process(json.loads(pid_file.read_text())["pid"])
                if str(self.state_dir) in " ".join(orphan.cmdline()):
                    orphan.kill()
            except (psutil.NoSuchProcess, ValueError, KeyError):
                pass


def _pythonpath() -> str:
    inherited = os.environ.get("PYTHONPATH")
    return str(REPO) + (os.pathsep + inherited if inherited else "")


def start(daemons: list[Daemon], config: Path) -> Daemon:
    """Start a daemon that the ``daemons`` fixture (conftest.py) cleans up after the test."""
    daemon = Daemon(config).start()
    daemons.append(daemon)
    return daemon


def first_admin_password(state_dir: Path, timeout: float = 15) -> str:
    """The first admin's password, from the root-only file the daemon writes it to on its
    first start (never the log); waits for it up to ``timeout``."""
    path = state_dir / INITIAL_PASSWORD_FILE
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path} within {timeout} s")
        time.sleep(0.02)
    return path.read_text().strip()


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
