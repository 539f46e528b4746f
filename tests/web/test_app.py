"""The HTTP API against a real HealthMonitor and real Metrics, and uvicorn on a real port."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest
from starlette.applications import Starlette

from graylogic_supervisor.clock import SystemClock, isoformat
from graylogic_supervisor.config import ComponentConfig, MqttComponent, ServiceComponent
from graylogic_supervisor.health.monitor import ComponentHealth, Health, HealthMonitor
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.web.app import HealthView, WebDeps, create_app
from graylogic_supervisor.web.server import ListenError, serve
from tests.conftest import free_port

BROKER_ERROR = "ERR-INFRA-MQTT-001"
CORE_ERROR = "ERR-CORE-PROC-001"


class Prober:
    """The probe result the test decides on."""

    def __init__(self) -> None:
        self.result = (True, "round trip 1.0 ms")

    async def __call__(self, component: str, config: ComponentConfig) -> tuple[bool, str]:
        return self.result


@pytest.fixture
def prober() -> Prober:
    return Prober()


@pytest.fixture
def monitor(prober: Prober) -> HealthMonitor:
    components: dict[str, ComponentConfig] = {
        "broker": MqttComponent(kind="mqtt", error_id=BROKER_ERROR),
        "core": ServiceComponent(kind="service", service="core", error_id=CORE_ERROR),
    }
    clock = SystemClock()
    return HealthMonitor(
        components, ServiceManager(clock), {"mqtt": prober, "service": prober}, clock
    )


def build_app(health: HealthView, recovering: frozenset[str] = frozenset()) -> Starlette:
    return create_app(
        WebDeps(
            health=health,
            recovering=lambda: recovering,
            metrics=Metrics("9.8.7"),
            site="site-a",
            version="9.8.7",
        )
    )


@pytest.fixture
async def client(monitor: HealthMonitor) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(monitor, frozenset({"core", "broker"}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


async def system_health(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/api/v1/system/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    return body


async def test_healthz_says_ok_whatever_the_components(
    client: httpx.AsyncClient, monitor: HealthMonitor
) -> None:
    monitor.report("broker", False, "connection refused")

    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_health_is_unknown_everywhere_before_any_report(
    client: httpx.AsyncClient, monitor: HealthMonitor
) -> None:
    body = await system_health(client)

    assert body["status"] == "unknown"
    assert body["components"] == {
        name: {
            "status": "unknown",
            "detail": "not checked yet",
            "since": isoformat(monitor.state(name).since),
            "error_id": "",
        }
        for name in ("broker", "core")
    }


async def test_health_names_site_version_and_recovering_components_sorted(
    client: httpx.AsyncClient,
) -> None:
    body = await system_health(client)

    assert body["site"] == "site-a"
    assert body["version"] == "9.8.7"
    assert body["recovering"] == ["broker", "core"]


@pytest.mark.parametrize(
    ("broker", "core", "overall"),
    [
        (True, True, "healthy"),
        (True, None, "unknown"),
        (False, None, "unhealthy"),
        (True, False, "unhealthy"),
    ],
)
async def test_overall_health_is_the_worst_component(
    client: httpx.AsyncClient,
    monitor: HealthMonitor,
    broker: bool,
    core: bool | None,
    overall: str,
) -> None:
    monitor.report("broker", broker, "observed")
    if core is not None:
        monitor.report("core", core, "observed")

    body = await system_health(client)

    assert body["status"] == overall == monitor.overall().value


async def test_each_component_carries_status_detail_since_and_error_id_when_unhealthy(
    client: httpx.AsyncClient, monitor: HealthMonitor, prober: Prober
) -> None:
    prober.result = (False, "no CONNACK within 2 s")
    await monitor.probe("broker")
    monitor.report("core", True, "service core running")

    components = (await system_health(client))["components"]

    assert components == {
        "broker": {
            "status": "unhealthy",
            "detail": "no CONNACK within 2 s",
            "since": isoformat(monitor.state("broker").since),
            "error_id": BROKER_ERROR,
        },
        "core": {
            "status": "healthy",
            "detail": "service core running",
            "since": isoformat(monitor.state("core").since),
            "error_id": "",
        },
    }


async def test_metrics_serve_the_exposition_with_component_health_read_at_scrape_time(
    client: httpx.AsyncClient, monitor: HealthMonitor
) -> None:
    monitor.report("core", False, "exited with status 1")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    lines = response.text.splitlines()
    assert 'graylogic_supervisor_component_healthy{component="core"} 0.0' in lines
    assert 'graylogic_supervisor_component_healthy{component="broker"} -1.0' in lines
    assert 'graylogic_supervisor_build_info{version="9.8.7"} 1.0' in lines


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


async def test_a_browser_at_an_unknown_address_gets_a_page_scripts_still_json(
    client: httpx.AsyncClient,
) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    page = await client.get("/playbok/x", headers=browser)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/"' in page.text and "Not Found" in page.text
    script = await client.get("/playbok/x")  # no Accept: a script, JSON as before
    assert script.json() == {"error": "Not Found"}
    api = await client.get("/api/v1/nothing-here", headers=browser)  # the API stays JSON
    assert api.json() == {"error": "Not Found"}


async def test_wrong_method_is_a_json_405_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/system/health", json={})

    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
    # Starlette keeps a route's methods in a set: their order changes from run to run.
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


class BrokenHealth:
    """A health view that fails the way a bug would."""

    def snapshot(self) -> Mapping[str, ComponentHealth]:
        raise RuntimeError("secret detail at /var/lib/graylogic/state")

    def overall(self) -> Health:
        return Health.HEALTHY


async def test_a_failing_collaborator_is_a_bare_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(BrokenHealth())
    transport = httpx.ASGITransport(app=app)  # raises any exception the app lets out
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/api/v1/system/health")

    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "graylogic_supervisor.web.app"
    assert errors[0].exc_info is not None


def port_is_free(port: int) -> bool:
    """Binding as a server would (SO_REUSEADDR) fails only while something listens there."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_serve_answers_on_a_real_port_and_frees_it_when_cancelled(
    monitor: HealthMonitor,
) -> None:
    port = free_port()
    ready = asyncio.Event()
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(
        serve(build_app(monitor), "127.0.0.1", port, ready=ready), name="web"
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=5)
        assert signal.getsignal(signal.SIGTERM) is sigterm_handler  # the daemon keeps SIGTERM
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            response = await client.get("/healthz")
            assert not port_is_free(port)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert port_is_free(port)


