"""A new high-priority recommendation is alerted on the alert topic (a real broker),
counted by priority in /metrics' exposition, and has a Home Assistant sensor."""

from __future__ import annotations

import asyncio
import json
import random

import aiomqtt

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.mqtt.discovery import discovery_messages
from graylogic_supervisor.mqtt.link import MqttLink
from graylogic_supervisor.mqtt.topics import Topics
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.supervisor.status import StatusPublisher
from tests.conftest import Broker
from tests.learning.simulated import run, simulation
from tests.mqtt.test_discovery import render
from tests.mqtt.test_link import settings


async def test_a_new_high_priority_recommendation_is_alerted_and_counted(
    db: Database, broker: Broker
) -> None:
    root = "reasons-alert"
    link = MqttLink(settings(broker.port, root), SystemClock(), random.Random(7))
    publisher = StatusPublisher(link, Topics(root), "site", SystemClock())
    sim = await simulation(db, "mqtt-mixed-causes", alert=publisher.alert)
    await run(sim, 150)
    task = asyncio.create_task(link.run())
    alerts: list[dict[str, object]] = []
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(Topics(root).alerts)
            while not link.connected:
                await asyncio.sleep(0.01)
            report = await sim.learning.analyze("test")
            high = {
                rec.id
                for rec in await sim.learning.store.listing("pending")
                if rec.priority == "high"
            }
            async with asyncio.timeout(10):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    alerts.append(json.loads(message.payload))
                    if {a.get("recommendation") for a in alerts} >= high:
                        break
            # every alert has left (QoS 1, acknowledged) before the link is stopped
            assert await link.flush(5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    announced = [a for a in alerts if "recommendation" in a]
    assert high and {a["recommendation"] for a in announced} == high  # each once, no other
    assert len(announced) == len(high)
    alert = announced[0]
    rec = await sim.learning.store.get(str(alert["recommendation"]))
    assert rec is not None and rec.priority == "high" and rec.id in report["recommendations"]
    assert alert["priority"] == "high" and alert["analysis"] == report["id"]
    assert f"new high-priority recommendation {rec.id}" in str(alert["message"])
    # the recommendation knows the analysis that made it
    assert await sim.learning.analyses.of_recommendation(rec.id) == report["id"]

    counts = await sim.learning.pending_by_priority()  # what the state loop hands /metrics
    assert counts["high"] >= 1 and set(counts) == {"high", "medium", "low"}
    metrics = Metrics("test")
    metrics.set_pending_recommendations(counts)
    text = metrics.exposition().decode()
    high = f'graylogic_supervisor_recommendations_pending{{priority="high"}} {counts["high"]}.0'
    assert high in text
    assert 'graylogic_supervisor_recommendations_pending{priority="low"}' in text


def test_home_assistant_has_a_high_priority_recommendations_sensor() -> None:
    topics = Topics("graylogic")
    configs = dict(discovery_messages("homeassistant", topics, "Villa Rosa"))
    config = configs[
        "homeassistant/sensor/graylogic_supervisor_Villa_Rosa/pending_recommendations_high/config"
    ]
    assert config["state_topic"] == topics.state
    template = str(config["value_template"])
    assert render(template, {"pending_recommendations_high": 2}) == "2"
    assert render(template, {"pending_recommendations": 3}) == "0"  # a state from before
