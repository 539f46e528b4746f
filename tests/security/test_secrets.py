"""Secrets never leak: a real daemon at DEBUG, configured with distinctive secrets (the
broker password, two webhook tokens, a secret in a webhook's query string, the metrics
token) and a user whose password we chose, is driven through logins, every page and API
endpoint, an escalation to a webhook that works and one that is down, and reloads of a
broken config; then its log, every answer, the escalation's HTTP requests as received and
the store's files are searched for each secret. ``check-config`` and ``run`` on a broken
config are searched too."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import pytest
import yaml

from graylogic_supervisor.cli import main
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.render import AdminDeps
from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, write_config

pytestmark = pytest.mark.slow

MQTT_PASSWORD = "mqtt-pw-7f3a9c1e5b2d"
HOOK_TOKEN = "hook-token-2b8d4e6f0a1c"
DOWN_TOKEN = "down-token-5e7a9c1b3d4f"
URL_SECRET = "url-secret-8c0e2a4b6d9f"
METRICS_TOKEN = "metrics-token-9c1a3e5b7d0e"
ENV_SECRET = "env-secret-3d5f7b9a1c2e"
PASSWORD = "ada-password-4e6f8a0c2b1d"
WRONG_PASSWORD = "wrong-password-1a2b3c4d5e6f"
SECRETS = (
    MQTT_PASSWORD,
    HOOK_TOKEN,
    DOWN_TOKEN,
    URL_SECRET,
    METRICS_TOKEN,
    ENV_SECRET,
    PASSWORD,
    WRONG_PASSWORD,
)


def leaks(text: str | bytes) -> list[str]:
    """The secrets found in ``text`` (also hex-, or JSON-escaped: the same bytes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [s for s in SECRETS if s in text]


class Hooks:
    """A webhook receiver on a real port, keeping each request's headers and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hooks.requests.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="hooks")

    def __enter__(self) -> Hooks:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def secret_config(tmp_path: Path, port: int, hooks_port: int) -> Path:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", playbooks)
    return write_config(
        tmp_path,
        port,
        playbooks,
        mqtt={
            "topic_root": f"t{port}",
            "reconnect": {"initial_s": 0.05, "max_s": 1},
            "username": "supervisor",
            "password": MQTT_PASSWORD,
        },
        admin={"port": free_port(), "metrics_token": METRICS_TOKEN},
        services=[
            {
                "name": "helper",
                "backend": "process",
                "argv": ["sleep", "3600"],
                "env": {"HELPER_API_KEY": ENV_SECRET},
            }
        ],
        escalation={
            "check_interval_s": 0.2,
            "levels": [{"after_s": 0, "channels": ["mqtt", "webhook:oncall", "webhook:down"]}],
            "webhooks": {
                "oncall": {
                    "url": f"http://127.0.0.1:{hooks_port}/hook?key={URL_SECRET}",
                    "token": HOOK_TOKEN,
                },
                "down": {
                    "url": f"http://127.0.0.1:{free_port()}/hook?key={URL_SECRET}",
                    "token": DOWN_TOKEN,
                    "timeout_s": 0.5,
                },
            },
        },
    )


def add_user(config: Path) -> None:
    """Ada, with a password we know, so the first run makes (and prints) none."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "user",
            "add",
            "ada",
            "--role",
            "admin",
            "--password-stdin",
            "--config",
            str(config),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "user ada added as admin\n"), done.stderr
    assert leaks(done.stdout + done.stderr) == []


