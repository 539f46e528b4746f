"""Metrics from events: what the runner and the supervisor report, counted.

One listener on both event streams (``ExecutionObserver`` and
``SupervisorObserver``), so ``Metrics`` stays a plain sink that knows nothing
of playbooks, steps or verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.domain.states import StepOutcome
from graylogic_supervisor.engine.execution import ExecutionObserver
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.playbooks.model import Playbook, Step
from graylogic_supervisor.store.executions import StepEnd
from graylogic_supervisor.supervisor.policy import Verdict

# A successful start or restart of the broker's own service is a broker restart.
BROKER_RESTART_ACTIONS = frozenset({"start_service", "restart_service"})


class MetricsRecorder:
    def __init__(self, metrics: Metrics, broker_service: str | None) -> None:
        """``broker_service`` is None when the broker is external (never ours to restart)."""
        self._metrics = metrics
        self._broker_service = broker_service

    # ExecutionObserver
    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        """Counted when it finishes, with its outcome."""

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        """Counted when it finishes, with its outcome."""

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        self._metrics.step_finished(step.action, end.outcome)
        if (
            end.outcome == StepOutcome.SUCCESS
            and step.action in BROKER_RESTART_ACTIONS
            and self._broker_service is not None
            and step.target == self._broker_service
        ):
            self._metrics.broker_restarted()

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        self._metrics.execution_finished(playbook.id, outcome.status)

    # SupervisorObserver
    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        """Alerts are not counted; escalations are in the store."""

    def incident_changed(self, component: str, incident: dict[str, Any]) -> None:
        """Incidents are counted through their viability evaluations."""

    def viability(self, component: str, verdict: Verdict) -> None:
        self._metrics.viability("allowed" if verdict.allowed else "denied", verdict.reason.value)
        if verdict.allowed:  # an allowed verdict is an execution about to start
            self._metrics.recovery_attempt(component)


class ExecutionFanOut:
    """Hands each runner event to every listener, in order (the runner takes one observer)."""

    def __init__(self, listeners: Sequence[ExecutionObserver]) -> None:
        self._listeners = list(listeners)

    def execution_started(
        self, execution_id: str, playbook: Playbook, failure: FailureInfo
    ) -> None:
        for listener in self._listeners:
            listener.execution_started(execution_id, playbook, failure)

    def step_started(self, execution_id: str, playbook: Playbook, step: Step, attempt: int) -> None:
        for listener in self._listeners:
            listener.step_started(execution_id, playbook, step, attempt)

    def step_finished(
        self, execution_id: str, playbook: Playbook, step: Step, end: StepEnd
    ) -> None:
        for listener in self._listeners:
            listener.step_finished(execution_id, playbook, step, end)

    def execution_finished(
        self, playbook: Playbook, failure: FailureInfo, outcome: ExecutionOutcome
    ) -> None:
        for listener in self._listeners:
            listener.execution_finished(playbook, failure, outcome)
