"""A protocol bridge, as far as the supervisor can see one: a process that publishes heartbeats.

Run as a child process by tests: ``python bridge_sim.py HOST PORT TOPIC``. It
reconnects on its own when the broker comes back, as a real bridge does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiomqtt


async def main(host: str, port: int, topic: str) -> None:
    while True:
        try:
            async with aiomqtt.Client(host, port, timeout=2) as client:
                while True:
                    payload = {"status": "online", "ts": time.time()}
                    await client.publish(topic, json.dumps(payload), qos=0)
                    await asyncio.sleep(0.2)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
