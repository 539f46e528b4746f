"""The failure context is captured even when the supervisor's own resources are gone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import MqttComponent
from graylogic_supervisor.health.monitor import HealthMonitor
from graylogic_supervisor.memory.capture import ContextCapture, resource_state
from graylogic_supervisor.memory.events import EventRing
from graylogic_supervisor.services.manager import ServiceManager
from tests.exhaustion import all_fds_held


async def _never(component: str, config: object) -> tuple[bool, str]:
    raise AssertionError("not probed here")


def capture_of(tmp_path: Path) -> ContextCapture:
    clock = SystemClock()
    monitor = HealthMonitor(
        {"mqtt": MqttComponent(kind="mqtt", error_id="ERR-INFRA-MQTT-001")},
        ServiceManager(clock),
        {"mqtt": _never},
        clock,
    )
    return ContextCapture(monitor, EventRing(clock, 10), tmp_path, clock)


def test_the_context_has_real_figures_when_they_can_be_read(tmp_path: Path) -> None:
    context = capture_of(tmp_path).capture(
        "f1", "i1", "mqtt", "ERR-INFRA-MQTT-001", severity="high", message="down"
    )
    assert context.resources.memory_percent > 0
    assert context.environment.uptime_s > 0


def test_without_file_descriptors_the_context_is_partial_and_nothing_escapes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: an OSError from psutil here once escaped the task group and ended the daemon."""
    capture = capture_of(tmp_path)
    with caplog.at_level(logging.WARNING, "graylogic_supervisor.memory.capture"), all_fds_held():
        context = capture.capture(
            "f2", "i2", "mqtt", "ERR-INFRA-MQTT-001", severity="high", message="down"
        )
        figures = resource_state(tmp_path)  # what the runner reads for step conditions
    assert context.failure_id == "f2" and context.other_health == {}
    assert context.resources.memory_percent == 0  # /proc/meminfo could not be opened
    assert figures.memory_percent == 0
    assert context.resources.disk_percent > 0  # statvfs needs no descriptor
    assert "captured without some figures" in caplog.text
    assert "memory use" in caplog.text
