"""Time from ``kill -9`` of Mosquitto to the next CONNACK, under three supervisors.

Each supervisor under test runs its own Mosquitto on its own free loopback port, from
its own temporary directory, one after the other in the same run:

- ``graylogic-supervisor``: this project's daemon, broker in process mode;
- ``supervisord`` with ``autorestart=true``;
- ``monit`` with a 1 s cycle.

A round waits 0.5-1.5 s (uniform, seeded; every supervisor gets the same sequence),
reads the broker's pid, takes ``t0 = perf_counter()``, sends SIGKILL, then opens a
fresh TCP connection every millisecond with a hand-written MQTT 3.1.1 CONNECT until a
CONNACK with return code 0 arrives (``t1``). The CONNACK counts only if the process
that owns the server end of that connection is not the one killed.

Median is ``statistics.median`` (mean of the two middle values for an even count);
p90 is nearest-rank (the ceil(0.9 n)-th smallest sample).

The benchmark makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``) and reaps the
killed broker at once, as systemd does as PID 1: monit's Mosquitto daemonizes, and an
init that reaps late leaves a zombie that monit counts as a running process.

    .venv/bin/python bench/recovery.py [--rounds 20] [--seed 1] [--only monit] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import pwd
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import psutil

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ROUND_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 30.0
RETRY_S = 0.001
PR_SET_CHILD_SUBREAPER = 36
METHOD = "median = statistics.median, p90 = nearest rank"

logger = logging.getLogger("bench.recovery")


class BenchError(Exception):
    """One supervisor cannot be measured; reported in its entry, the others still run."""


# --- MQTT, by hand -------------------------------------------------------------------


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, no credentials."""
    ident = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(ident).to_bytes(2, "big") + ident
    return bytes([0x10, len(body)]) + body  # remaining length < 128: a single byte


CONNECT = connect_packet("graylogic-bench")
DISCONNECT = b"\xe0\x00"


def mqtt_connect(port: int, timeout_s: float = 1.0) -> socket.socket | None:
    """A fresh connection that got CONNACK 0, still open; None on any failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.connect((HOST, port))
        sock.sendall(CONNECT)
        reply = read_exactly(sock, 4)
    except OSError:
        sock.close()
        return None
    if reply[:2] != b"\x20\x02" or reply[3] != 0:
        sock.close()
        return None
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        data += chunk
    return data


# --- processes -----------------------------------------------------------------------


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


def brokers(workdir: Path) -> list[psutil.Process]:
    return [
        proc
        for proc in psutil.process_iter(["name"])
        if proc.info["name"] == "mosquitto" and is_ours(proc, workdir) and is_live(proc)
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
    try:
        children = psutil.Process(parent).children()
    except psutil.Error:
        return None
    found = [c for c in children if c.name() == "mosquitto" and is_live(c) and is_ours(c, workdir)]
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


# --- the supervisors under test ------------------------------------------------------


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


class Graylogic(Target):
    name = "graylogic-supervisor"
    PORT_LINE = re.compile(r"broker: .* on 127\.0\.0\.1:(\d+)")
    OUTCOME = re.compile(r"(PLAY-\S+) \S+ for mqtt: (\w+) in ([\d.]+) s")
    EXPECTED_WARNINGS = ("exited unexpectedly", "mqtt is unhealthy", "MQTT link to")

    def start(self) -> None:
        config = self.workdir / "supervisor.yaml"
        config.write_text(self._config(), encoding="utf-8")
        argv = [sys.executable, "-m", "graylogic_supervisor", "run", "--config", str(config)]
        self.daemon = self.spawn([*argv, "--log-format", "text"], "daemon.log")
        self.port = self._logged_port()

    def _config(self) -> str:
        def q(path: Path) -> str:
            return json.dumps(str(path))  # a JSON string is a YAML double-quoted scalar

        return (
            f"state_dir: {q(self.workdir / 'state')}\n"
            f"catalog: {q(REPO / 'config' / 'catalog.yaml')}\n"
            f"playbooks: {{directory: {q(REPO / 'playbooks')}}}\n"
            "mqtt: {topic_root: bench, reconnect: {initial_s: 0.05, max_s: 2}}\n"
            f"broker: {{mode: process, process_port: {self.port}}}\n"
            "components:\n"
            "  mqtt: {kind: mqtt, service: mosquitto, error_id: ERR-INFRA-MQTT-001,"
            " check_interval_s: 5, grace_s: 0}\n"
        )

    def _logged_port(self) -> int:
        """The port the daemon chose: the next free one if ours was taken meanwhile."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.daemon.check_running()
            match = self.PORT_LINE.search(self.daemon.log_path.read_text(encoding="utf-8"))
            if match:
                if int(match[1]) != self.port:
                    logger.warning("daemon moved the broker to port %s", match[1])
                return int(match[1])
            time.sleep(0.01)
        raise BenchError(f"daemon logged no broker port: {self.daemon.log_tail()}")

    def broker_pid(self) -> int | None:
        return broker_child(self.daemon.popen.pid, self.workdir)

    def findings(self) -> dict[str, object]:
        """What the daemon's log says about the recoveries it ran."""
        with contextlib.suppress(OSError):
            return self._read_log(self.daemon.log_path.read_text(encoding="utf-8"))
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
        except (OSError, ValueError, psutil.Error):
            return None
        ok = is_live(proc) and proc.name() == "mosquitto" and is_ours(proc, self.workdir)
        return proc.pid if ok else None


