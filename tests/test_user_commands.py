"""``graylogic-supervisor user unlock|disable|enable|passwd``: what an operator does after a
guessing attack or a leaked password, each audited."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.cli import main
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.sessions import LoginLimits, SessionRepository
from tests.daemon_process import REPO


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {"mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"}},
            }
        )
    )
    return path


def cli(config: Path, *args: str, stdin: str = "") -> tuple[int, str]:
    out, old_stdin = io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main([*args, "--config", str(config)])
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue()


def store(config: Path) -> Path:
    return config.parent / "state" / "supervisor.db"


def test_unlock_lets_a_locked_out_user_in_again_and_is_audited(config: Path) -> None:
    assert cli(config, "user", "add", "ada", "--role", "admin", "--password-stdin",
               stdin="correct horse\n")[0] == 0  # fmt: skip
    now, limits = datetime.now(UTC), LoginLimits()

    async def lock_out() -> None:
        async with Database(store(config)) as db:
            sessions = SessionRepository(db)
            for remote in ("10.0.0.9", "10.0.0.8"):
                for _ in range(limits.per_pair):
                    attempt = await sessions.reserve_attempt("ada", remote, now, limits)
                    assert attempt.attempt_id is not None
                    await sessions.finish_attempt(attempt.attempt_id, ok=False)

    async def locked(remote: str) -> bool:
        async with Database(store(config)) as db:
            attempt = await SessionRepository(db).reserve_attempt("ada", remote, now, limits)
            if attempt.attempt_id is not None:
                await SessionRepository(db).drop_attempt(attempt.attempt_id)
            return attempt.refused is not None

    asyncio.run(lock_out())
    code, out = cli(config, "user", "unlock", "ada", "--address", "10.0.0.9")
    assert (code, out) == (0, "5 failed login(s) of ada from 10.0.0.9 forgotten\n")
    assert not asyncio.run(locked("10.0.0.9")) and asyncio.run(locked("10.0.0.8"))
    assert cli(config, "user", "unlock", "ada")[1] == "5 failed login(s) of ada forgotten\n"
    assert not asyncio.run(locked("10.0.0.8"))

    async def audited() -> list[tuple[str, str]]:
        async with Database(store(config)) as db:
            return [(e["action"], e["subject"]) for e in await AuditLog(db).entries()]

    assert [a for a in asyncio.run(audited()) if a[0] == "user.unlock"] == [
        ("user.unlock", "ada"),
        ("user.unlock", "ada"),
    ]


def test_disable_and_passwd_end_open_sessions(config: Path) -> None:
    assert cli(config, "user", "add", "ada", "--role", "admin")[0] == 0

    async def open_session() -> str:
        async with Database(store(config)) as db:
            token, _ = await SessionRepository(db).create("ada", datetime.now(UTC), timedelta(1))
            return token

    async def alive(token: str) -> bool:
        async with Database(store(config)) as db:
            return await SessionRepository(db).get(token, datetime.now(UTC)) is not None

    token = asyncio.run(open_session())
    assert cli(config, "user", "disable", "ada") == (0, "user ada disabled; 1 session(s) ended\n")
    assert not asyncio.run(alive(token))
    assert "(disabled)" in cli(config, "user", "list")[1]
    assert cli(config, "user", "enable", "ada") == (0, "user ada enabled\n")
    token = asyncio.run(open_session())
    code, out = cli(config, "user", "passwd", "ada", "--password-stdin", stdin="a new one!\n")
    assert (code, out) == (0, "password of ada set; 1 session(s) ended\n")
    assert not asyncio.run(alive(token))
    assert cli(config, "user", "disable", "nobody")[0] == 1
