"""The systemd backend: one unit, controlled through ``systemctl``.

We drive ``systemctl`` rather than talk D-Bus ourselves: it needs no D-Bus
library, its messages are the ones an operator already knows, and the command
runner it goes through is a seam a test can replace with a faithful fake.
systemd owns the unit's processes, so this backend never signals them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.services.backend import ServiceStatus

logger = logging.getLogger(__name__)

# What `status()` asks `systemctl show` for. Only the last three exist on every
# unit type: a target has no MainPID, a socket or timer no ExecMainStatus.
SHOW_PROPERTIES = ("ActiveState", "SubState", "MainPID", "Result", "ExecMainStatus", "LoadState")
REQUIRED_PROPERTIES = ("LoadState", "ActiveState", "SubState")

# `reloading` still has its main process serving; `activating` and
# `deactivating` do not count, as systemd itself does not call them active.
RUNNING_STATES = frozenset({"active", "reloading"})

# Results after which ExecMainStatus is a signal number, not an exit status.
SIGNAL_RESULTS = frozenset({"signal", "core-dump"})


@dataclass(frozen=True)
class CommandResult:
    """What a finished command reported."""

    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    """Runs one command to completion; injected so tests need no systemd.

    Raises ``ServiceError`` (a ``CommandError``) when the command cannot be
    started or is still running at ``timeout_s``; a non-zero exit is a result,
    not an error, because only the caller knows what it means.
    """

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult: ...


class CommandError(ServiceError):
    """A command could not be run to completion: missing, not executable, or timed out.

    The runner does not know which supervised service asked, so ``service`` is
    the program's name; ``SystemdService`` re-raises it under its own name.
    """

    def __init__(self, argv: Sequence[str], reason: str) -> None:
        self.argv = tuple(argv)
        self.reason = reason
        super().__init__(PurePath(argv[0]).name, f"`{shlex.join(argv)}` {reason}")


class SubprocessRunner:
    """The real ``CommandRunner``: a child process, never a shell, killed at its deadline.

    ``LC_ALL=C`` keeps systemctl's messages in English for the logs and traces;
    an empty ``SYSTEMD_PAGER`` makes sure no pager ever waits on a pipe. Killing
    ``systemctl`` at the timeout does not cancel a job systemd already queued.
    """

    OVERRIDES: Mapping[str, str] = {"SYSTEMD_PAGER": "", "LC_ALL": "C"}

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        if not argv:
            raise ValueError("empty argv")
        began = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **self.OVERRIDES},
            )
        except OSError as exc:
            raise CommandError(argv, f"could not be started: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(timeout_s):
                stdout, stderr = await proc.communicate()
        except TimeoutError as exc:
            raise CommandError(argv, f"did not finish within {timeout_s:g} s; killed") from exc
        finally:
            # Timeout or cancellation: never leave the child running or unreaped.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        returncode = await proc.wait()
        logger.debug(
            "%s exited %d after %.3f s", shlex.join(argv), returncode, time.monotonic() - began
        )
        return CommandResult(
            returncode=returncode,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )


def parse_show_output(text: str) -> dict[str, str]:
    """Parse ``systemctl show``'s ``Key=Value`` lines.

    Values may themselves contain ``=``, so only the first one splits; lines
    without one (there are none for a single unit) are ignored, and a repeated
    key keeps its last value.
    """
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            properties[key] = value
    return properties


def describe(properties: Mapping[str, str]) -> str:
    """One line a person reads, in systemctl's own words.

    ``active (running)``, ``inactive (dead)``, ``failed (Result=exit-code,
    status 1)``, ``activating (auto-restart, Result=signal, signal 9)``: the
    sub-state when it adds something, the load state when it is not
    ``loaded``, and why the unit last failed when it did.
    """
    active = properties["ActiveState"]
    parts: list[str] = []
    if properties["SubState"] != active:
        parts.append(properties["SubState"])
    if properties["LoadState"] != "loaded":
        parts.append(properties["LoadState"])
    result = properties.get("Result", "success")
    if result not in ("", "success"):
        parts.append(f"Result={result}")
        code = properties.get("ExecMainStatus")
        if code is not None:
            parts.append(f"signal {code}" if result in SIGNAL_RESULTS else f"status {code}")
    return f"{active} ({', '.join(parts)})" if parts else active


class SystemdService:
    """A ``ServiceBackend`` for one systemd unit.

    start/stop/restart wait for systemd's job to finish (no ``--no-block``) and
    then report the unit's state as ``systemctl show`` sees it, so the caller
    learns whether the unit really came up, not only that the job was accepted.
    """

    def __init__(
        self, name: str, unit: str, runner: CommandRunner, timeout_s: float = 30.0
    ) -> None:
        if not unit or unit.startswith("-"):
            # It would reach systemctl as an option, not a unit.
            raise ServiceError(name, f"invalid unit name {unit!r}")
        self.name = name
        self.unit = unit
        self._runner = runner
        self._timeout_s = timeout_s

    async def status(self) -> ServiceStatus:
        argv = [
            "systemctl",
            "show",
            self.unit,
            "--no-pager",
            f"--property={','.join(SHOW_PROPERTIES)}",
        ]
        result = await self._run(argv)
        return self._status_from(parse_show_output(result.stdout))

    async def start(self) -> ServiceStatus:
        await self._control("start")
        return await self.status()

    async def stop(self) -> ServiceStatus:
        await self._control("stop")
        return await self.status()

    async def restart(self) -> ServiceStatus:
        await self._control("restart")
        return await self.status()

    async def close(self) -> None:
        """Nothing to release: systemd, not this backend, owns the unit's processes."""

    async def _control(self, verb: str) -> None:
        # --no-ask-password: a daemon has no one to answer a polkit prompt; fail instead.
        await self._run(["systemctl", verb, "--no-ask-password", self.unit])

    async def _run(self, argv: list[str]) -> CommandResult:
        """Run systemctl; any failure becomes a ServiceError under this service's name."""
        try:
            result = await self._runner(argv, self._timeout_s)
        except CommandError as exc:
            raise ServiceError(self.name, f"{shlex.join(argv)} {exc.reason}") from exc
        if result.returncode != 0:
            message = result.stderr.strip() or "no message"
            raise ServiceError(
                self.name, f"{shlex.join(argv[:2])} failed (exit {result.returncode}): {message}"
            )
        return result

    def _status_from(self, properties: Mapping[str, str]) -> ServiceStatus:
        missing = [key for key in REQUIRED_PROPERTIES if key not in properties]
        if missing:
            raise ServiceError(
                self.name, f"systemctl show {self.unit} did not report {', '.join(missing)}"
            )
        if properties["LoadState"] == "not-found":
            raise ServiceError(self.name, f"unit {self.unit} not found")
        try:
            main_pid = int(properties.get("MainPID", "0"))
        except ValueError as exc:
            raise ServiceError(
                self.name, f"systemctl show {self.unit}: bad MainPID {properties['MainPID']!r}"
            ) from exc
        return ServiceStatus(
            name=self.name,
            running=properties["ActiveState"] in RUNNING_STATES,
            pid=main_pid or None,
            detail=describe(properties),
        )
