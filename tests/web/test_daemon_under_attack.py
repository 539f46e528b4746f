"""The real daemon under the admin-page attacks of issue 13: idle connections by the
thousand, and bursts of wrong logins. Supervision must not notice: the broker stays
healthy and is never restarted, the fds stay bounded, RSS stays under the unit's
MemoryMax (256 MiB). Run with ``-s`` to see the figures."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from graylogic_supervisor.store.sessions import LoginLimits
from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, write_config

pytestmark = pytest.mark.slow

MEMORY_MAX = 256 * 1024 * 1024
BUDGET_S = 120.0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = write_config(tmp_path, free_port())
    data = yaml.safe_load(config.read_text())
    data["components"]["mqtt"]["check_interval_s"] = 1  # probes all through the attack
    data["log_level"] = "INFO"
    config.write_text(yaml.safe_dump(data))
    # This checkout's code: with the shared venv, a child in tmp_path would import
    # the package installed from /work/main.
    started = Daemon(config, env={"PYTHONPATH": str(REPO)}).start()
    try:
        started.wait_for_log(r"mqtt is healthy", timeout=60)
        yield started
    finally:
        started.cleanup()


def base_of(daemon: Daemon) -> str:
    port = yaml.safe_load(daemon.config.read_text())["admin"]["port"]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}"


def fds_of(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


async def wrong_logins(base: str, addresses: list[str]) -> Counter[str]:
    """One wrong login from each address, all POSTed at once once every form is loaded."""
    loaded, go = asyncio.Semaphore(0), asyncio.Event()

    async def guess(address: str) -> str:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(base_url=base, transport=transport, timeout=BUDGET_S) as c:
            try:
                page = await c.get("/login")
            except httpx.TransportError:
                return "closed"
            finally:
                loaded.release()
            [token] = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
            await go.wait()
            try:
                answer = await c.post(
                    "/login", data={"csrf_token": token, "user": "admin", "password": "guess"}
                )
            except httpx.TransportError:
                return "closed"
            return str(answer.status_code)

    tasks = [asyncio.create_task(guess(a)) for a in addresses]
    for _ in addresses:
        await loaded.acquire()
    go.set()
    return Counter(await asyncio.gather(*tasks))


@pytest.mark.parametrize(
    ("concurrent", "addresses"),
    [(6, 6), (150, 1), (150, 150)],
    ids=["6-logins", "150-from-one-address", "150-from-150-addresses"],
)
def test_a_burst_of_wrong_logins_leaves_memory_and_the_broker_alone(
    daemon: Daemon, concurrent: int, addresses: int
) -> None:
    assert daemon.process is not None
    pid, broker = daemon.process.pid, daemon.broker_pid()
    before = psutil.Process(pid).memory_info().rss
    pool = [f"127.0.0.{2 + i % addresses}" for i in range(concurrent)]
    outcomes = asyncio.run(wrong_logins(base_of(daemon), pool))
    hashed = daemon.query("SELECT COUNT(*) FROM login_attempts WHERE ok = 0")[0][0]
    peak = peak_rss(pid)
    print(
        f"\n{concurrent} concurrent wrong logins from {addresses} address(es):"
        f" RSS {before / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB;"
        f" outcomes {dict(outcomes)}; passwords checked {hashed}"
    )
    assert peak < MEMORY_MAX
    limits = LoginLimits()
    assert hashed <= min(concurrent, addresses * limits.per_pair, limits.overall)
    assert outcomes["401"] == hashed
    assert daemon.broker_pid() == broker  # never restarted
    assert daemon.query("SELECT COUNT(*) FROM executions")[0][0] == 0
    assert "mqtt is unhealthy" not in daemon.log


def test_thousands_of_idle_connections_leave_fds_bounded_and_supervision_alone(
    daemon: Daemon,
) -> None:
    assert daemon.process is not None
    pid, broker = daemon.process.pid, daemon.broker_pid()
    baseline = fds_of(pid)
    most = 0

    async def attack() -> tuple[int, int]:
        nonlocal most
        streams = []
        port = int(base_of(daemon).rsplit(":", 1)[1])
        for i in range(3000):
            local = (f"127.0.{1 + i // 250}.{2 + i % 250}", 0)
            streams.append(
                await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=local), BUDGET_S
                )
            )
            if i % 50 == 0:
                most = max(most, fds_of(pid))
        await asyncio.sleep(1)
        most = max(most, fds_of(pid))
        # Served while they are held? Not before the idle ones are reaped (request timeout).
        loop = asyncio.get_running_loop()
        deadline, status = loop.time() + BUDGET_S, 0
        while not status and loop.time() < deadline:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    status = (await client.get(f"{base_of(daemon)}/healthz")).status_code
            except httpx.TransportError:
                await asyncio.sleep(0.5)
        held = fds_of(pid)
        for _, writer in streams:
            writer.transport.abort()
        return status, held

    status, held = asyncio.run(attack())
    print(
        f"\n3000 idle connections: daemon fds {baseline} before, at most {most} during"
        f" (sampled), {held} once /healthz answered {status}"
    )
    assert status == 200
    assert most <= baseline + 64 + 2 + 8  # the cap; its +2; probes and the store come and go
    assert daemon.broker_pid() == broker
    assert "mqtt is unhealthy" not in daemon.log
    assert "Traceback" not in daemon.log