async def test_serve_stops_gracefully_while_a_client_holds_a_connection(
    monitor: HealthMonitor,
) -> None:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(build_app(monitor), "127.0.0.1", port, ready=ready))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        await asyncio.wait_for(ready.wait(), timeout=5)
        assert (await client.get("/healthz")).status_code == 200  # keep-alive stays open

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

        assert port_is_free(port)


async def test_an_address_in_use_is_a_listen_error_naming_it(monitor: HealthMonitor) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ready = asyncio.Event()

        with pytest.raises(ListenError) as raised:
            await asyncio.wait_for(
                serve(build_app(monitor), "127.0.0.1", port, ready=ready), timeout=5
            )

    assert (raised.value.host, raised.value.port) == ("127.0.0.1", port)
    assert raised.value.reason == "Address already in use"
    assert str(raised.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not ready.is_set()


async def test_the_date_header_stays_current_with_uvicorn_ticking_once_a_second(
    monitor: HealthMonitor,
) -> None:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(build_app(monitor), "127.0.0.1", port, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await asyncio.sleep(2.5)  # past two ticks: a stale header would be 2.5 s behind
            response = await client.get("/healthz")
            now = datetime.now(UTC)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
    sent = parsedate_to_datetime(response.headers["date"])
    assert timedelta(0) <= now - sent < timedelta(seconds=1.5)
