"""The systemd backend against a faithful fake systemctl, and the real subprocess runner.

systemd cannot run its units on a test machine, so systemctl is the one thing
faked here; the samples are what systemd 252 prints for the exact
``systemctl show --property=...`` the backend sends (service properties first,
then the unit's, in D-Bus vtable order, whatever order was asked for).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.services.backend import ServiceBackend, ServiceStatus
from graylogic_supervisor.services.systemd import (
    CommandError,
    CommandResult,
    SubprocessRunner,
    SystemdService,
    parse_show_output,
)

PROPERTIES = "--property=ActiveState,SubState,MainPID,Result,ExecMainStatus,LoadState"

ACTIVE = """\
MainPID=4242
Result=success
ExecMainStatus=0
LoadState=loaded
ActiveState=active
SubState=running
"""

FAILED = """\
MainPID=0
Result=exit-code
ExecMainStatus=1
LoadState=loaded
ActiveState=failed
SubState=failed
"""

INACTIVE = """\
MainPID=0
Result=success
ExecMainStatus=0
LoadState=loaded
ActiveState=inactive
SubState=dead
"""

# systemctl show exits 0 for a unit that does not exist: systemd loads a stub.
NOT_FOUND = """\
MainPID=0
Result=success
ExecMainStatus=0
LoadState=not-found
ActiveState=inactive
SubState=dead
"""

JOB_FAILED = (
    "Job for {unit} failed because the control process exited with error code.\n"
    'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n'
)


@dataclass
class FakeSystemctl:
    """A CommandRunner that answers as systemctl 252 does for the units it knows.

    start/restart make a unit active (or failed, if it is ``broken``), stop
    makes it inactive; unknown units get systemctl's real not-found answers.
    """

    units: dict[str, str]
    broken: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        self.calls.append(list(argv))
        assert argv[0] == "systemctl"
        verb = argv[1]
        if verb == "show":
            return CommandResult(0, self.units.get(argv[2], NOT_FOUND), "")
        unit = argv[-1]
        if unit not in self.units:
            reason = "not loaded" if verb == "stop" else "not found"
            return CommandResult(5, "", f"Failed to {verb} {unit}: Unit {unit} {reason}.\n")
        if verb == "stop":
            self.units[unit] = INACTIVE
        elif unit in self.broken:
            self.units[unit] = FAILED
            return CommandResult(1, "", JOB_FAILED.format(unit=unit))
        else:
            self.units[unit] = ACTIVE
        return CommandResult(0, "", "")


@dataclass
class TimingOutRunner:
    """A runner whose command never finishes, as SubprocessRunner reports it."""

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        raise CommandError(argv, f"did not finish within {timeout_s:g} s; killed")


def show_argv(unit: str) -> list[str]:
    return ["systemctl", "show", unit, "--no-pager", PROPERTIES]


def test_systemd_service_satisfies_the_backend_protocol() -> None:
    backend: ServiceBackend = SystemdService("broker", "mosquitto.service", FakeSystemctl({}))
    assert backend.name == "broker"


async def test_status_of_an_active_unit_reports_running_with_its_main_pid() -> None:
    fake = FakeSystemctl({"mosquitto.service": ACTIVE})
    service = SystemdService("broker", "mosquitto.service", fake)

    status = await service.status()

    assert fake.calls == [show_argv("mosquitto.service")]
    assert status == ServiceStatus("broker", running=True, pid=4242, detail="active (running)")


async def test_status_of_a_failed_unit_says_why_it_failed() -> None:
    service = SystemdService(
        "broker", "mosquitto.service", FakeSystemctl({"mosquitto.service": FAILED})
    )

    status = await service.status()

    assert status == ServiceStatus(
        "broker", running=False, pid=None, detail="failed (Result=exit-code, status 1)"
    )


async def test_status_of_an_inactive_unit_is_dead_without_a_pid() -> None:
    service = SystemdService(
        "broker", "mosquitto.service", FakeSystemctl({"mosquitto.service": INACTIVE})
    )

    assert await service.status() == ServiceStatus(
        "broker", running=False, pid=None, detail="inactive (dead)"
    )


async def test_status_of_a_unit_that_does_not_exist_raises_not_found() -> None:
    service = SystemdService("bridge", "graylogic-bridge-knx.service", FakeSystemctl({}))

    with pytest.raises(ServiceError, match=r"unit graylogic-bridge-knx.service not found") as info:
        await service.status()
    assert info.value.service == "bridge"


async def test_a_reloading_unit_still_counts_as_running() -> None:
    reloading = ACTIVE.replace("ActiveState=active", "ActiveState=reloading").replace(
        "SubState=running", "SubState=reload"
    )
    service = SystemdService(
        "broker", "mosquitto.service", FakeSystemctl({"mosquitto.service": reloading})
    )

    status = await service.status()

    assert status.running
    assert status.detail == "reloading (reload)"


async def test_a_unit_waiting_to_restart_after_a_signal_is_not_running() -> None:
    waiting = """\
