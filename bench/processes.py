"""Processes the benchmark starts, finds, reaps and kills (only its own)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from mqtt_ping import HOST

PR_SET_CHILD_SUBREAPER = 36

logger = logging.getLogger("bench.recovery")


class BenchError(Exception):
    """One supervisor cannot be measured; reported in its entry, the others still run."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def is_ours(proc: psutil.Process, workdir: Path) -> bool:
    """Whether the command line names our temporary directory: nothing else is killed."""
    with contextlib.suppress(psutil.Error):
        return f"{workdir}/" in " ".join(proc.cmdline())
    return False


def is_live(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.status() != psutil.STATUS_ZOMBIE
    return False


def reap(pid: int) -> None:
    """Collect a zombie that was reparented to us (we are a subreaper); else nothing."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def brokers(workdir: Path, parent: int | None = None) -> list[psutil.Process]:
    """Our live Mosquitto processes; only the children of ``parent`` if given."""
    return [
        proc
        for proc in psutil.process_iter(["name", "ppid"])
        if proc.info["name"] == "mosquitto"
        and parent in (None, proc.info["ppid"])
        and is_ours(proc, workdir)
        and is_live(proc)
    ]


def served_by(sock: socket.socket, workdir: Path) -> int | None:
    """The pid of our Mosquitto that holds the server end of this connection."""
    local = sock.getsockname()
    for proc in brokers(workdir):
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and (conn.raddr.ip, conn.raddr.port) == local:
                    return proc.pid
    return None


def broker_child(parent: int, workdir: Path) -> int | None:
    """The one live Mosquitto child of a supervisor process, if there is exactly one."""
    found = brokers(workdir, parent)
    return found[0].pid if len(found) == 1 else None


def kill_leftovers(workdir: Path, passes: int = 5) -> None:
    """SIGKILL whatever still runs from our directory (monit leaves its broker behind).

    Several passes: a ``mosquitto -d`` caught while forking leaves a child behind.
    """
    for _ in range(passes):
        leftovers = [
            p for p in psutil.process_iter() if p.pid != os.getpid() and is_ours(p, workdir)
        ]
        if not leftovers:
            return
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                logger.info("killing leftover pid %d: %s", proc.pid, " ".join(proc.cmdline()))
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
        for proc in leftovers:
            reap(proc.pid)
        time.sleep(0.05)


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def ensure_installed(binary: str, package: str) -> str:
    """The binary's path, installing the Debian package when it is missing."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if found:
        return found
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.info("%s missing: %s", binary, " ".join(install))
    try:
        if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
            subprocess.run(install, capture_output=True, env=env, check=False)
    except OSError as exc:
        raise BenchError(f"{binary} is missing and apt-get cannot run: {exc}") from exc
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if not found:
        raise BenchError(f"{binary} is missing and `{' '.join(install)}` did not install it")
    return found


class Child:
    """A process we started, in its own session, its output in a log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise BenchError(f"{self.argv[0]} exited with {code}: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return " | ".join(text.splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def descendants(pid: int) -> list[psutil.Process]:
    """A process's children and theirs, as they are now (empty if it is gone)."""
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def children_running(parent: int, needle: str) -> list[int]:
    """The live children of ``parent`` whose command line contains ``needle``."""
    found = []
    for proc in descendants(parent):
        with contextlib.suppress(psutil.Error):
            if proc.ppid() == parent and needle in " ".join(proc.cmdline()) and is_live(proc):
                found.append(proc.pid)
    return found


def kill_survivors(procs: Sequence[psutil.Process]) -> None:
    """SIGKILL those of ``procs`` that still run; a reused pid is not the same process."""
    alive = [p for p in procs if p.is_running() and is_live(p)]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            logger.info("killing leftover pid %d: %s", proc.pid, " ".join(proc.cmdline()))
            proc.resume()  # a stopped process dies of SIGKILL too; this only tidies its state
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def kill_recorded(run_dir: Path) -> None:
    """SIGKILL what the daemon's pid files name, if it still runs the argv recorded there.

    The daemon writes ``{run_dir}/{service}.pid`` as ``{"pid": .., "argv": [..]}`` for
    each child and removes it on a clean stop: whatever is left was orphaned.
    """
    recorded = []
    for pid_file in run_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, psutil.Error):
            record = json.loads(pid_file.read_text(encoding="utf-8"))
            proc = psutil.Process(int(record["pid"]))
            if proc.cmdline() == list(record["argv"]):
                recorded.append(proc)
    kill_survivors(recorded)


def prepare_bench_process() -> None:
    """What every script that starts daemons and brokers does first: log to stderr, turn
    SIGTERM into an exit so every ``finally`` stops its children, and adopt what a killed
    daemon leaves (daemonized brokers included), to kill and reap at once."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not become_subreaper():
        logging.getLogger(__name__).warning(
            "not a subreaper: killed daemonized brokers are reaped by PID 1"
        )


def run_harness(
    measure: Callable[[], dict[str, Any]], table: Callable[[dict[str, Any]], str], as_json: bool
) -> int:
    """The fault harnesses' main: log to stderr, clean up on SIGTERM or Ctrl-C, adopt what
    a killed daemon leaves, print the result; exit 0 only when every check held."""
    prepare_bench_process()
    try:
        result = measure()
    except KeyboardInterrupt:
        logging.getLogger(__name__).error("interrupted; children stopped")
        return 130
    print(json.dumps(result) if as_json else table(result))
    return 0 if result.get("ok") else 1
