"""The audit chain's head across processes: the daemon publishes it retained on MQTT, a
CLI process appends, and `audit verify` holds the store against that off-store copy."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config
from tests.test_operator_cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(write_config(tmp_path, free_port()))
    yield running
    running.cleanup()


async def published_head(port: int, root: str, seq: int) -> dict[str, object]:
    """The retained head, once it names entry ``seq``."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="audit-reader") as client:
        await client.subscribe(f"{root}/supervisor/audit/head")
        async with asyncio.timeout(60):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                head: dict[str, object] = json.loads(message.payload)
                if head["seq"] == seq:
                    return head
    raise AssertionError("unreachable")


async def test_the_published_head_catches_a_tail_cut_with_the_head_file_forged(
    daemon: Daemon,
) -> None:
    assert daemon.config is not None
    port = int(yaml.safe_load(daemon.config.read_text())["broker"]["process_port"])
    daemon.start()
    daemon.wait_for_log(r"MQTT link to .* up")
    # an operator's command, from another process, while the daemon runs
    entered = cli(daemon.config, "safe-mode", "enter", "--reason", "storm", "--by", "alice")
    assert entered.returncode == 0, entered.stderr
    last = daemon.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")[0]
    head = await published_head(port, f"t{port}", last["seq"])
    assert head["hash"] == last["hash"]
    payload = json.dumps(head)
    verified = cli(daemon.config, "audit", "verify", "--expect-head", payload)
    assert verified.returncode == 0, verified.stderr
    assert f'"seq": {last["seq"]}' in verified.stdout

    daemon.terminate()
    # an attacker with the files: cut the last entry and rewrite the head file to match
    raw = sqlite3.connect(daemon.db_path)
    raw.executescript("DROP TRIGGER audit_log_no_delete;")
    raw.execute("DELETE FROM audit_log WHERE seq = ?", (last["seq"],))
    raw.commit()
    seq, digest = raw.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC").fetchone()
    raw.close()
    head_file = Path(f"{daemon.db_path}.audit-head")
    head_file.write_text(json.dumps({"seq": seq, "hash": digest}))

    fooled = cli(daemon.config, "audit", "verify")
    assert fooled.returncode == 0  # the store and its head file agree...
    caught = cli(daemon.config, "audit", "verify", "--expect-head", payload)
    assert caught.returncode == 1  # ...but not with the copy off the box
    assert f"BROKEN at entry {last['seq']}: entry {last['seq']} was deleted" in caught.stderr
    assert "the expected head records" in caught.stderr


def test_a_missing_head_file_fails_verify_and_the_daemon_records_and_recreates_it(
    daemon: Daemon,
) -> None:
    assert daemon.config is not None
    daemon.start()
    daemon.wait_for_log(r"MQTT link to .* up")
    daemon.terminate()
    head_file = Path(f"{daemon.db_path}.audit-head")
    head_file.unlink()
    missing = cli(daemon.config, "audit", "verify")
    assert missing.returncode == 1
    assert "WARNING: no head file" in missing.stderr

    daemon.start()
    daemon.wait_for(head_file.exists, timeout=60)
    actions = [r["action"] for r in daemon.query("SELECT action FROM audit_log ORDER BY seq")]
    assert actions[-1] == "audit.head_created"
    daemon.terminate()
    assert cli(daemon.config, "audit", "verify").returncode == 0