MainPID=0
Result=signal
ExecMainStatus=9
LoadState=loaded
ActiveState=activating
SubState=auto-restart
"""
    service = SystemdService(
        "broker", "mosquitto.service", FakeSystemctl({"mosquitto.service": waiting})
    )

    status = await service.status()

    assert not status.running
    assert status.detail == "activating (auto-restart, Result=signal, signal 9)"


async def test_a_target_without_service_properties_is_described_by_its_states() -> None:
    # A target has neither MainPID nor Result nor ExecMainStatus: systemctl omits them.
    target = "LoadState=loaded\nActiveState=active\nSubState=active\n"
    service = SystemdService(
        "net", "network-online.target", FakeSystemctl({"network-online.target": target})
    )

    assert await service.status() == ServiceStatus("net", running=True, pid=None, detail="active")


async def test_a_masked_unit_says_so() -> None:
    masked = INACTIVE.replace("LoadState=loaded", "LoadState=masked")
    service = SystemdService(
        "broker", "mosquitto.service", FakeSystemctl({"mosquitto.service": masked})
    )

    assert (await service.status()).detail == "inactive (dead, masked)"


async def test_show_output_without_the_states_is_an_error() -> None:
    fake = FakeSystemctl({"mosquitto.service": "MainPID=12\n"})
    service = SystemdService("broker", "mosquitto.service", fake)

    with pytest.raises(ServiceError, match="did not report LoadState, ActiveState, SubState"):
        await service.status()


@pytest.mark.parametrize("verb", ["start", "restart"])
async def test_start_and_restart_run_the_exact_command_then_report_the_new_status(
    verb: str,
) -> None:
    fake = FakeSystemctl({"mosquitto.service": INACTIVE})
    service = SystemdService("broker", "mosquitto.service", fake)

    status = await getattr(service, verb)()

    assert fake.calls == [
        ["systemctl", verb, "--no-ask-password", "mosquitto.service"],
        show_argv("mosquitto.service"),
    ]
    assert status == ServiceStatus("broker", running=True, pid=4242, detail="active (running)")


async def test_stop_runs_the_exact_command_then_reports_the_unit_stopped() -> None:
    fake = FakeSystemctl({"mosquitto.service": ACTIVE})
    service = SystemdService("broker", "mosquitto.service", fake)

    status = await service.stop()

    assert fake.calls == [
        ["systemctl", "stop", "--no-ask-password", "mosquitto.service"],
        show_argv("mosquitto.service"),
    ]
    assert status == ServiceStatus("broker", running=False, pid=None, detail="inactive (dead)")


async def test_a_failed_start_raises_with_systemctls_message_trimmed() -> None:
    fake = FakeSystemctl({"mosquitto.service": INACTIVE}, broken={"mosquitto.service"})
    service = SystemdService("broker", "mosquitto.service", fake)

    with pytest.raises(ServiceError) as info:
        await service.start()

    assert info.value.service == "broker"
    assert str(info.value) == (
        "service broker: systemctl start failed (exit 1): "
        "Job for mosquitto.service failed because the control process exited with error code.\n"
        'See "systemctl status mosquitto.service" and '
        '"journalctl -xeu mosquitto.service" for details.'
    )
    # No status is read after a failed job: the error is the answer.
    assert fake.calls == [["systemctl", "start", "--no-ask-password", "mosquitto.service"]]


async def test_stopping_a_unit_that_is_not_loaded_raises() -> None:
    service = SystemdService("bridge", "nope.service", FakeSystemctl({}))

    with pytest.raises(
        ServiceError, match=r"systemctl stop failed \(exit 5\): .*Unit nope.service not loaded\.$"
    ):
        await service.stop()


async def test_a_failed_show_raises_with_its_message() -> None:
    async def no_bus(argv: Sequence[str], timeout_s: float) -> CommandResult:
        stderr = (
            "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
            "Failed to connect to bus: Host is down\n"
        )
        return CommandResult(1, "", stderr)

    service = SystemdService("broker", "mosquitto.service", no_bus)

    with pytest.raises(ServiceError, match=r"systemctl show failed \(exit 1\): System has not"):
        await service.status()


async def test_a_timed_out_command_is_reported_under_the_services_name() -> None:
    service = SystemdService("broker", "mosquitto.service", TimingOutRunner(), timeout_s=7)

    with pytest.raises(ServiceError) as info:
        await service.restart()

    assert info.value.service == "broker"
    assert str(info.value) == (
        "service broker: systemctl restart --no-ask-password mosquitto.service "
        "did not finish within 7 s; killed"
    )


async def test_the_timeout_is_passed_to_the_runner() -> None:
    seen: list[float] = []

    async def runner(argv: Sequence[str], timeout_s: float) -> CommandResult:
        seen.append(timeout_s)
        return CommandResult(0, ACTIVE, "")

    await SystemdService("broker", "mosquitto.service", runner, timeout_s=4.5).start()

    assert seen == [4.5, 4.5]


async def test_close_does_nothing_because_systemd_owns_the_processes() -> None:
    fake = FakeSystemctl({"mosquitto.service": ACTIVE})

    await SystemdService("broker", "mosquitto.service", fake).close()

    assert fake.calls == []


def test_a_unit_name_that_would_be_an_option_is_refused() -> None:
    with pytest.raises(ServiceError, match="invalid unit name"):
        SystemdService("broker", "--all", FakeSystemctl({}))


def test_parse_show_output_splits_on_the_first_equals_sign_only() -> None:
    text = (
        "ExecStart={ path=/usr/sbin/mosquitto ; argv[]=/usr/sbin/mosquitto -c x ; }\n"
        "\n"
        "StatusText=\n"
        "ActiveState=active\n"
        "not a property line\n"
    )

    assert parse_show_output(text) == {
        "ExecStart": "{ path=/usr/sbin/mosquitto ; argv[]=/usr/sbin/mosquitto -c x ; }",
        "StatusText": "",
        "ActiveState": "active",
    }


# --- The real runner -------------------------------------------------------------


async def test_subprocess_runner_runs_a_real_program() -> None:
    result = await SubprocessRunner()(["/bin/echo", "hello", "world"], timeout_s=5)

    assert result == CommandResult(0, "hello world\n", "")


async def test_subprocess_runner_reports_exit_code_and_stderr() -> None:
    code = "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"

    result = await SubprocessRunner()([sys.executable, "-c", code], timeout_s=5)

    assert result == CommandResult(3, "", "boom\n")


async def test_subprocess_runner_sets_a_c_locale_and_no_pager() -> None:
    code = "import os; print(repr(os.environ['LC_ALL']), repr(os.environ['SYSTEMD_PAGER']))"

    result = await SubprocessRunner()([sys.executable, "-c", code], timeout_s=5)

    assert result.stdout == "'C' ''\n"


async def test_subprocess_runner_kills_a_command_at_its_timeout() -> None:
    began = time.monotonic()

    with pytest.raises(CommandError, match=r"`/bin/sleep 5` did not finish within 0.2 s; killed"):
        await SubprocessRunner()(["/bin/sleep", "5"], timeout_s=0.2)

    assert time.monotonic() - began < 0.5


def started_child_pid(pidfile: Path) -> list[str]:
    """argv of a child that writes its pid to ``pidfile`` and then sleeps."""
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(5)"
    return [sys.executable, "-c", code, str(pidfile)]


def assert_gone(pid: int) -> None:
    """The child was killed and reaped: its pid no longer exists."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_subprocess_runner_leaves_no_child_behind_after_a_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    with pytest.raises(CommandError):
        await SubprocessRunner()(started_child_pid(pidfile), timeout_s=1.0)

    assert_gone(int(pidfile.read_text()))


async def test_subprocess_runner_kills_the_child_when_cancelled(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(SubprocessRunner()(started_child_pid(pidfile), timeout_s=30))
    async with asyncio.timeout(5):
        while not pidfile.exists() or not pidfile.read_text():
            await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert_gone(int(pidfile.read_text()))


async def test_subprocess_runner_reports_a_missing_program() -> None:
    with pytest.raises(CommandError, match="could not be started: No such file or directory"):
        await SubprocessRunner()(["/nonexistent/systemctl", "show"], timeout_s=5)


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
async def test_real_systemctl_on_a_missing_unit_raises_service_error() -> None:
    # With systemd as PID 1 the unit is not found; without it (containers) there
    # is no bus. Either way the caller gets a ServiceError, never a crash.
    service = SystemdService("ghost", "graylogic-test-no-such-unit.service", SubprocessRunner())

    with pytest.raises(ServiceError) as info:
        await service.status()
    assert info.value.service == "ghost"
