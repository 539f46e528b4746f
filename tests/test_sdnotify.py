"""sd_notify against real Unix datagram sockets, and the unit file that relies on it."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylogic_supervisor.sdnotify import Notifier

UNIT_FILE = Path(__file__).parents[1] / "systemd" / "graylogic-supervisor.service"


def bound_socket(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A socket where systemd would listen, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with bound_socket(str(path)) as sock:
        yield str(path), sock


def test_ready_sends_ready_1(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener

    Notifier(address).ready()

    assert sock.recv(4096) == b"READY=1"


def test_each_message_is_its_own_datagram(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    notifier = Notifier(address)

    notifier.watchdog()
    notifier.stopping()
    notifier.status("broker restarted; 2 playbooks running")

    assert [sock.recv(4096) for _ in range(3)] == [
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"STATUS=broker restarted; 2 playbooks running",
    ]


def test_status_text_is_kept_on_one_line(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener

    Notifier(address).status("line one\nline two")

    assert sock.recv(4096) == b"STATUS=line one line two"


def test_an_abstract_address_is_reached_through_a_leading_nul() -> None:
    name = f"graylogic-test-{os.getpid()}-{uuid.uuid4().hex}"
    with bound_socket(b"\0" + name.encode()) as sock:
        Notifier("@" + name).ready()

        assert sock.recv(4096) == b"READY=1"


def test_from_environment_uses_notify_socket(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener

    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    notifier.ready()

    assert notifier.enabled
    assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_the_notifier_does_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier.from_environment({})

    notifier.ready()
    notifier.watchdog()
    notifier.status("anything")
    notifier.stopping()

    assert not notifier.enabled
    assert notifier.watchdog_interval_s() is None
    assert caplog.records == []


def test_a_socket_that_disappeared_does_not_raise_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notify"
    bound_socket(str(path)).close()
    path.unlink()
    notifier = Notifier(str(path))

    with caplog.at_level(logging.DEBUG, logger="graylogic_supervisor.sdnotify"):
        notifier.ready()
        notifier.watchdog()
        notifier.watchdog()

    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "READY=1" in caplog.records[0].getMessage()


def test_a_socket_nobody_listens_on_any_more_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    bound_socket(str(path)).close()  # the file stays, the listener is gone

    Notifier(str(path)).ready()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}

    assert Notifier.from_environment(env).watchdog_interval_s() == 15.0


def test_watchdog_interval_without_watchdog_pid_is_ours() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000"}

    assert Notifier.from_environment(env).watchdog_interval_s() == 0.5


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}

    assert Notifier.from_environment(env).watchdog_interval_s() is None


def test_an_invalid_watchdog_usec_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "soon"})

    assert notifier.watchdog_interval_s() is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


# --- The unit file that makes systemd listen for these messages ------------------


def test_unit_file_asks_for_the_notifications_the_daemon_sends() -> None:
    lines = UNIT_FILE.read_text().splitlines()

    assert "Type=notify" in lines
    assert "NotifyAccess=main" in lines
    assert "WatchdogSec=30" in lines


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_file_passes_systemd_analyze_verify_without_a_single_warning(
    tmp_path: Path,
) -> None:
    # ExecStart must name an existing binary where the check runs, so the copy
    # points at this interpreter; everything else is verified as shipped.
    text = UNIT_FILE.read_text()
    shipped = "ExecStart=/usr/local/bin/graylogic-supervisor "
    assert shipped in text
    copy = tmp_path / UNIT_FILE.name
    copy.write_text(text.replace(shipped, f"ExecStart={sys.executable} "))

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # systemd-analyze exits 0 on warnings (unknown keys, bad values): stderr is the verdict.
    assert (result.returncode, result.stderr) == (0, "")
