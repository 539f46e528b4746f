"""Home Assistant discovery: current keys, an entity per component, and templates that
render every payload published on their topics, the last will included."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jinja2 import Environment, StrictUndefined

from graylogic_supervisor.health.monitor import ComponentHealth, Health, health_payload
from graylogic_supervisor.mqtt.discovery import discovery_messages
from graylogic_supervisor.mqtt.topics import Topics, offline_payload

TOPICS = Topics("graylogic")


def render(template: str, payload: dict[str, object]) -> str:
    """As Home Assistant does, with any missing key an error instead of an empty string."""
    env = Environment(undefined=StrictUndefined, autoescape=False)
    value_json = json.loads(json.dumps(payload))
    return env.from_string(template).render(value_json=value_json)


def configs() -> dict[str, dict[str, object]]:
    messages = discovery_messages("homeassistant", TOPICS, "Villa Rosa", ["mqtt", "knx-bridge"])
    return {topic: config for topic, config in messages}


def test_entities_use_default_entity_id_and_never_object_id() -> None:
    for topic, config in configs().items():
        assert "object_id" not in config
        kind = topic.split("/")[1]
        assert config["default_entity_id"] == f"{kind}.{config['unique_id']}"
        assert topic.startswith("homeassistant/") and topic.endswith("/config")


def test_each_component_has_its_health_entity() -> None:
    by_state = {config["state_topic"]: config for config in configs().values()}
    for component in ("mqtt", "knx-bridge"):
        config = by_state[TOPICS.component_health(component)]
        assert config["name"] == f"{component} health"
        since = datetime(2026, 12, 6, tzinfo=UTC)
        down = health_payload(
            ComponentHealth(component, Health.UNHEALTHY, "refused", since, "ERR-INFRA-MQTT-001")
        )
        assert render(str(config["value_template"]), down) == "unhealthy"
    assert "homeassistant/sensor/graylogic_supervisor_Villa_Rosa/component_knx-bridge/config" in (
        configs()
    )


def test_the_health_sensor_reads_the_last_will_without_a_template_error() -> None:
    [health] = [
        config
        for config in configs().values()
        if config["state_topic"] == TOPICS.supervisor_health
        and str(config["unique_id"]).endswith("_health")
    ]
    template = str(health["value_template"])
    online = {"status": "online", "site": "Villa Rosa", "health": "healthy"}
    assert render(template, online) == "healthy"
    assert render(template, offline_payload("Villa Rosa")) == "offline"
    availability = str(health["availability_template"])
    assert render(availability, offline_payload("Villa Rosa")) == health["payload_not_available"]
