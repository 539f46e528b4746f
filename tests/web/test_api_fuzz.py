"""The admin API fuzzed from its own OpenAPI description (schemathesis) against the real
daemon, logged in as an admin and as nobody, and the admin page's forms with random
bodies: whatever the input, no 500 and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port
from tests.daemon_process import Daemon, first_admin_password, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logged_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A running daemon, and the cookie and CSRF header of an admin's session."""
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    config = write_config(tmp_path, free_port())
    daemon = Daemon(config).start()
    try:
        daemon.wait_for_log(r"mqtt is healthy")
        password = first_admin_password(daemon.state_dir)
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


def test_every_schemathesis_check_passes_against_the_live_daemon(
    logged_in: tuple[str, dict[str, str]],
) -> None:
    """All of schemathesis' checks (status codes documented, schema-valid input accepted
    and invalid input refused, content types, ...) on each operation, as an admin."""
    base, headers = logged_in
    described = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", headers=headers)
    checked = 0
    for result in described.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def keeps_to_its_description(case: Any) -> None:
            case.call_and_validate(base_url=base, headers=headers)

        keeps_to_its_description()
        checked += 1
    assert checked >= 14


def test_the_schemathesis_command_finds_nothing_with_every_check_and_phase(
    tmp_path: Path,
) -> None:
    """``st run --checks all`` as an integrator would run it: an API token given through
    the schema's own security scheme (so schemathesis can also try no token and a wrong
    one), the coverage and fuzzing phases, every operation."""
    config = write_config(tmp_path, free_port())
    daemon = Daemon(config).start()
    try:
        daemon.wait_for_log(r"mqtt is healthy")
        created = daemon.cli("user", "token", "create", "admin", "--label", "schemathesis")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['admin']['port']}"
        spec = httpx.get(
            f"{base}/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        (tmp_path / "openapi.json").write_text(spec.text)
        (tmp_path / "schemathesis.toml").write_text(f'[auth.openapi.token]\nbearer = "{token}"\n')
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file",
                str(tmp_path / "schemathesis.toml"),
                "run",
                str(tmp_path / "openapi.json"),
                "--url",
                base,
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--workers",
                "1",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert re.search(r"Tested: (\d+)", run.stdout)
        assert "Traceback" not in daemon.log
    finally:
        daemon.cleanup()


def test_no_input_makes_the_api_fail_for_a_caller_who_is_not_logged_in(
    logged_in: tuple[str, dict[str, str]],
) -> None:
    """Every operation, generated input, no session: refused (401), never a 500."""
    base, headers = logged_in
    described = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", headers=headers)
    statuses: set[int] = set()
    for result in described.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def refused_not_failed(case: Any) -> None:
            response = case.call(base_url=base, headers={})
            assert response.status_code < 500, (case.method, case.path, response.text[:200])
            assert "Traceback" not in response.text
            statuses.add(response.status_code)

        refused_not_failed()
    assert 401 in statuses


FORMS = [
    "/login",
    "/logout",
    "/safe-mode/leave",
    "/escalations/{}/acknowledge",
    "/executions/{}/control",
    "/recommendations/{}/approve",
    "/recommendations/{}/reject",
    "/playbooks/{}/rollback",
    "/failures/{}/resolve",
]
FIELDS = ["csrf_token", "user", "password", "action", "reason", "fix_action", "target", "what"]
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "admin", "pause", "cancel", "0", "-1", "../..", "%00", "\u202e"]),
    st.just("x" * 20_000),
)
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "multipart/form-data",
    "application/json",
    "text/plain",
    None,
]


@st.composite
def form_posts(draw: st.DrawFn) -> tuple[str, bytes, str | None, str]:
    """(path, body, content type, which credentials): random, hostile and nearly right."""
    route = draw(st.sampled_from(FORMS))
    name = draw(st.text(min_size=1, max_size=20) | st.sampled_from(["0", "-1", "..", "%00"]))
    path = route.format(quote(name, safe=""))
    fields = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), TEXT, max_size=5))
    credentials = draw(st.sampled_from(["none", "session", "session+csrf"]))
    if route == "/logout" and credentials == "session+csrf":
        credentials = "session"  # a real logout would end the session the other cases use
    body = draw(
        st.one_of(
            st.just(urlencode(fields).encode()),
            st.binary(max_size=200),
            st.just(b'--zz\r\nContent-Disposition: form-data; name="a"\r\n\r\nx'),
            st.just(b"a=" + b"%ff" * 1000 + b"&" * 1000),
        )
    )
    return path, body, draw(st.sampled_from(CONTENT_TYPES)), credentials


def test_no_form_post_makes_the_admin_page_fail(logged_in: tuple[str, dict[str, str]]) -> None:
    """The page's POST routes with random bodies, with and without a session and its CSRF
    token: answered with a 3xx or 4xx (or 200 for a page), never a 500 or a traceback."""
    base, headers = logged_in
    csrf = headers["X-CSRF-Token"]
    statuses: set[int] = set()
    with httpx.Client(base_url=base, timeout=10) as web:
        page = web.get("/login")
        [login_token] = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
        login_cookie = f"gls_login_csrf={web.cookies['gls_login_csrf']}"
        web.cookies.clear()

        @given(post=form_posts())
        @settings(
            max_examples=150,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(post: tuple[str, bytes, str | None, str]) -> None:
            path, body, content_type, credentials = post
            sent = {"Content-Type": content_type} if content_type else {}
            token = login_token if path == "/login" else csrf
            if credentials != "none":
                sent["Cookie"] = login_cookie if path == "/login" else headers["Cookie"]
            if credentials == "session+csrf" and content_type == CONTENT_TYPES[0]:
                body = body + b"&csrf_token=" + token.encode()
            response = web.post(path, content=body, headers=sent)
            assert response.status_code < 500, (path, response.status_code, response.text[:200])
            assert "Traceback" not in response.text
            statuses.add(response.status_code)

        no_server_error()
    assert {400, 401, 403} <= statuses
