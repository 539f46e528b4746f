"""One daemon per state directory: the lock, who holds it, and what frees it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from graylogic_supervisor.statelock import LOCK_NAME, StateDirInUse, StateLock
from tests.daemon_process import REPO

STARTED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from graylogic_supervisor.statelock import StateLock

    lock = StateLock(Path(sys.argv[1]), datetime.now(UTC))
    lock.acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Another process holding the lock, with a child of its own (as our broker is)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    child = int(process.stdout.readline())
    yield process, child
    process.kill()
    process.wait()
    process.stdout.close()
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(child).kill()


def test_a_second_holder_is_told_who_has_it_and_changes_nothing(tmp_path: Path) -> None:
    with StateLock(tmp_path, STARTED, pid=4242, argv=["graylogic-supervisor", "run"]):
        record = (tmp_path / LOCK_NAME).read_bytes()
        assert json.loads(record)["pid"] == 4242
        with pytest.raises(StateDirInUse) as refused:
            StateLock(tmp_path, STARTED, pid=5151).acquire()
        assert str(refused.value) == (
            f"state directory {tmp_path} is in use by pid 4242, started at"
            " 2026-11-26T12:00:00.000Z (graylogic-supervisor run)"
        )
        assert (tmp_path / LOCK_NAME).read_bytes() == record  # the holder's record kept


def test_the_lock_is_released_on_exit_and_can_be_taken_again(tmp_path: Path) -> None:
    with StateLock(tmp_path, STARTED):
        pass
    assert (tmp_path / LOCK_NAME).read_bytes() == b""  # no holder named once it left
    with StateLock(tmp_path, STARTED, pid=99):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 99


def test_the_state_directory_is_made_if_missing(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    with StateLock(state, STARTED):
        assert (state / LOCK_NAME).exists()


def test_another_process_holding_it_is_named_by_its_real_pid(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], int]
) -> None:
    process, _ = holder
    with pytest.raises(StateDirInUse, match=rf"in use by pid {process.pid}, started at "):
        StateLock(tmp_path, STARTED).acquire()


def test_kill_9_of_the_holder_frees_it_even_while_its_child_runs_on(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], int]
) -> None:
    process, child = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert psutil.Process(child).is_running()  # the child did not inherit the lock
    with StateLock(tmp_path, STARTED, pid=7):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 7
