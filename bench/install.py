"""How long ``scripts/install`` takes into a temporary root, and what ``systemd-analyze
verify`` says of the unit it installed there.

One run: ``DESTDIR=<tmp> scripts/install`` at the default paths (the virtual environment
built from this checkout with the system's Python, the config, the state directory, the
unit enabled), timed with ``time.perf_counter()`` around the whole command; then the host's
``/usr/lib/systemd/system`` copied into the root (a controller has its own units there:
``sysinit.target`` and the like) and ``systemd-analyze --root=<tmp> verify --man=no
graylogic-supervisor.service`` run on it. pip's downloads come from wherever pip is
configured to look (a cache or a local index makes the build faster): say which with
the figure. Nothing is asserted; ``--json`` prints one object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UNIT = "graylogic-supervisor.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def measure(keep: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="glinstall-"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        started = time.perf_counter()
        installed = subprocess.run(
            [str(REPO / "scripts" / "install")],
            capture_output=True,
            text=True,
            env={**env, "DESTDIR": str(root)},
            check=False,
        )
        install_s = time.perf_counter() - started
        if installed.returncode != 0:
            sys.exit(f"scripts/install failed:\n{installed.stdout}{installed.stderr}")
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True)
        verify = ["systemd-analyze", f"--root={root}", "verify", "--man=no", UNIT]
        verified = subprocess.run(verify, capture_output=True, text=True, check=False)
        return {
            "install_s": round(install_s, 2),
            "installed_mib": round(size / 2**20, 1),
            "verify_command": " ".join(verify),
            "verify_exit": verified.returncode,
            "verify_stdout": verified.stdout,
            "verify_stderr": verified.stderr,
            "root": str(root) if keep else None,
        }
    finally:
        if not keep:
            shutil.rmtree(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary root")
    args = parser.parse_args()
    result = measure(args.keep)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"scripts/install into a temporary root: {result['install_s']} s")
    print(f"installed size (files, without the host's units): {result['installed_mib']} MiB")
    print(f"$ {result['verify_command']}")
    print(f"exit {result['verify_exit']}")
    print(f"stdout: {result['verify_stdout']!r}")
    print(f"stderr: {result['verify_stderr']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
