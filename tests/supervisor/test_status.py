"""Progress of a running execution, as a dashboard subscribed to it sees it."""

from __future__ import annotations

import asyncio
import json
import random

import aiomqtt

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.mqtt.link import MqttLink
from graylogic_supervisor.mqtt.topics import Topics
from graylogic_supervisor.store.executions import StepEnd
from graylogic_supervisor.supervisor.status import DurationHistory, StatusPublisher
from tests.conftest import Broker
from tests.engine.test_runner import STANDARD, playbook
from tests.mqtt.test_link import settings


async def test_progress_counts_steps_and_estimates_what_is_left(broker: Broker) -> None:
    root = "progress"
    link = MqttLink(settings(broker.port, root), SystemClock(), random.Random(1))
    book = playbook(STANDARD)
    history = DurationHistory({(book.id, book.version): (40.0, 4)})  # a mean of 10 s
    publisher = StatusPublisher(link, Topics(root), "site", SystemClock(), durations=history)
    failure = FailureInfo("fail-1", "mqtt", "ERR-INFRA-MQTT-001", "down")
    task = asyncio.create_task(link.run())
    received: list[dict[str, object]] = []
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(f"{root}/supervisor/execution/+")
            while not link.connected:
                await asyncio.sleep(0.01)
            publisher.execution_started("exec-1", book, failure)
            for step in book.steps:
                publisher.step_started("exec-1", book, step, 1)
                publisher.step_finished(
                    "exec-1", book, step, StepEnd("success", "ok", {}, None, "next")
                )
            publisher.execution_finished(
                book, failure, ExecutionOutcome("exec-1", "resolved", "fix", 0.5, "done")
            )
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    received.append(json.loads(message.payload))
                    if received[-1]["status"] == "resolved":
                        break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    done = [m["steps_done"] for m in received]
    assert done == sorted(done) and done[-1] == 3
    assert all(m["steps_total"] == 3 for m in received)
    assert 9 < received[0]["remaining_s"] <= 10  # type: ignore[operator]
    assert history.mean(book.id, book.version) == (40.0 + 0.5) / 5  # the run is learned from
