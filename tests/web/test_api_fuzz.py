"""The admin API fuzzed from its own OpenAPI description (schemathesis) against the real
daemon, logged in as an admin: whatever the input, no 500 and no traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logged_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A running daemon, and the cookie and CSRF header of an admin's session."""
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    config = write_config(tmp_path, free_port())
    daemon = Daemon(config).start()
    try:
        daemon.wait_for_log(r"mqtt is healthy")
        [password] = re.findall(r"user 'admin' with the password (\S+) \(shown once", daemon.log)
        base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['admin']['port']}"
        with httpx.Client(base_url=base, timeout=5) as web:
            [token] = re.findall(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
            web.post("/login", data={"csrf_token": token, "user": "admin", "password": password})
            session = web.cookies["gls_session"]
            csrf = web.get("/api/v1/session").json()["csrf"]
        yield base, {"Cookie": f"gls_session={session}", "X-CSRF-Token": csrf}
        assert "Traceback" not in daemon.log
    finally:
        daemon.cleanup()


def test_no_input_makes_the_api_fail(logged_in: tuple[str, dict[str, str]]) -> None:
    """Each operation with generated input, valid and not (schemathesis' strategies, run
    by hypothesis directly: its pytest plugin does not load under pytest 9 here)."""
    base, headers = logged_in
    described = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", headers=headers)
    operations = [result.ok() for result in described.get_all_operations()]
    assert len(operations) >= 14
    seen: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            response = case.call(base_url=base, headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:200])
            assert "Traceback" not in response.text

        no_server_error()
        seen.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/v1/recommendations/{rec_id}/approve" in seen
