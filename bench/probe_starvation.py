"""A healthy broker probed while the supervisor's own thread pool is full of Argon2 hashes.

Issue 13's attack, in one process: bursts of password hashes run through
``asyncio.to_thread`` (as the login page does) fill the default executor
while the health monitor probes a healthy Mosquitto on a free loopback port.
Every UNHEALTHY reported then is false: the broker was never touched. Last, the
broker is SIGKILLed during a burst and the time until the monitor says
UNHEALTHY is measured (the killed broker must still be seen).

It measures whichever package is imported, so the same script gives the
before and the after::

    PYTHONPATH=/work/main    .venv/bin/python bench/probe_starvation.py   # before
    PYTHONPATH=$PWD          .venv/bin/python bench/probe_starvation.py   # after

``--hashes-in own-pool`` runs the hashes in a pool of their own instead (the
other half of the fix: the login's hashes off the shared pool).

Bounded: ``--rounds`` bursts of ``--burst`` hashes, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

import graylogic_supervisor
from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import ComponentConfig, MqttComponent
from graylogic_supervisor.health.monitor import Health, HealthMonitor
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker
from graylogic_supervisor.services.manager import ServiceManager

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PROBE_TIMEOUT_S = 2.0  # the shipped default
CONFIRM_TIMEOUT_S = 5.0

Prober = Callable[[str, ComponentConfig], Awaitable[tuple[bool, str]]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.01)
    process.kill()
    raise SystemExit("mosquitto did not start")


def daemon_prober(target: ProbeTarget, services: ServiceManager) -> tuple[str, Prober]:
    """The daemon's mqtt prober in the imported package: BrokerCheck, or the old closure."""
    try:
        from graylogic_supervisor.health.broker_check import BrokerCheck
    except ImportError:

        async def probe_mqtt(component: str, _: ComponentConfig) -> tuple[bool, str]:
            try:
                result = await probe_broker(target, timeout_s=PROBE_TIMEOUT_S)
            except ProbeError as exc:
                return False, str(exc)
            return True, f"MQTT round trip {result.round_trip_s * 1000:.1f} ms"

        return "probe_broker (aiomqtt) alone", probe_mqtt
    return "BrokerCheck", BrokerCheck(target, services, PROBE_TIMEOUT_S, CONFIRM_TIMEOUT_S)


async def run(rounds: int, burst: int, probes_per_round: int, hashes_in: str) -> dict[str, Any]:
    hasher = PasswordHasher()  # argon2-cffi's defaults, as store/users.py uses
    stored = hasher.hash("the right password")

    def wrong_login() -> None:
        with contextlib.suppress(VerifyMismatchError):  # the expected answer
            hasher.verify(stored, "a wrong guess")

    loop = asyncio.get_running_loop()
    own_pool = ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4))

    def hash_burst() -> list[asyncio.Future[None]]:
        if hashes_in == "own-pool":
            return [loop.run_in_executor(own_pool, wrong_login) for _ in range(burst)]
        return [asyncio.ensure_future(asyncio.to_thread(wrong_login)) for _ in range(burst)]

    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_broker(Path(tmp))
        try:
            services = ServiceManager(SystemClock())
            target = ProbeTarget("127.0.0.1", port, None, None, "bench")
            name, prober = daemon_prober(target, services)
            component = MqttComponent(kind="mqtt", error_id="ERR-INFRA-MQTT-001")
            monitor = HealthMonitor({"mqtt": component}, services, {"mqtt": prober}, SystemClock())
            await monitor.probe("mqtt")
            probes = false_unhealthy = could_not_tell = 0
            probe_s: list[float] = []
            for _ in range(rounds):
                hashes = hash_burst()
                for _ in range(probes_per_round):
                    began = time.perf_counter()
                    _, detail = await monitor.probe("mqtt")
                    probe_s.append(time.perf_counter() - began)
                    probes += 1
                    if "could not tell" in detail:
                        could_not_tell += 1
                    if monitor.state("mqtt").health is Health.UNHEALTHY:
                        false_unhealthy += 1
                        monitor.report("mqtt", True, "reset by the bench")  # count each one
                await asyncio.gather(*hashes)

            hashes = hash_burst()
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed = time.perf_counter()
            while monitor.state("mqtt").health is not Health.UNHEALTHY:
                if time.perf_counter() - killed > 60:
                    break  # bounded: reported as null
                await monitor.probe("mqtt")
            detected = monitor.state("mqtt").health is Health.UNHEALTHY
            detected_s = time.perf_counter() - killed if detected else None
            await asyncio.gather(*hashes)
        finally:
            own_pool.shutdown(wait=True)
            if process.poll() is None:
                process.kill()
                process.wait()
    probe_s.sort()
    return {
        "package": str(Path(graylogic_supervisor.__file__).parent),
        "prober": name,
        "rounds": rounds,
        "hashes_per_burst": burst,
        "hashes_in": hashes_in,
        "probes_during_bursts": probes,
        "false_unhealthy": false_unhealthy,
        "could_not_tell": could_not_tell,
        "probe_median_ms": round(probe_s[len(probe_s) // 2] * 1000, 1),
        "probe_max_ms": round(probe_s[-1] * 1000, 1),
        "killed_broker_unhealthy_after_ms": (
            round(detected_s * 1000, 1) if detected_s is not None else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=150)
    parser.add_argument("--probes", type=int, default=3, help="probes during each burst")
    parser.add_argument(
        "--hashes-in",
        choices=["default-pool", "own-pool"],
        default="default-pool",
        help="where the hashes run: asyncio's default executor (the attack) or a pool of their own",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.burst, args.probes, args.hashes_in))
    print(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
