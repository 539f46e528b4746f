"""What the supervisor tells the outside world as it decides: one protocol, many listeners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from graylogic_supervisor.supervisor.policy import Verdict


class SupervisorObserver(Protocol):
    """Must not block: MQTT publishing queues, metrics count."""

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None: ...

    def incident_changed(self, component: str, incident: dict[str, Any]) -> None: ...

    def viability(self, component: str, verdict: Verdict) -> None: ...


class Escalator(Protocol):
    """Calls humans about an incident, level after level, until one acknowledges."""

    async def escalate(
        self, incident_id: str, component: str, error_id: str, severity: str, *, message: str
    ) -> str: ...

    async def resolve(self, incident_id: str) -> object: ...

    async def healthy(self, component: str) -> object: ...


class FanOut:
    """Hands each event to every listener, in order."""

    def __init__(self, listeners: Sequence[SupervisorObserver]) -> None:
        self._listeners = list(listeners)

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        for listener in self._listeners:
            listener.alert(severity, message, context)

    def incident_changed(self, component: str, incident: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener.incident_changed(component, incident)

    def viability(self, component: str, verdict: Verdict) -> None:
        for listener in self._listeners:
            listener.viability(component, verdict)
