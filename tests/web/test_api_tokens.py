"""API tokens, as a script uses them: made with the command line, sent to the real
daemon over HTTP, with the user's role, audited, stopped by revoking or disabling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.tokens import TokenRepository
from graylogic_supervisor.store.users import UserError, UserRepository
from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config

NOW = datetime(2026, 12, 1, tzinfo=UTC)
pytestmark = pytest.mark.slow  # the daemon as a child process (but for the last test)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A running daemon (its first admin, ``admin``, made) and its admin page's URL."""
    tmp_path: Path = tmp_path_factory.mktemp("tokens")
    config = write_config(tmp_path, free_port())
    running = Daemon(config).start()
    try:
        running.wait_for_log(r"mqtt is healthy")
        base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['admin']['port']}"
        added = running.cli("user", "add", "vic", "--role", "viewer")
        assert added.returncode == 0, added.stderr
        yield running, base
        assert "Traceback" not in running.log
    finally:
        running.cleanup()


def make_token(daemon: Daemon, user: str, label: str, *more: str) -> tuple[str, str]:
    """The token (stdout, alone) and its id (from stderr)."""
    made = daemon.cli("user", "token", "create", user, "--label", label, "--by", "ops", *more)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "\n" not in token and token.startswith("gls_")
    [token_id] = [w for w in made.stderr.split() if w.startswith("tok-")]
    return token, token_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_token_reads_and_changes_without_a_csrf_token(
    daemon: tuple[Daemon, str],
) -> None:
    running, base = daemon
    token, _ = make_token(running, "admin", "deploy script")
    with httpx.Client(base_url=base, timeout=5, headers=bearer(token)) as api:
        who = api.get("/api/v1/session")
        assert who.status_code == 200
        assert (who.json()["user"], who.json()["role"]) == ("admin", "admin")
        assert api.get("/api/v1/executions?limit=5").status_code == 200
        assert api.get("/api/v1/events").status_code == 200
        assert api.get("/api/v1/system/health").status_code == 200
        assert api.get("/metrics").status_code == 200
        left = api.post("/api/v1/safe-mode/leave", json={"reason": "from a script"})
        assert left.status_code == 200, left.text
        # a token never opens the pages: they want the cookie's login
        page = api.get("/", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/login")


def test_a_viewer_token_reads_but_may_not_change(daemon: tuple[Daemon, str]) -> None:
    running, base = daemon
    token, _ = make_token(running, "vic", "dashboard")
    with httpx.Client(base_url=base, timeout=5, headers=bearer(token)) as api:
        assert api.get("/api/v1/dashboard").status_code == 200
        refused = api.post("/api/v1/safe-mode/leave", json={"reason": "x"})
        assert refused.status_code == 403
        assert "viewer" in refused.json()["error"]


def test_a_revoked_or_unknown_token_is_a_401_with_a_challenge(daemon: tuple[Daemon, str]) -> None:
    running, base = daemon
    token, token_id = make_token(running, "admin", "short-lived")
    with httpx.Client(base_url=base, timeout=5) as web:
        assert web.get("/api/v1/session", headers=bearer(token)).status_code == 200
        revoked = running.cli("user", "token", "revoke", token_id, "--by", "ops")
        assert revoked.returncode == 0, revoked.stderr
        for presented in (token, "gls_" + "A" * 43, "not-even-a-token"):
            refused = web.get("/api/v1/session", headers=bearer(presented))
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer ")
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        stranger = web.get("/api/v1/session")
        assert stranger.status_code == 401 and "Bearer" in stranger.headers["www-authenticate"]
    again = running.cli("user", "token", "revoke", token_id)
    assert again.returncode == 1 and "not revoked already" in again.stderr
    listed = [
        json.loads(line)
        for line in running.cli("user", "token", "list", "admin", "--json").stdout.splitlines()
    ]
    assert {t["id"]: t["state"] for t in listed}[token_id] == "revoked"
    assert all("token_hash" not in t and not str(t).count("gls_") for t in listed)


def test_a_disabled_users_tokens_stop_working(daemon: tuple[Daemon, str]) -> None:
    running, base = daemon
    running.cli("user", "add", "tess", "--role", "admin")
    token, _ = make_token(running, "tess", "cron", "--expires-days", "30")
    with httpx.Client(base_url=base, timeout=5, headers=bearer(token)) as api:
        assert api.get("/api/v1/session").status_code == 200
        assert running.cli("user", "disable", "tess").returncode == 0
        assert api.get("/api/v1/session").status_code == 401
        assert running.cli("user", "enable", "tess").returncode == 0
        assert api.get("/api/v1/session").status_code == 200
    refused = running.cli("user", "token", "create", "nobody", "--label", "x")
    assert refused.returncode == 1 and "no enabled user 'nobody'" in refused.stderr


def test_every_create_and_revoke_is_audited(daemon: tuple[Daemon, str]) -> None:
    running, _ = daemon
    _, token_id = make_token(running, "vic", "audited")
    assert running.cli("user", "token", "revoke", token_id, "--by", "ops").returncode == 0
    entries = [
        json.loads(line) for line in running.cli("audit", "list", "--json").stdout.splitlines()
    ]
    mine = [
        (e["actor"], e["action"], e["subject"])
        for e in entries
        if json.loads(e["detail"]).get("token") == token_id
    ]
    assert sorted(mine) == [("ops", "token.create", "vic"), ("ops", "token.revoke", "vic")]
    assert running.cli("audit", "verify").returncode == 0


def test_a_bad_expiry_is_refused_naming_the_option(daemon: tuple[Daemon, str]) -> None:
    running, _ = daemon
    refused = running.cli("user", "token", "create", "vic", "--label", "x", "--expires-days", "0")
    assert refused.returncode == 2 and "--expires-days" in refused.stderr


async def test_a_token_expires_and_the_store_keeps_only_its_hash(db: Database) -> None:
    await UserRepository(db).add("ada", "admin", "correct horse battery", NOW)
    tokens, audit = TokenRepository(db), AuditLog(db)
    token, made = await tokens.create(
        "ada", "ci", by="ops", now=NOW, lifetime=timedelta(days=1), audit=audit
    )
    holder = await tokens.holder(token, NOW + timedelta(hours=23))
    assert holder is not None and (holder.user, holder.role) == ("ada", "admin")
    assert await tokens.holder(token, NOW + timedelta(days=1)) is None
    assert [t.state(NOW + timedelta(days=2)) for t in await tokens.list("ada")] == ["expired"]
    stored = await db.fetchall("SELECT * FROM api_tokens")
    assert token not in json.dumps([dict(row) for row in stored])
    with pytest.raises(UserError, match="label"):
        await tokens.create("ada", " ", by="ops", now=NOW, lifetime=None, audit=audit)
    assert made.expires_at is not None
