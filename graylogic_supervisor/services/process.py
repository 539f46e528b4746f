"""The ``process`` backend: child processes the supervisor owns.

Used for development, tests, demos, and for running our own broker where
systemd is not PID 1. A watcher task awaits each child, so an exit is noticed
about a millisecond after it happens. A pid file per service lets a restarted
supervisor stop the orphan a killed one left behind instead of fighting it for
its port.
"""

from __future__ import annotations

import asyncio
import contextlib
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
            self._last_detail = f"cannot start: {exc.strerror or exc}"
            raise ServiceError(self.name, self._last_detail) from exc
        self._expected_exit = False
        self._pid_file.write_text(
            json.dumps({"pid": self._process.pid, "argv": self._argv}), encoding="utf-8"
        )
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
    """Kill the process a pid file names if it still runs the argv recorded with it."""
    try:
        record = json.loads(pid_file.read_text(encoding="utf-8"))
        pid, argv = int(record["pid"]), list(record["argv"])
    except (OSError, ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return False
    pid_file.unlink(missing_ok=True)
    try:
        orphan = psutil.Process(pid)
        if orphan.cmdline() != argv:
            return False
        logger.warning("stopping orphaned %s (pid %d) left by an earlier run", pid_file.stem, pid)
        orphan.kill()
        for _ in range(200):
            if not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE:
                break
            await asyncio.sleep(0.01)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True
