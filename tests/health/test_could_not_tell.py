"""Checks that could not tell, seen from the rest of the supervisor.

The resource probers under really held file descriptors, and the supervisor
loop itself (over a real store, on virtual time): a check that cannot tell
opens no incident, closes none, and counts toward no health change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import (
    ComponentConfig,
    CpuComponent,
    MemoryComponent,
)
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import NoParams, StepContext
from graylogic_supervisor.engine.builtins.network import CheckMqtt
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.health.probes import cpu_prober, memory_prober
from graylogic_supervisor.impairment import CouldNotTell
from graylogic_supervisor.mqtt.probe import ProbeTarget
from graylogic_supervisor.services.manager import ServiceManager
from tests.conftest import Broker
from tests.exhaustion import all_fds_held
from tests.supervisor.test_loop import Harness, open_harness, settle


class CannotTell(dict[str, bool]):
    """The harness's probe answers, read as a starved prober would: never an answer."""

    def get(self, key: str, default: bool | None = None) -> bool:  # type: ignore[override]
        raise CouldNotTell("fds", "could not check: no free file descriptor (EMFILE)")


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as h:
        task = asyncio.create_task(h.supervisor.run())
        try:
            yield h
        finally:
            h.supervisor.stop_accepting()
            task.cancel()
            await asyncio.wait([task])


async def test_the_resource_probers_cannot_tell_without_file_descriptors() -> None:
    clock = SystemClock()
    components: dict[str, ComponentConfig] = {
        "memory": MemoryComponent(kind="memory", error_id="ERR-SYS-MEM-001", max_percent=100),
        "cpu": CpuComponent(kind="cpu", error_id="ERR-SYS-CPU-001", max_load_per_cpu=1000),
    }
    blind: list[tuple[str, str]] = []
    monitor = HealthMonitor(
        components,
        ServiceManager(clock),
        {"memory": memory_prober(), "cpu": cpu_prober(clock, min_sample_s=0)},
        clock,
        on_could_not_tell=lambda component, cause: blind.append((component, cause)),
    )
    assert (await monitor.probe("memory"))[0]
    assert (await monitor.probe("cpu"))[0]
    with all_fds_held():
        memory = await monitor.probe("memory")
        cpu = await monitor.probe("cpu")
    assert "could not tell" in memory[1] and "could not tell" in cpu[1]
    assert monitor.state("memory").health is Health.HEALTHY
    assert monitor.state("cpu").health is Health.HEALTHY
    assert [component for component, _ in blind] == ["memory", "cpu"]
    assert blind[0][1] == "fds"


async def test_a_healthy_component_that_cannot_be_checked_opens_no_incident(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await h.seed()
        h.monitor.report("mqtt", True, "up")
        h.probe_health = CannotTell()
        for _ in range(10):
            healthy, detail = await h.monitor.probe("mqtt")
            assert healthy and detail.startswith("could not tell")
        await settle(h)
        assert await h.incident_rows() == []
        assert h.fix.calls == 0
        assert h.policy.stabilisation_hold("mqtt") == 0  # no health change was counted


async def test_an_open_incident_is_not_closed_by_checks_that_cannot_tell(tmp_path: Path) -> None:
    async with running(tmp_path) as h:  # no playbook: escalated, waiting for health
        h.monitor.report("mqtt", False, "down")
        await h.clock.sleep(0.05)
        h.probe_health = CannotTell()
        for _ in range(5):
            assert not (await h.monitor.probe("mqtt"))[0]
            await h.clock.sleep(0.6)
        [incident] = await h.incident_rows()
        assert (incident["phase"], incident["closed_at"]) == ("escalated", None)
        h.monitor.report("mqtt", True, "a technician fixed it")
        await settle(h)
        [incident] = await h.incident_rows()
        assert incident["closed_at"] is not None


async def test_check_mqtt_says_it_could_not_tell_instead_of_failing_the_broker(
    broker: Broker,
) -> None:
    action = CheckMqtt(ProbeTarget("127.0.0.1", broker.port, None, None, "act"))
    clock = SystemClock()
    context = StepContext(
        "exec-1",
        "PLAY-MQTT-RECOVER-001",
        "probe_broker",
        None,
        NoParams(),
        FailureInfo("fail-1", "mqtt", "ERR-INFRA-MQTT-001", "down"),
        clock,
        clock.monotonic() + 0.5,
    )
    with all_fds_held():
        result = await action.run(context)
    assert not result.success
    assert result.output["could_not_tell"] is True
    assert "could not tell whether the broker answers" in result.result
    assert "EMFILE" in result.result


async def test_a_run_that_resolved_is_not_repeated_while_the_check_after_it_cannot_tell(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await h.seed()
        h.healthy_on_probe = True  # the fix works
        starved = CouldNotTell("fds", "could not check: no free file descriptor (EMFILE)")
        h.probe_raises["mqtt"] = [starved, starved, starved]  # the checks after the run
        h.monitor.report("mqtt", False, "service mosquitto exited")
        await settle(h, timeout=60)
        assert h.fix.calls == 1  # not run again on a broker we could not look at
        assert await h.statuses() == ["resolved"]
        [incident] = await h.incident_rows()
        assert incident["phase"] == "resolved"
        assert h.probe_raises["mqtt"] == []  # it did ask again until a check could tell
