"""A small filesystem of the test's own, and a way to fill it up.

A tmpfs mounted by the test (root only; elsewhere the test is skipped with the
reason): the store then meets a real ENOSPC from the kernel, not a simulated one.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHUNK = 64 * 1024


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size_kib: int) -> Iterator[Path]:
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem refuses (ENOSPC); returns the bytes written.

    Blocks of 64 KiB, then smaller ones down to 512 bytes, so no space is left over.
    """
    written = 0
    size = CHUNK
    with path.open("ab", buffering=0) as handle:
        while size >= 512:
            try:
                written += handle.write(b"\xa5" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    return written
