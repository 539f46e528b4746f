"""Home Assistant MQTT discovery for the supervisor's own sensors.

The site's dashboards then show the supervisor's health, its termination rate,
safe mode and its open incidents without anyone writing YAML. Availability
follows the supervisor's retained status, whose last will says ``offline``.
"""

from __future__ import annotations

import re
from typing import Any

from graylogic_supervisor import __version__
from graylogic_supervisor.mqtt.topics import Topics


def node_id(site: str) -> str:
    """Home Assistant wants [a-zA-Z0-9_-] in discovery topics."""
    return "graylogic_supervisor_" + re.sub(r"[^a-zA-Z0-9_-]", "_", site)


def discovery_messages(prefix: str, topics: Topics, site: str) -> list[tuple[str, dict[str, Any]]]:
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
                "value_template": "{{ value_json.health }}",
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
    ]
    return [
        (
            f"{prefix}/{kind}/{node}/{object_id}/config",
            {
                **config,
                **availability,
                "unique_id": f"{node}_{object_id}",
                "object_id": f"{node}_{object_id}",
                "device": device,
            },
        )
        for kind, object_id, config in sensors
    ]
