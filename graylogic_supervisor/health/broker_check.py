"""The broker's prober: an MQTT round trip, and a failure believed only on independent evidence.

Restarting a healthy broker disconnects every MQTT client of the building, so
one failed round trip (or a dropped link, which wakes this probe) is not
enough. Before the broker is called unhealthy, three other witnesses are
asked, cheapest first:

1. its service (when we have one): not running is certain, unhealthy at once;
2. its port: a TCP connect of our own; refused or silent agrees with the probe;
3. a second MQTT round trip on its own fresh connection, with a longer timeout.

Unhealthy only when the evidence agrees (a hung broker: process alive, port
accepting, no MQTT answer twice); healthy when the second round trip works;
*could not tell* when a witness could not be asked because our own side failed
(no file descriptor, a loop too busy to give the broker its time).
"""

from __future__ import annotations

import asyncio
import logging

from graylogic_supervisor.config import ComponentConfig
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.impairment import (
    CouldNotTell,
    LagWatch,
    could_not_tell_from,
    os_reason,
)
from graylogic_supervisor.mqtt.probe import ProbeError, ProbeTarget, probe_broker, resolve
from graylogic_supervisor.services.manager import ServiceManager

logger = logging.getLogger(__name__)


class BrokerCheck:
    """The ``mqtt`` kind's prober (``HealthMonitor`` calls it as a ``Prober``)."""

    def __init__(
        self,
        target: ProbeTarget,
        services: ServiceManager,
        probe_timeout_s: float,
        confirm_timeout_s: float,
    ) -> None:
        """``confirm_timeout_s``: the second round trip's budget (never below the first's)."""
        self._target = target
        self._services = services
        self._probe_timeout_s = probe_timeout_s
        self._confirm_timeout_s = max(confirm_timeout_s, probe_timeout_s)
        self.confirmations = 0  # failed probes that were checked against the evidence
        self.refuted = 0  # of those, how many the second round trip showed to be healthy

    async def __call__(self, component: str, config: ComponentConfig) -> tuple[bool, str]:
        try:
            result = await probe_broker(self._target, self._probe_timeout_s)
        except ProbeError as exc:
            return await self.confirm(component, config.service, str(exc))
        return True, f"MQTT round trip {result.round_trip_s * 1000:.1f} ms"

    async def confirm(self, component: str, service: str | None, failure: str) -> tuple[bool, str]:
        """Weigh ``failure`` against the independent evidence; see the module's docstring."""
        self.confirmations += 1
        if service is not None:
            try:
                status = await self._services.status(service)
            except SupervisorError as exc:
                raise could_not_tell_from(exc, f"read the status of {service}") or CouldNotTell(
                    "service-status", f"{failure}; the status of {service} could not be read: {exc}"
                ) from exc
            if not status.running:
                return False, f"{failure}; service {service} {status.detail}"
        target = self._target
        where = f"{target.host}:{target.port}"
        refusal = await port_refusal(target.host, target.port, self._confirm_timeout_s)
        if refusal is not None:
            return False, f"{failure}; port {where} {refusal}"
        try:
            result = await probe_broker(target, self._confirm_timeout_s)
        except ProbeError as exc:
            running = f"service {service} running, " if service is not None else ""
            return False, f"{failure}; {running}port {where} accepts, and a second probe: {exc}"
        self.refuted += 1
        detail = (
            f"MQTT round trip {result.round_trip_s * 1000:.1f} ms on a second connection"
            f" (the first probe: {failure})"
        )
        logger.info("%s: a failed probe was not confirmed: %s", component, detail)
        return True, detail


async def port_refusal(host: str, port: int, timeout_s: float) -> str | None:
    """Why ``host:port`` does not accept a TCP connection, or None when it does.

    Unlike ``services.manager.port_accepts``, an error on our side (no file
    descriptor) or a timeout spent on our own loop raises ``CouldNotTell``
    instead of reading as a closed port.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    writer: asyncio.StreamWriter | None = None
    async with LagWatch() as lag:
        try:
            async with asyncio.timeout(timeout_s):
                address = await resolve(host, port)
                _, writer = await asyncio.open_connection(address, port)
        except TimeoutError as exc:
            waited = loop.time() - began
            if lag.own_timeout(waited):
                raise CouldNotTell(
                    "loop-lag",
                    f"could not check port {host}:{port}: the supervisor's event loop was"
                    f" busy for {lag.stalled_s:.1f} s of {waited:.1f} s",
                ) from exc
            return f"did not accept a connection in {timeout_s:g} s"
        except OSError as exc:
            own = could_not_tell_from(exc, f"check port {host}:{port}")
            if own is not None:
                raise own from exc
            return f"refuses connections ({os_reason(exc)})"
        finally:
            if writer is not None:
                writer.close()
    return None