TARGETS: dict[str, type[Target]] = {t.name: t for t in (Graylogic, Supervisord, Monit)}


# --- measurement ---------------------------------------------------------------------


def wait_ready(target: Target) -> int:
    """Wait until the broker the supervisor knows answers CONNECT; returns its pid."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        target.check_running()
        pid = target.broker_pid()
        sock = mqtt_connect(target.port) if pid is not None else None
        if sock is not None:
            with sock:
                if served_by(sock, target.workdir) == pid:
                    return pid
        time.sleep(0.01)
    raise BenchError(f"{target.name}: no CONNACK on port {target.port} in {READY_TIMEOUT_S} s")


def one_round(target: Target) -> float:
    victim = wait_ready(target)
    if not is_ours(psutil.Process(victim), target.workdir):
        raise BenchError(f"pid {victim} is not a broker we started")
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + ROUND_TIMEOUT_S
    while time.perf_counter() < deadline:
        reap(victim)
        sock = mqtt_connect(target.port)
        if sock is not None:
            t1 = time.perf_counter()
            with sock:
                owner = served_by(sock, target.workdir)
                with contextlib.suppress(OSError):
                    sock.sendall(DISCONNECT)
            if owner is not None and owner != victim:
                return t1 - t0
            logger.warning("CONNACK %.4f s after the kill not from a new broker", t1 - t0)
        time.sleep(RETRY_S)
    target.check_running()
    raise BenchError(f"{target.name}: no CONNACK within {ROUND_TIMEOUT_S} s of killing {victim}")


def measure(target: Target, rounds: int, rng: random.Random) -> list[float]:
    samples: list[float] = []
    for index in range(1, rounds + 1):
        time.sleep(rng.uniform(0.5, 1.5))
        samples.append(one_round(target))
        logger.info("%s round %d/%d: %.4f s", target.name, index, rounds, samples[-1])
    return samples


def nearest_rank(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def summarize(samples: Sequence[float]) -> dict[str, object]:
    return {
        "median_s": statistics.median(samples),
        "p90_s": nearest_rank(samples, 0.9),
        "rounds": len(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "samples_s": [round(s, 5) for s in samples],
    }


@contextlib.contextmanager
def workspace(name: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"glbench-{name}-"))
    path.chmod(0o755)  # Mosquitto, once it is no longer root, must reach its pid file
    try:
        yield path
    finally:
        if keep:
            logger.info("%s: files kept in %s", name, path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_one(name: str, rounds: int, seed: int, keep: bool) -> dict[str, object]:
    logger.info("%s: %d rounds", name, rounds)
    with workspace(name, keep) as workdir:
        target = TARGETS[name](workdir)
        try:
            with target:
                samples = measure(target, rounds, random.Random(seed))
        except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
            logger.error("%s: %s", name, exc)
            return {"error": f"{type(exc).__name__}: {exc}", **target.findings()}
        return {**summarize(samples), "port": target.port, **target.findings()}


def ratios(results: dict[str, dict[str, object]]) -> dict[str, float | None]:
    def median(name: str) -> float | None:
        value = results.get(name, {}).get("median_s")
        return value if isinstance(value, float) else None

    base = median(Graylogic.name)
    out: dict[str, float | None] = {}
    for name in (Supervisord.name, Monit.name):
        other = median(name)
        out[name] = other / base if other is not None and base else None
    return out


def milliseconds(value: object) -> str:
    return f"{value * 1000:.1f} ms" if isinstance(value, float) else "-"


def table(results: dict[str, dict[str, object]], ratio: dict[str, float | None]) -> str:
    lines = [f"{'supervisor':<22}{'rounds':>7}{'median':>12}{'p90':>12}{'max':>12}  ratio"]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"{name:<22}  error: {entry['error']}")
            continue
        times = [f"{milliseconds(entry[k]):>12}" for k in ("median_s", "p90_s", "max_s")]
        r = ratio.get(name)
        lines.append(
            f"{name:<22}{entry['rounds']:>7}{''.join(times)}" + (f"  {r:.0f}x" if r else "")
        )
    lines.append(f"kill -9 to CONNACK; {METHOD}; ratio = median / {Graylogic.name} median")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="kills per supervisor (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the spacing of kills (1)")
    parser.add_argument(
        "--only", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in TARGETS]
    if unknown or not args.names:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally on SIGTERM
    if not become_subreaper():
        logger.warning("not a subreaper: killed daemonized brokers are reaped by PID 1")
    try:
        results = {name: run_one(name, args.rounds, args.seed, args.keep) for name in args.names}
    except KeyboardInterrupt:
        logger.error("interrupted; children stopped")
        return 130
    ratio = ratios(results)
    if args.json:
        print(json.dumps({**results, "ratios": ratio, "method": METHOD, "seed": args.seed}))
    else:
        print(table(results, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
