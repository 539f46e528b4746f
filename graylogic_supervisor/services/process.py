"""The ``process`` backend: child processes the supervisor owns.

Used for development, tests, demos, and for running our own broker where
systemd is not PID 1. A watcher task awaits each child, so an exit is noticed
about a millisecond after it happens. A pid file per service lets a restarted
supervisor stop the orphan a killed one left behind instead of fighting it for
its port. The file is written (atomically) before the child is spawned, with no
pid yet, and each child carries the file's path in ``CHILD_TAG_VARIABLE``: a
supervisor killed between spawning and recording the pid still leaves enough
for the next one to find that child.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.services.backend import ExitListener, ServiceStatus

logger = logging.getLogger(__name__)

CHILD_TAG_VARIABLE = "GRAYLOGIC_SUPERVISOR_CHILD"  # the child's pid file, to find it again


class ProcessService:
    """One child process, started from an argv list (never a shell)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        run_dir: Path,
        log_path: Path,
        on_exit: ExitListener,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._pid_file = run_dir / f"{name}.pid"
        self._log_path = log_path
        self._on_exit = on_exit
        self._cwd = cwd
        self._env = child_environment(os.environ, env or {})
        self._env[CHILD_TAG_VARIABLE] = str(self._pid_file)
        self._stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._expected_exit = False
        self._last_detail = "not started"
        self._lock = asyncio.Lock()

    async def status(self) -> ServiceStatus:
        process = self._process
        if process is not None:
            if process.returncode is None:
                return ServiceStatus(self.name, True, process.pid, "running")
            # the exit may be known before the watcher task has run
            return ServiceStatus(self.name, False, None, _describe_exit(process.returncode))
        return ServiceStatus(self.name, False, None, self._last_detail)

    async def start(self) -> ServiceStatus:
        async with self._lock:
            await self._start_locked()
        return await self.status()

    async def stop(self) -> ServiceStatus:
        async with self._lock:
            await self._stop_locked()
        return await self.status()

    async def restart(self) -> ServiceStatus:
        async with self._lock:
            await self._stop_locked()
            await self._start_locked()
        return await self.status()

    async def close(self) -> None:
        await self.stop()

    async def _start_locked(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        await stop_orphan(self._pid_file)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._pid_file.parent.mkdir(parents=True, exist_ok=True)
        _write_record(self._pid_file, None, self._argv)  # a child about to exist
        try:
            with self._log_path.open("ab") as log:
                self._process = await asyncio.create_subprocess_exec(
                    *self._argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self._cwd,
                    env=self._env,
                    start_new_session=True,
                )
        except OSError as exc:
            self._pid_file.unlink(missing_ok=True)
            self._last_detail = f"cannot start: {exc.strerror or exc}"
            raise ServiceError(self.name, self._last_detail) from exc
        self._expected_exit = False
        _write_record(self._pid_file, self._process.pid, self._argv)
        self._watcher = asyncio.create_task(
            self._watch(self._process), name=f"process-watch:{self.name}"
        )
        logger.info("started %s (pid %d)", self.name, self._process.pid)

    async def _stop_locked(self) -> None:
        process = self._process
        if process is None:
            return
        self._expected_exit = True
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_timeout_s):
                    await process.wait()
            except TimeoutError:
                logger.warning(
                    "%s ignored SIGTERM for %.1f s; killing", self.name, self._stop_timeout_s
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._watcher is not None:
            await self._watcher
            self._watcher = None
        self._process = None
        self._pid_file.unlink(missing_ok=True)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self._last_detail = _describe_exit(code)
        if not self._expected_exit:
            logger.warning("%s exited unexpectedly: %s", self.name, self._last_detail)
            self._on_exit(self.name, self._last_detail)


# Meant for us, not our children: a child that spoke on our systemd socket would
# be refused (NotifyAccess=main) and could confuse the watchdog.
PRIVATE_VARIABLES = frozenset(
    {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"}
)


def child_environment(inherited: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in inherited.items() if k not in PRIVATE_VARIABLES},
        **extra,
    }


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


async def stop_orphans(run_dir: Path) -> list[str]:
    """Stop every child a killed supervisor left behind; returns their service names.

    Run before anything binds ports, so our own broker gets its port back.
    """
    stopped = []
    for pid_file in sorted(run_dir.glob("*.pid")):
        if await stop_orphan(pid_file):
            stopped.append(pid_file.stem)
    return stopped


async def stop_orphan(pid_file: Path) -> bool:
    """Kill what a pid file names, if it still runs the argv recorded with it.

    A record without a pid was left between spawning and recording: the child,
    if it was spawned, is found by the tag in its environment. The file goes only
    once the orphan is dead, so a kill during this leaves it for the next start.
    """
    try:
        record = json.loads(pid_file.read_text(encoding="utf-8"))
        pid, argv = record["pid"], list(record["argv"])
        if pid is not None:
            pid = int(pid)
    except (OSError, ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return False
    orphans = [_running(pid, argv)] if pid is not None else _tagged(pid_file, argv)
    found = [orphan for orphan in orphans if orphan is not None]
    for orphan in found:
        logger.warning(
            "stopping orphaned %s (pid %d) left by an earlier run", pid_file.stem, orphan.pid
        )
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            orphan.kill()
            for _ in range(200):
                if not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE:
                    break
                await asyncio.sleep(0.01)
    pid_file.unlink(missing_ok=True)
    return bool(found)


def _running(pid: int, argv: list[str]) -> psutil.Process | None:
    """The process ``pid`` if it still runs ``argv`` (pids are reused)."""
    try:
        process = psutil.Process(pid)
        return process if process.cmdline() == argv else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _tagged(pid_file: Path, argv: list[str]) -> list[psutil.Process | None]:
    """Processes running ``argv`` whose environment names ``pid_file`` as theirs."""
    found: list[psutil.Process | None] = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.info["cmdline"] != argv:
                continue
            if process.environ().get(CHILD_TAG_VARIABLE) == str(pid_file):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _write_record(pid_file: Path, pid: int | None, argv: list[str]) -> None:
    """Replace the pid file in one step, so a crash never leaves half a record.

    On a full disk there is no room for the new file: the record is rewritten in
    place, in the blocks the old one frees. A record that cannot be written at
    all is logged and the child still runs: it is a clean-up aid, and a broker
    kept down for want of it would be the greater harm.
    """
    text = json.dumps({"pid": pid, "argv": argv})
    partial = pid_file.with_name(pid_file.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(pid_file)
        return
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno != errno.ENOSPC:
            raise
    try:
        pid_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        logger.warning(
            "cannot record %s (%s): an orphan it names may be left running", pid_file, exc
        )
