"""Our own broker with a password file and the shipped ACL: only bridge X speaks for X.

A real Mosquitto run on the config ``broker.py`` writes, with
``config/mosquitto.acl.example`` as its ACL and a password file made by
``mosquitto_passwd``; real clients log in as the supervisor and as two bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from graylogic_supervisor.broker import mosquitto_conf, plan_broker
from graylogic_supervisor.config import BrokerConfig, SupervisorConfig
from graylogic_supervisor.errors import ConfigError
from tests.conftest import MOSQUITTO, free_port

REPO = Path(__file__).parents[1]
ACL_EXAMPLE = REPO / "config" / "mosquitto.acl.example"
USERS = {"supervisor": "s3cret", "bridge-knx": "knx-pw", "bridge-dali": "dali-pw"}

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed"
)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[int]:
    """Mosquitto started as root reads these files as user ``mosquitto``: the password file
    is its own (0600) in a directory it may traverse, as on a site."""
    files = Path(tempfile.mkdtemp(prefix="gl-acl-"))
    files.chmod(0o711)
    passwords = files / "mosquitto.passwords"
    passwords.touch(mode=0o600)
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("mosquitto")
            os.chown(passwords, owner.pw_uid, owner.pw_gid)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(mosquitto_conf("127.0.0.1", port, passwords, ACL_EXAMPLE))
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start on the secured config") from None
                time.sleep(0.01)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)
        shutil.rmtree(files)


async def client_as(port: int, user: str | None) -> aiomqtt.Client:
    password = USERS[user] if user else None
    return aiomqtt.Client("127.0.0.1", port, username=user, password=password, timeout=5)


@pytest.fixture
async def supervisor(secured: int) -> AsyncIterator[tuple[aiomqtt.Client, list[str]]]:
    """The supervisor's view: every heartbeat it is delivered, as (topic: payload)."""
    seen: list[str] = []
    async with await client_as(secured, "supervisor") as client:
        await client.subscribe("graylogic/health/+", qos=1)

        async def read() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append(f"{message.topic.value}: {message.payload.decode()}")

        reader = asyncio.create_task(read())
        try:
            yield client, seen
        finally:
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader


async def test_only_a_bridge_itself_can_write_its_heartbeat(
    secured: int, supervisor: tuple[aiomqtt.Client, list[str]]
) -> None:
    _, seen = supervisor
    async with await client_as(secured, "bridge-dali") as dali:
        # Mosquitto acknowledges a denied publish and drops it: the supervisor never sees it.
        await dali.publish("graylogic/health/bridge-knx", b"offline", qos=1)
        await dali.publish("graylogic/health/supervisor", b"forged", qos=1)
        await dali.publish("graylogic/health/bridge-dali", b"dali online", qos=1)
    async with await client_as(secured, "bridge-knx") as knx:
        await knx.publish("graylogic/health/bridge-knx", b"knx online", qos=1)
    async with asyncio.timeout(10):
        while len(seen) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert seen == [
        "graylogic/health/bridge-dali: dali online",
        "graylogic/health/bridge-knx: knx online",
    ]


async def test_anonymous_and_wrong_password_clients_are_refused(secured: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with await client_as(secured, None):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", secured, username="bridge-knx", password="wrong", timeout=5
        ):
            pass


async def test_the_supervisor_still_publishes_its_own_topics(
    secured: int, supervisor: tuple[aiomqtt.Client, list[str]]
) -> None:
    client, _ = supervisor
    await client.publish("graylogic/supervisor/state", b"{}", qos=1)  # acknowledged
    async with await client_as(secured, "bridge-knx") as knx:
        await knx.subscribe("graylogic/supervisor/state", qos=1)
        await client.publish("graylogic/supervisor/state", b'{"ok": true}', qos=1, retain=True)
        async with asyncio.timeout(10):
            async for message in knx.messages:
                assert message.payload == b'{"ok": true}'
                break
    await client.publish("graylogic/supervisor/state", b"", qos=1, retain=True)


def test_a_password_file_without_the_supervisors_own_login_is_a_config_error(
    tmp_path: Path,
) -> None:
    from graylogic_supervisor.config import cross_reference_problems

    passwords = tmp_path / "p"
    passwords.touch()
    config = SupervisorConfig(broker=BrokerConfig(password_file=passwords))
    assert cross_reference_problems(config) == [
        (
            ("broker", "password_file"),
            "anonymous clients are refused: set mqtt.username and mqtt.password too",
        )
    ]


def test_a_missing_password_or_acl_file_stops_the_plan_not_the_broker(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.acl_file"):
        plan_broker(
            BrokerConfig(mode="process", acl_file=tmp_path / "missing.acl"),
            tmp_path,
            free=lambda h, p: True,
        )


def test_the_written_config_refuses_anonymous_clients_and_names_both_files() -> None:
    conf = mosquitto_conf("127.0.0.1", 2000, Path("/etc/gl/passwords"), Path("/etc/gl/acl"))
    assert conf.splitlines()[1:5] == [
        "listener 2000 127.0.0.1",
        "allow_anonymous false",
        "password_file /etc/gl/passwords",
        "acl_file /etc/gl/acl",
    ]
    with pytest.raises(ValueError, match="line break"):
        mosquitto_conf("127.0.0.1", 2000, Path("/etc/x\nallow_anonymous true"))
