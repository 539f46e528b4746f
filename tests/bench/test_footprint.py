"""What the running daemon imports: its idle footprint (bench/idle.py) kept from growing.

The daemon runs as an installer runs it (``python -m graylogic_supervisor run``) with
``PYTHONPROFILEIMPORTTIME=1``, which writes one line per module imported, at start-up
or later, to its log. Test and fuzzing tools must never be among them, and neither may
httpx on a site without webhooks: it and what it pulls in (rich, pygments, idna) cost
about 4 MiB of the daemon's resident memory and a hundred modules.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config

pytestmark = pytest.mark.slow

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +([\w.]+)$", re.MULTILINE)
NEVER = {"schemathesis", "hypothesis", "playwright", "pytest", "httpx", "rich", "pygments"}


def test_the_running_daemon_imports_no_test_tool_and_no_http_client(tmp_path: Path) -> None:
    admin_port = free_port()
    config = write_config(tmp_path, free_port(), admin={"port": admin_port})
    daemon = Daemon(config, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        daemon.start()
        daemon.wait_for_log(r"running for site", timeout=30)
        daemon.wait_for_log(r"mqtt is healthy")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/login", timeout=10) as page:
            assert page.status == 200  # the admin page rendered: its imports are in too
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    modules = {name.split(".")[0] for name in IMPORTED.findall(daemon.log)}
    assert {"graylogic_supervisor", "uvicorn", "starlette", "jinja2", "aiomqtt"} <= modules
    assert modules & NEVER == set()
