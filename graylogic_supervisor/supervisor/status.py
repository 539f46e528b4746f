"""What the supervisor tells the site over MQTT: health, executions, incidents, state.

The topics are named in ``mqtt/topics.py``; this module decides what goes on them.
"""

from __future__ import annotations

from typing import Any

from graylogic_supervisor import __version__
from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.domain.states import ExecutionStatus
from graylogic_supervisor.health.monitor import ComponentHealth, Health, health_payload
from graylogic_supervisor.mqtt.link import MqttLink
from graylogic_supervisor.mqtt.topics import Topics, offline_payload
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.audit_head import ChainHead
from graylogic_supervisor.store.executions import StepEnd
from graylogic_supervisor.supervisor.policy import Verdict


class StatusPublisher:
    """Health, progress and alerts onto the link's queue; never blocks."""

    def __init__(
        self,
        link: MqttLink,
        topics: Topics,
        site: str,
        clock: Clock,
        *,
        durations: DurationHistory | None = None,
    ) -> None:
        self._link = link
        self._topics = topics
        self._site = site
        self._clock = clock
        self._started = clock.now()
        self._durations = durations or DurationHistory()
        self._began: dict[str, float] = {}  # execution id -> clock.monotonic() at start
        self._running: dict[str, dict[str, Any]] = {}  # execution id -> progress
        self._overall = Health.UNKNOWN

    def announce_online(self, overall: Health) -> None:
        self._overall = overall
        payload = self._supervisor_payload("online")
        self._link.publish_on_connect(self._topics.supervisor_health, payload)
        self._link.publish(self._topics.supervisor_health, payload, retain=True)

    def announce_stopping(self) -> None:
        self._link.publish(self._topics.supervisor_health, offline_payload(self._site), retain=True)

    def _supervisor_payload(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "site": self._site,
            "version": __version__,
            "since": isoformat(self._started),
            "health": self._overall.value,
            "updated_at": isoformat(self._clock.now()),
        }

    def component_changed(self, state: ComponentHealth, overall: Health) -> None:
        self._link.publish(
            self._topics.component_health(state.component), health_payload(state), retain=True
        )
        if overall != self._overall:
            self._overall = overall
            self._link.publish(
                self._topics.supervisor_health, self._supervisor_payload("online"), retain=True
            )

    # ExecutionObserver
    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        progress = {
            "execution_id": execution_id,
            "playbook": playbook.id,
            "version": playbook.version,
            "error_id": failure.error_id,
            "failure_id": failure.failure_id,
            "status": "running",
            "component": failure.component,
            "step": None,
            "started_at": isoformat(self._clock.now()),
            "steps_done": 0,
            "steps_total": len(playbook.steps),
        }
        self._running[execution_id] = progress
        self._began[execution_id] = self._clock.monotonic()
        self._link.publish(self._topics.execution(failure.component), progress, retain=True)

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        self._update(execution_id, step={"id": step.id, "name": step.name, "attempt": attempt})

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        done = self._running.get(execution_id, {}).get("steps_done", 0)
        self._update(
            execution_id,
            step={"id": step.id, "name": step.name, "outcome": end.outcome, "result": end.result},
            steps_done=done + 1,
        )

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        progress = self._running.pop(outcome.execution_id, {"execution_id": outcome.execution_id})
        self._began.pop(outcome.execution_id, None)
        if outcome.status == ExecutionStatus.RESOLVED:
            self._durations.observe(playbook.id, playbook.version, outcome.duration_seconds)
        progress.update(
            status=outcome.status,
            resolved_by=outcome.resolved_by,
            duration_seconds=round(outcome.duration_seconds, 4),
            detail=outcome.detail,
            completed_at=isoformat(self._clock.now()),
        )
        self._link.publish(self._topics.execution(failure.component), progress, retain=True)
        self._link.publish(self._topics.progress(outcome.execution_id), progress)

    def _update(self, execution_id: str, **changes: Any) -> None:
        progress = self._running.get(execution_id)
        if progress is None:
            return
        progress.update(changes)
        elapsed = self._clock.monotonic() - self._began.get(execution_id, self._clock.monotonic())
        mean = self._durations.mean(progress["playbook"], progress["version"])
        progress["elapsed_s"] = round(elapsed, 3)
        # from the mean of this version's resolved runs; unknown before the first one
        progress["remaining_s"] = None if mean is None else round(max(mean - elapsed, 0.0), 3)
        component = progress.get("component")
        if component:
            self._link.publish(self._topics.execution(component), progress, retain=True)
        self._link.publish(self._topics.progress(execution_id), progress)

    def state_changed(self, state: dict[str, Any]) -> None:
        self._link.publish(self._topics.state, state, retain=True)

    def audit_head(self, head: ChainHead) -> None:
        """A copy of the audit chain's head off the box: `audit verify --expect-head`
        holds the store against it."""
        self._link.publish(
            self._topics.audit_head,
            {**head.as_json(), "site": self._site, "at": isoformat(self._clock.now())},
            retain=True,
        )

    # SupervisorObserver
    def incident_changed(self, component: str, incident: dict[str, Any]) -> None:
        self._link.publish(self._topics.incident(component), incident, retain=True)

    def viability(self, component: str, verdict: Verdict) -> None:
        """Verdicts go to the store and the metrics; the incident topic carries their effect."""

    # AlertSink
    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        self._link.publish(
            self._topics.alerts,
            {
                "severity": severity,
                "message": message,
                "site": self._site,
                "at": isoformat(self._clock.now()),
                **context,
            },
            qos=1,
        )


class DurationHistory:
    """Mean duration of each playbook version's resolved runs: the remaining-time estimate.

    Seeded from the store at start-up, then kept up to date as runs finish, so
    publishing progress never waits on the database.
    """

    def __init__(self, seed: dict[tuple[str, str], tuple[float, int]] | None = None) -> None:
        self._sums: dict[tuple[str, str], tuple[float, int]] = dict(seed or {})

    def observe(self, playbook_id: str, version: str, duration_s: float) -> None:
        total, count = self._sums.get((playbook_id, version), (0.0, 0))
        self._sums[(playbook_id, version)] = (total + duration_s, count + 1)

    def mean(self, playbook_id: str, version: str) -> float | None:
        total, count = self._sums.get((playbook_id, version), (0.0, 0))
        return total / count if count else None