def route_templates() -> list[tuple[str, str]]:
    """(method, path) of every route the daemon serves: the app is built as the daemon
    builds it, with stand-ins for collaborators no route is asked to use here."""
    deps = WebDeps(cast(Any, None), frozenset, Metrics("x"), "x", "x")
    app = create_app(deps, cast(AdminDeps, object()))
    return [
        (method, route.path)
        for route in app.routes
        for method in sorted(getattr(route, "methods", None) or ())
        if method != "HEAD"
    ]


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "none"), template)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_reaches_the_log_a_page_an_answer_or_the_store(
    tmp_path: Path, daemons: list[Daemon], log_format: str
) -> None:
    with Hooks() as hooks:
        config = secret_config(tmp_path, free_port(), hooks.port)
        add_user(config)
        daemon = Daemon(config, log_format=log_format)
        daemons.append(daemon.start())
        daemon.wait_for_log(r"mqtt is healthy")  # connected with the password
        daemon.wait_for_log(r"started helper")
        assert daemon.process is not None
        [helper] = [c for c in psutil.Process(daemon.process.pid).children() if "sleep" in c.name()]
        assert helper.environ()["HELPER_API_KEY"] == ENV_SECRET  # the secret went where it should
        admin_port = yaml.safe_load(config.read_text())["admin"]["port"]
        assert f"listening on http://127.0.0.1:{admin_port}" in daemon.log
        answers: list[httpx.Response] = []
        web = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=10)

        def login(password: str) -> httpx.Response:
            form = web.get("/login")
            [token] = re.findall(r'name="csrf_token" value="([^"]+)"', form.text)
            answer = web.post(
                "/login", data={"csrf_token": token, "user": "ada", "password": password}
            )
            answers.extend([form, answer])
            return answer

        assert login(WRONG_PASSWORD).status_code == 401
        assert login(PASSWORD).status_code == 303

        # An escalation: break the broker's config and kill it, so the restart fails.
        (daemon.state_dir / "mosquitto" / "mosquitto.conf").write_text("no_such_option true\n")
        os.kill(daemon.broker_pid(), signal.SIGKILL)
        daemon.wait_for_log(r"escalation \S+ level 0 sent to webhook:oncall", timeout=45)
        daemon.wait_for_log(r"escalation \S+ level 0: gave up on webhook:down", timeout=15)
        [(path, headers, body)] = hooks.requests
        assert headers["Authorization"] == f"Bearer {HOOK_TOKEN}"  # the token is used...
        assert path == f"/hook?key={URL_SECRET}" and leaks(body) == []

        # Every page and endpoint, as an admin, with the objects the run made.
        values = {
            "playbook_id": "PLAY-MQTT-RECOVER-001",
            "execution_id": daemon.query("SELECT id FROM executions LIMIT 1")[0]["id"],
            "escalation_id": daemon.query("SELECT id FROM escalations LIMIT 1")[0]["id"],
            "failure_id": daemon.query("SELECT failure_id FROM failure_memory LIMIT 1")[0][
                "failure_id"
            ],
        }
        routes = route_templates()
        assert len(routes) > 30
        for method, template in routes:
            if method == "GET":
                answers.append(web.get(fill(template, values)))
        csrf = web.get("/api/v1/session").json()["csrf"]
        acknowledged = web.post(
            f"/api/v1/escalations/{values['escalation_id']}/acknowledge",
            headers={"X-CSRF-Token": csrf},
            json={},
        )
        assert acknowledged.status_code == 200
        answers += [acknowledged, web.get("/audit"), web.get("/api/v1/audit")]
        scrape = httpx.get(
            f"http://127.0.0.1:{admin_port}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
        )
        wrong = httpx.get(
            f"http://127.0.0.1:{admin_port}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
            timeout=10,
        )
        assert (scrape.status_code, wrong.status_code) == (200, 401)
        answers += [scrape, wrong]
        assert all(a.status_code < 500 for a in answers), [
            (a.request.url, a.status_code) for a in answers if a.status_code >= 500
        ]

        # Reloads of a broken config: a wrong type on the secret's own line, then a
        # YAML syntax error there. Each is refused whole: the valid new playbook version
        # waiting beside it is not taken either.
        mqtt_book = tmp_path / "playbooks" / "mqtt-recover.yaml"
        mqtt_book.write_text(mqtt_book.read_text().replace("version: 1.0.0", "version: 1.1.0"))
        good = config.read_text()
        for broken in (
            good.replace(f"password: {MQTT_PASSWORD}", f"password: {{p: {MQTT_PASSWORD}}}"),
            good.replace(f"token: {HOOK_TOKEN}", f'token: "{HOOK_TOKEN}'),
        ):
            assert broken != good
            config.write_text(broken)
            mark = len(daemon.log)
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for_log(r"reload refused: kept the running configuration", after=mark)
        active = "SELECT version FROM playbook_versions WHERE active = 1 AND playbook_id = ?"
        assert daemon.query(active, ("PLAY-MQTT-RECOVER-001",))[0]["version"] == "1.0.0"
        reloads = "SELECT action FROM audit_log WHERE action LIKE 'config.reload%'"
        assert [r["action"] for r in daemon.query(reloads)] == ["config.reload_refused"] * 2
        assert daemon.terminate() == 0
        web.close()

    log = daemon.log
    assert "DEBUG" in log  # DEBUG was on
    assert "mqtt.password: Input should be a valid string" in log and "YAML syntax" in log
    if log_format == "json":
        for line in log.splitlines():
            if line.startswith("{"):
                json.loads(line)
    assert leaks(log) == []
    for answer in answers:
        assert leaks(answer.text) == [], (answer.request.url, leaks(answer.text))
        assert leaks(str(answer.headers)) == [], answer.request.url
    stored = b"".join(p.read_bytes() for p in daemon.state_dir.glob("supervisor.db*"))
    assert leaks(stored) == []
    hashes = [r["password_hash"] for r in daemon.query("SELECT password_hash FROM users")]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)


def test_check_config_and_run_never_print_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = secret_config(tmp_path, free_port(), free_port())
    assert main(["check-config", str(config)]) == 0
    good = config.read_text()
    said = capsys.readouterr()
    assert "ok (" in said.out and leaks(said.out + said.err) == []
    for broken, field in (
        (good.replace(f"password: {MQTT_PASSWORD}", f"password: [{MQTT_PASSWORD}]"), "password"),
        (good.replace(f"token: {DOWN_TOKEN}", f"token: {{{DOWN_TOKEN}: 1}}"), "down.token"),
        (good.replace(f"metrics_token: {METRICS_TOKEN}", f"metrics_token: '{METRICS_TOKEN}"), ""),
        (good.replace("bogus", "") + f"\nbogus: {MQTT_PASSWORD}\n", "bogus"),
    ):
        assert broken != good
        config.write_text(broken)
        for argv in (["check-config", str(config)], ["run", "--config", str(config)]):
            with contextlib.suppress(SystemExit):
                assert main(argv) == 1
            said = capsys.readouterr()
            assert field in said.err and said.err.count(str(config)) >= 1, said.err
            assert leaks(said.out + said.err) == [], (argv, said.err)


def test_the_broker_password_is_not_in_the_repr_of_what_carries_it() -> None:
    from graylogic_supervisor.mqtt.link import LinkSettings
    from graylogic_supervisor.mqtt.probe import ProbeTarget

    secret = "pw-in-repr-3f9c"
    link = LinkSettings("127.0.0.1", 1883, "id", "user", secret, 10, "t", b"offline")
    probe = ProbeTarget("127.0.0.1", 1883, "user", secret, "graylogic")
    assert link.password == probe.password == secret  # still there to be used
    assert secret not in repr(link) and secret not in repr(probe)
