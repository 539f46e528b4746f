"""The broker's prober and its confirmation, against real Mosquitto processes.

A healthy broker must never be called unhealthy because the supervisor itself
was starved (its default thread pool full, its file descriptors gone, its loop
blocked), while a killed or hung broker still is. Brokers here are ours, on
free loopback ports; a SIGSTOP'd one is always continued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiomqtt
import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import MqttComponent
from graylogic_supervisor.health.broker_check import BrokerCheck, port_refusal
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.impairment import CouldNotTell
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from graylogic_supervisor.services.manager import Readiness, ServiceManager
from graylogic_supervisor.services.process import ProcessService
from tests.conftest import MOSQUITTO, Broker, free_port
from tests.exhaustion import all_fds_held, saturated_default_executor

PROBE_S = 1.0
CONFIRM_S = 2.0
EVENT_BUDGET_S = 30.0  # generous: waits end on the event, not on this


def target(port: int) -> ProbeTarget:
    return ProbeTarget("127.0.0.1", port, None, None, f"check-{port}")


def component(service: str | None = None, interval_s: float = 3600.0) -> MqttComponent:
    return MqttComponent(
        kind="mqtt", error_id="ERR-INFRA-MQTT-001", service=service, check_interval_s=interval_s
    )


def monitor_of(
    port: int, services: ServiceManager, service: str | None = None, interval_s: float = 3600.0
) -> tuple[HealthMonitor, BrokerCheck, list[tuple[str, str]]]:
    check = BrokerCheck(target(port), services, PROBE_S, CONFIRM_S)
    blind: list[tuple[str, str]] = []
    monitor = HealthMonitor(
        {"mqtt": component(service, interval_s)},
        services,
        {"mqtt": check},
        SystemClock(),
        on_could_not_tell=lambda name, cause: blind.append((name, cause)),
    )
    return monitor, check, blind


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """A hung broker: its process alive, its listening socket accepting, no MQTT answer."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@asynccontextmanager
async def broker_service(
    tmp_path: Path, on_exit: Callable[[str, str], None] = lambda name, detail: None
) -> AsyncIterator[tuple[ServiceManager, int, int]]:
    """Mosquitto run by the real process backend: (services, port, pid)."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\n"
    )
    services = ServiceManager(SystemClock())
    services.add(
        ProcessService(
            "mosquitto",
            [MOSQUITTO, "-c", str(conf)],
            run_dir=tmp_path / "run",
            log_path=tmp_path / "mosquitto.log",
            on_exit=on_exit,
            stop_timeout_s=2,
        ),
        Readiness("127.0.0.1", port, 10),
    )
    status = await services.start("mosquitto")
    assert status.pid is not None
    try:
        yield services, port, status.pid
    finally:
        await services.close()


async def test_a_healthy_broker_is_healthy_and_a_killed_one_unhealthy_at_once(
    own_broker: Broker,
) -> None:
    monitor, check, blind = monitor_of(own_broker.port, ServiceManager(SystemClock()))
    healthy, detail = await monitor.probe("mqtt")
    assert healthy, detail
    assert "MQTT round trip" in detail

    own_broker.stop()
    healthy, detail = await monitor.probe("mqtt")
    assert not healthy
    assert f"port 127.0.0.1:{own_broker.port} refuses connections" in detail
    assert monitor.state("mqtt").health is Health.UNHEALTHY
    assert check.confirmations == 1 and check.refuted == 0
    assert blind == []


async def test_a_hung_broker_is_unhealthy_once_process_port_and_second_probe_agree(
    tmp_path: Path,
) -> None:
    async with broker_service(tmp_path) as (services, port, pid):
        monitor, check, blind = monitor_of(port, services, service="mosquitto")
        assert (await monitor.probe("mqtt"))[0]
        with stopped(pid):
            healthy, detail = await monitor.probe("mqtt")
        assert not healthy
        assert "service mosquitto running" in detail
        assert f"port 127.0.0.1:{port} accepts" in detail
        assert f"no MQTT round trip with 127.0.0.1:{port} in {CONFIRM_S:g} s" in detail
        assert monitor.state("mqtt").health is Health.UNHEALTHY
        assert (check.confirmations, check.refuted, blind) == (1, 0, [])
        # continued: the next probe finds it healthy again
        assert (await monitor.probe("mqtt"))[0]


async def test_a_failed_probe_is_refuted_by_a_second_round_trip_on_its_own_connection(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    check = BrokerCheck(target(broker.port), ServiceManager(SystemClock()), PROBE_S, CONFIRM_S)
    with caplog.at_level(logging.INFO, "graylogic_supervisor.health.broker_check"):
        healthy, detail = await check.confirm("mqtt", None, "no MQTT round trip in 2 s")
    assert healthy, detail
    assert "on a second connection (the first probe: no MQTT round trip in 2 s)" in detail
    assert (check.confirmations, check.refuted) == (1, 1)
    assert "a failed probe was not confirmed" in caplog.text


async def test_a_dead_service_is_certain_without_waiting_for_a_round_trip(
    tmp_path: Path,
) -> None:
    async with broker_service(tmp_path) as (services, port, _):
        check = BrokerCheck(target(port), services, PROBE_S, CONFIRM_S)
        await services.stop("mosquitto")
        healthy, detail = await check.confirm("mqtt", "mosquitto", "connection refused")
        assert not healthy
        assert detail.startswith("connection refused; service mosquitto ")


async def test_a_saturated_default_thread_pool_never_makes_a_healthy_broker_unhealthy(
    own_broker: Broker,
) -> None:
    monitor, _, blind = monitor_of(own_broker.port, ServiceManager(SystemClock()))
    async with saturated_default_executor():
        # The starvation is real: aiomqtt's connect runs in that pool and cannot start.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(PROBE_S):
                async with aiomqtt.Client("127.0.0.1", own_broker.port, timeout=PROBE_S):
                    pass
        answers = [await monitor.probe("mqtt") for _ in range(20)]
        assert all(healthy for healthy, _ in answers), answers
        assert monitor.state("mqtt").health is Health.HEALTHY

        own_broker.stop()  # a killed broker is still seen, pool or not
        healthy, detail = await monitor.probe("mqtt")
        assert not healthy, detail
        assert monitor.state("mqtt").health is Health.UNHEALTHY
    assert blind == []


async def test_without_file_descriptors_the_broker_keeps_its_health_and_it_is_counted(
    own_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    monitor, _, blind = monitor_of(own_broker.port, ServiceManager(SystemClock()))
    assert (await monitor.probe("mqtt"))[0]
    assert monitor.changes.get_nowait().current.health is Health.HEALTHY
    with (
        caplog.at_level(logging.WARNING, "graylogic_supervisor.health.monitor"),
        all_fds_held() as held,
    ):
        assert held > 0
        answers = [await monitor.probe("mqtt") for _ in range(3)]
    assert all(healthy for healthy, _ in answers)  # the last known health: healthy
    assert all("could not tell" in detail and "EMFILE" in detail for _, detail in answers)
    assert monitor.state("mqtt").health is Health.HEALTHY
    assert monitor.changes.empty()  # nothing for the supervisor to act on
    streak = monitor.blind("mqtt")
    assert streak is not None and (streak.cause, streak.checks) == ("fds", 3)
    assert blind == [("mqtt", "fds")] * 3
    assert caplog.text.count("could not tell whether mqtt is healthy") == 1  # once per streak

    assert (await monitor.probe("mqtt"))[0]
    assert monitor.blind("mqtt") is None


async def test_an_unhealthy_broker_stays_unhealthy_while_we_cannot_tell(
    own_broker: Broker,
) -> None:
    monitor, _, _ = monitor_of(own_broker.port, ServiceManager(SystemClock()))
    own_broker.stop()
    assert not (await monitor.probe("mqtt"))[0]
    with all_fds_held():
        healthy, detail = await monitor.probe("mqtt")
    assert not healthy and "could not tell" in detail
    assert monitor.state("mqtt").health is Health.UNHEALTHY  # no "recovered" from blindness


async def test_a_timeout_spent_on_our_own_blocked_loop_is_not_the_brokers(
    own_broker: Broker,
) -> None:
    loop = asyncio.get_running_loop()
    with stopped(own_broker.process.pid):
        # The broker is silent, but the loop is blocked for longer than the whole budget:
        # the timeout measured us, not the broker.
        loop.call_later(0.05, time.sleep, PROBE_S * 2.5)
        with pytest.raises(CouldNotTell, match="event loop was busy") as caught:
            await probe_broker(target(own_broker.port), PROBE_S)
        assert caught.value.cause == "loop-lag"
        # With the loop free, the same silence is the broker's.
        with pytest.raises(ProbeError, match=f"no MQTT round trip .* in {PROBE_S:g} s"):
            await probe_broker(target(own_broker.port), PROBE_S)


async def test_a_link_drop_wakes_the_probe_and_is_believed_only_with_evidence(
    own_broker: Broker,
) -> None:
    monitor, check, _ = monitor_of(own_broker.port, ServiceManager(SystemClock()))
    async with asyncio.TaskGroup() as group:
        probes = group.create_task(monitor.run(), name="probes")
        first = await asyncio.wait_for(monitor.changes.get(), EVENT_BUDGET_S)
        assert first.current.health is Health.HEALTHY

        monitor.link_changed(False, "keepalive timeout")  # the broker is fine: no change
        monitor.link_changed(True, "connected")
        assert monitor.state("mqtt").health is Health.HEALTHY

        own_broker.stop()
        monitor.link_changed(False, "connection reset")  # woken: no 3600 s interval to wait
        change = await asyncio.wait_for(monitor.changes.get(), EVENT_BUDGET_S)
        assert change.current.health is Health.UNHEALTHY
        assert "refuses connections" in change.current.detail
        probes.cancel()
    assert monitor.changes.empty()
    assert check.refuted == 0


async def test_the_port_witness_tells_refused_from_could_not_tell(broker: Broker) -> None:
    assert await port_refusal("127.0.0.1", broker.port, CONFIRM_S) is None
    refusal = await port_refusal("127.0.0.1", free_port(), CONFIRM_S)
    assert refusal is not None and refusal.startswith("refuses connections")
    with all_fds_held(), pytest.raises(CouldNotTell, match="EMFILE") as caught:
        await port_refusal("127.0.0.1", broker.port, CONFIRM_S)
    assert caught.value.cause == "fds"


async def test_a_killed_broker_is_unhealthy_at_once_even_without_file_descriptors(
    tmp_path: Path,
) -> None:
    """The process backend's exit event is certain: it needs no probe and no descriptor."""
    exits: list[tuple[str, str]] = []
    exited = asyncio.Event()

    def on_exit(name: str, detail: str) -> None:
        exits.append((name, detail))
        exited.set()

    async with broker_service(tmp_path, on_exit) as (services, port, pid):
        monitor, _, _ = monitor_of(port, services, service="mosquitto")
        assert (await monitor.probe("mqtt"))[0]
        with all_fds_held():
            assert "could not tell" in (await monitor.probe("mqtt"))[1]
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(exited.wait(), EVENT_BUDGET_S)
            monitor.service_exited(*exits[0])  # as the daemon wires it
            assert monitor.state("mqtt").health is Health.UNHEALTHY
            healthy, detail = await monitor.probe("mqtt")  # and the probe agrees
        assert not healthy
        assert "killed by SIGKILL" in detail
