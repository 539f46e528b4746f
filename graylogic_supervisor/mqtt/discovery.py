"""Home Assistant MQTT discovery for the supervisor's own sensors.

The site's dashboards then show the supervisor's health, its termination rate,
safe mode, its open incidents and each supervised component's health without
anyone writing YAML. Availability follows the supervisor's retained status,
whose last will says ``offline``; the health template reads that payload too
(it has no ``health``), so the last will shows as ``offline``, not as a
template error. Entity ids are set with ``default_entity_id``: Home Assistant
deprecated ``object_id`` in 2025.10, to stop reading it in 2026.4.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from graylogic_supervisor import __version__
from graylogic_supervisor.mqtt.topics import Topics


def _slug(text: str) -> str:
    """Home Assistant wants [a-zA-Z0-9_-] in discovery topics and ids."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def node_id(site: str) -> str:
    return "graylogic_supervisor_" + _slug(site)


def discovery_messages(
    prefix: str, topics: Topics, site: str, components: Sequence[str] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for each sensor; publish retained."""
    node = node_id(site)
    device = {
        "identifiers": [node],
        "name": f"Gray Logic supervisor ({site})",
        "manufacturer": "Gray Logic",
        "model": "graylogic-supervisor",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": topics.supervisor_health,
        "availability_template": "{{ value_json.status }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    sensors: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "health",
            {
                "name": "Health",
                "state_topic": topics.supervisor_health,
                # the last will carries a status and no health
                "value_template": (
                    "{{ value_json.health if value_json.health is defined else value_json.status }}"
                ),
                "icon": "mdi:heart-pulse",
            },
        ),
        (
            "sensor",
            "termination_rate",
            {
                "name": "Termination rate",
                "state_topic": topics.state,
                "value_template": "{{ value_json.termination_rate_percent }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:alert-octagon",
            },
        ),
        (
            "binary_sensor",
            "safe_mode",
            {
                "name": "Safe mode",
                "state_topic": topics.state,
                "value_template": "{{ 'ON' if value_json.safe_mode else 'OFF' }}",
                "device_class": "problem",
            },
        ),
        (
            "sensor",
            "open_incidents",
            {
                "name": "Open incidents",
                "state_topic": topics.state,
                "value_template": "{{ value_json.open_incidents }}",
                "state_class": "measurement",
                "icon": "mdi:lifebuoy",
            },
        ),
        (
            "sensor",
            "pending_recommendations",
            {
                "name": "Pending recommendations",
                "state_topic": topics.state,
                "value_template": "{{ value_json.pending_recommendations }}",
                "state_class": "measurement",
                "icon": "mdi:lightbulb-on-outline",
            },
        ),
        (
            "sensor",
            "pending_recommendations_high",
            {
                "name": "High-priority recommendations",
                "state_topic": topics.state,
                # a state published before the count existed has no such key
                "value_template": "{{ value_json.pending_recommendations_high | default(0) }}",
                "state_class": "measurement",
                "icon": "mdi:lightbulb-alert-outline",
            },
        ),
    ]
    sensors += [
        (
            "sensor",
            f"component_{_slug(component)}",
            {
                "name": f"{component} health",
                "state_topic": topics.component_health(component),
                "value_template": "{{ value_json.status }}",
                "json_attributes_topic": topics.component_health(component),
                "icon": "mdi:stethoscope",
            },
        )
        for component in components
    ]
    return [
        (
            f"{prefix}/{kind}/{node}/{object_id}/config",
            {
                **config,
                **availability,
                "unique_id": f"{node}_{object_id}",
                "default_entity_id": f"{kind}.{node}_{object_id}",
                "device": device,
            },
        )
        for kind, object_id, config in sensors
    ]
