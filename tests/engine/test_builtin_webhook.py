"""``notify_webhook`` against a real HTTP server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from graylogic_supervisor.config import WebhookConfig
from graylogic_supervisor.engine.action import StepResult
from graylogic_supervisor.engine.builtins.webhook import NotifyWebhook, WebhookParams
from tests.clocks import ManualClock
from tests.conftest import free_port
from tests.daemon_process import write_config
from tests.engine.step_context import step_context

TOKEN = "s3cret-webhook-token"


class Receiver:
    """Keeps each POST's path, headers and JSON; answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, name="receiver")
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join()


def notify(webhooks: dict[str, WebhookConfig], **params: object) -> StepResult:
    action = NotifyWebhook(webhooks, "plant-room")
    return asyncio.run(action.run(step_context(WebhookParams(**params), ManualClock())))


def test_the_message_is_posted_with_the_failure_and_the_token(receiver: Receiver) -> None:
    hooks = {"oncall": WebhookConfig(url=receiver.url, token=SecretStr(TOKEN))}

    result = notify(hooks, webhook="oncall", message="disk cleaned", severity="low")

    assert result.success, result
    assert result.result == "webhook oncall notified (low)"
    [(path, headers, body)] = receiver.requests
    assert path == "/hook"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert body == {
        "site": "plant-room",
        "message": "disk cleaned",
        "severity": "low",
        "execution_id": "exec-1",
        "playbook": "PLAY-DISK-CLEANUP-001",
        "step": "step",
        "component": "disk",
        "error_id": "ERR-INFRA-DISK-001",
        "sent_at": "2026-11-26T12:00:00.000Z",
    }


def test_a_refusal_fails_the_step_with_the_status(receiver: Receiver) -> None:
    receiver.status = 503

    result = notify({"oncall": WebhookConfig(url=receiver.url)}, webhook="oncall", message="m")

    assert not result.success
    assert result.result == "webhook oncall answered HTTP 503"


def test_an_unknown_webhook_names_the_configured_ones(receiver: Receiver) -> None:
    result = notify({"oncall": WebhookConfig(url=receiver.url)}, webhook="oncal", message="m")

    assert not result.success
    assert result.result == "no webhook 'oncal' in escalation.webhooks (oncall)"
    assert receiver.requests == []


def test_nobody_listening_fails_without_the_token() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?t={TOKEN}"

    result = notify(
        {"down": WebhookConfig(url=url, token=SecretStr(TOKEN))}, webhook="down", message="m"
    )

    assert not result.success
    assert result.result.startswith("webhook down: ConnectError")
    assert TOKEN not in result.result


NOTIFYING = """\
id: PLAY-MQTT-RECOVER-001
name: Tell someone
version: 1.0.0
trigger: {component: mqtt, error_ids: [ERR-INFRA-MQTT-001]}
steps:
  - id: tell
    name: Tell the on-call engineer
    action: notify_webhook
    params: {webhook: oncal, message: the broker is down}
    on_success: done
"""


def test_check_config_refuses_a_webhook_the_config_lacks_with_its_line(tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "tell.yaml").write_text(NOTIFYING)
    config = write_config(
        tmp_path, free_port(), books, escalation={"webhooks": {"oncall": {"url": "http://x/"}}}
    )

    refused = subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    (books / "tell.yaml").write_text(NOTIFYING.replace("oncal,", "oncall,"))
    accepted = subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == 1
    assert f"{books / 'tell.yaml'}:9: steps[0].params.webhook:" in refused.stderr
    assert "'oncal' is not in escalation.webhooks (oncall)" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
