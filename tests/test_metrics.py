"""Metrics: each call moves its series, the exposition passes promtool, registries are private."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from graylogic_supervisor.metrics import Metrics

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"graylogic_supervisor_{name}", labels)


def exercised() -> Metrics:
    """Every series present, with label values as the callers will send them."""
    metrics = Metrics("0.1.0")
    metrics.execution_finished("mqtt-broker-down", "resolved")
    metrics.execution_finished("mqtt-broker-down", "escalated")
    metrics.step_finished("restart_service", "success")
    metrics.step_finished("check_mqtt", "timeout")
    metrics.recovery_attempt("broker")
    metrics.viability("denied", "breaker_open")
    metrics.set_termination_rate(0.125)
    metrics.set_component_health("broker", "healthy")
    metrics.set_component_health("core", "unhealthy")
    metrics.set_component_health("bridge", "unknown")
    metrics.broker_restarted()
    metrics.set_safe_mode(True)
    return metrics


def test_counters_move_with_each_call() -> None:
    metrics = Metrics("0.1.0")

    metrics.execution_finished("mqtt-broker-down", "resolved")
    metrics.execution_finished("mqtt-broker-down", "resolved")
    metrics.execution_finished("mqtt-broker-down", "failed")
    metrics.step_finished("restart_service", "success")
    metrics.recovery_attempt("broker")
    metrics.recovery_attempt("broker")
    metrics.viability("allowed", "within_budget")
    metrics.broker_restarted()

    assert value(metrics, "executions_total", playbook="mqtt-broker-down", status="resolved") == 2
    assert value(metrics, "executions_total", playbook="mqtt-broker-down", status="failed") == 1
    assert value(metrics, "step_outcomes_total", action="restart_service", outcome="success") == 1
    assert value(metrics, "recovery_attempts_total", component="broker") == 2
    assert (
        value(metrics, "viability_evaluations_total", outcome="allowed", reason="within_budget")
        == 1
    )
    assert value(metrics, "broker_restarts_total") == 1


def test_gauges_hold_the_last_value_set() -> None:
    metrics = exercised()

    assert value(metrics, "termination_rate") == 0.125
    assert value(metrics, "component_healthy", component="broker") == 1
    assert value(metrics, "component_healthy", component="core") == 0
    assert value(metrics, "component_healthy", component="bridge") == -1
    assert value(metrics, "safe_mode") == 1
    assert value(metrics, "build_info", version="0.1.0") == 1

    metrics.set_safe_mode(False)
    metrics.set_component_health("core", "healthy")
    assert value(metrics, "safe_mode") == 0
    assert value(metrics, "component_healthy", component="core") == 1


def test_termination_rate_is_nan_until_there_is_a_rate() -> None:
    metrics = Metrics("0.1.0")
    rate = value(metrics, "termination_rate")
    assert rate is not None and math.isnan(rate)

    metrics.set_termination_rate(0.5)
    metrics.set_termination_rate(None)

    rate = value(metrics, "termination_rate")
    assert rate is not None and math.isnan(rate)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_termination_rate_outside_0_to_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=r"not within 0\.\.1"):
        Metrics("0.1.0").set_termination_rate(rate)


def test_an_unknown_health_value_is_refused() -> None:
    with pytest.raises(ValueError, match="'degraded'"):
        Metrics("0.1.0").set_component_health("broker", "degraded")


def test_the_exposition_is_the_plain_text_format() -> None:
    metrics = exercised()

    assert metrics.content_type.startswith("text/plain; version=")
    assert metrics.exposition() == generate_latest(metrics.registry)
    assert b"# TYPE graylogic_supervisor_build_info gauge" in metrics.exposition()


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed")
def test_the_exposition_passes_promtool() -> None:
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exercised().exposition(),
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr == b""
    assert checked.stdout == b""


def test_two_instances_share_no_state() -> None:
    first, second = Metrics("1.0.0"), Metrics("2.0.0")

    first.broker_restarted()
    first.set_component_health("broker", "unhealthy")

    assert first.registry is not second.registry
    assert value(second, "broker_restarts_total") == 0
    assert value(second, "component_healthy", component="broker") is None
    assert value(second, "build_info", version="1.0.0") is None
    assert value(first, "build_info", version="2.0.0") is None


def test_nothing_lands_in_the_default_registry() -> None:
    before = {m.name for m in REGISTRY.collect()}

    exercised()

    assert {m.name for m in REGISTRY.collect()} == before
