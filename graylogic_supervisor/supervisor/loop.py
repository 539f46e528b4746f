"""From health changes to incidents, and from incidents to recoveries the policy allows.

A component that turns unhealthy, and stays so past its grace window, opens an
incident with a failure and its catalog error id. Before every execution the
recovery policy is asked whether one may start; its verdict is recorded. One
component never has two incidents at once. An incident is decided before it is
written: the policy's gate, the holds and the failure memory's advice read the
store and memory, then the failure, the incident, its context, the verdict and
the phase go to the store in one commit, before the execution's rows and
before any action runs; the memory's decision record is written beside the
run. An incident ends when the component is healthy again: resolved when our
execution did it (and a fresh probe confirms it: a run that resolved on paper
but left the component unhealthy is no success), closed after escalation when
someone else did.

Nothing that goes wrong with one component ends the loop: a store error (a
full disk, another process holding the write lock) or an unexpected exception
while handling a health change or an incident is logged once, with its cause;
the component is taken up again after ``STORE_RETRY_S`` and every other
incident carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graylogic_supervisor.catalog import ErrorCatalog
from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import BridgeComponent
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.memory import FailureContext
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.domain.states import ExecutionStatus, IncidentPhase
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.errors import StoreError, SupervisorError
from graylogic_supervisor.health.monitor import Health, HealthChange, HealthMonitor
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.playbooks.model import DRAFT_ID_PREFIX, Playbook
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.hold import record_as
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.supervisor.advisor import Consultation, MemoryAdvisor
from graylogic_supervisor.supervisor.events import Escalator, SupervisorObserver
from graylogic_supervisor.supervisor.holds import Holds
from graylogic_supervisor.supervisor.policy import Reason, RecoveryPolicy, Signature, Verdict
from graylogic_supervisor.supervisor.rebuild import PolicyJournal

logger = logging.getLogger(__name__)

# How often a waiting incident looks at its component's health.
WAIT_STEP_S = 0.5
# How often an incident held by the termination-rate gate asks again.
TERMINATION_RECHECK_S = 60.0
# When more executions are ready than may run, the most severe failure goes first.
SEVERITY_PRIORITY = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# How often maintenance windows are checked for their end.
MAINTENANCE_CHECK_S = 5.0  # a window ends within this of its end: each check is a store write
STORE_RETRY_S = 10.0  # after a failure could not be recorded, or handling it went wrong
# How long a check after a run may keep answering "could not tell" before its last known
# health (unhealthy) is taken.
BLIND_WAIT_S = 30.0
MAINTENANCE = "maintenance windows"  # the key of the maintenance check's errors


@dataclass
class _Incident:
    id: str
    component: str
    error_id: str
    failure: FailureInfo
    severity: str
    detected_at: datetime
    phase: IncidentPhase = IncidentPhase.DETECTED
    attempts: int = 0
    escalated_for: Reason | None = None
    held_for: Reason | None = None
    last_recorded: Reason | None = None
    context: FailureContext | None = None
    memory_consulted: bool = False
    written: bool = False  # its failure, incident and context rows are in the store


class Supervisor:
    def __init__(
        self,
        monitor: HealthMonitor,
        versions: PlaybookVersions,
        executions: ExecutionRepository,
        incidents: IncidentRepository,
        *,
        runner: Runner,
        catalog: ErrorCatalog,
        policy: RecoveryPolicy,
        controls: ControlRepository,
        observer: SupervisorObserver,
        escalations: Escalator,
        clock: Clock,
        advisor: MemoryAdvisor | None = None,
        journal: PolicyJournal | None = None,
        judged: Callable[[str], None] | None = None,
        arms: TrialArms | None = None,
    ) -> None:
        """``journal`` writes the policy's give-up state as it changes (None: kept in memory);
        ``judged`` is told each execution whose health verdict is written (learning);
        ``arms`` gives a running trial's version its share of incidents (None: no trials)."""
        self._monitor = monitor
        self._versions = versions
        self._executions = executions
        self._incidents = incidents
        self._runner = runner
        self._catalog = catalog
        self._policy = policy
        self._controls = controls
        self._holds = Holds(policy, controls, clock)
        # unhealthy during a maintenance window: expected, waiting for the window's end
        self._in_maintenance: set[str] = set()
        self._observer = observer
        self._escalations = escalations
        self._advisor = advisor
        self._journal = journal
        self._judged = judged
        self._arms = arms
        self._clock = clock
        self._active: set[str] = set()
        self._adopted: list[tuple[str, Coroutine[Any, Any, object]]] = []
        self._accepting = True
        self._idle = asyncio.Event()
        self._idle.set()
        self._termination_alerted = False
        self._symptoms: dict[str, set[str]] = {}  # root -> its dependents' failures it explains
        self._retrying: set[str] = set()  # components waiting to be taken up again
        self._errors: dict[str, str] = {}  # what last went wrong, per component: logged once
        self.transients = 0

    def update_catalog(self, catalog: ErrorCatalog) -> None:
        """A reload's catalog, for failures from now on."""
        self._catalog = catalog

    @property
    def recovering(self) -> frozenset[str]:
        return frozenset(self._active)

    def adopt(self, component: str, run: Coroutine[Any, Any, object]) -> None:
        """A run resumed at start-up: the component is in recovery until it ends."""
        self._adopted.append((component, run))
        self._active.add(component)
        self._idle.clear()

    async def _finish_adopted(
        self, group: asyncio.TaskGroup, component: str, run: Coroutine[Any, Any, object]
    ) -> None:
        try:
            outcome = await run
            if isinstance(outcome, ExecutionOutcome):
                await self._verdict(component, outcome)
        except Exception as exc:  # one run's error must not end the loop
            self._went_wrong(component, "the resumed run", exc)
        finally:
            self._active.discard(component)
            if not self._active:
                self._idle.set()
        if self._accepting and self._monitor.state(component).health is Health.UNHEALTHY:
            self._start(group, component)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_maintenance(group), name="maintenance-windows")
            for component, resumed in self._adopted:
                group.create_task(
                    self._finish_adopted(group, component, resumed), name=f"resumed:{component}"
                )
            self._adopted.clear()
            while True:
                change = await self._monitor.changes.get()
                component = change.current.component
                try:
                    await self._on_change(group, change)
                except Exception as exc:  # one component's trouble must not end the loop
                    self._went_wrong(component, "the health change", exc)
                    self._take_up_later(group, component)

    async def _on_change(self, group: asyncio.TaskGroup, change: HealthChange) -> None:
        component = change.current.component
        unhealthy = change.current.health is Health.UNHEALTHY
        self._policy.health_changed(component, not unhealthy)
        try:
            await self._follow(group, component, unhealthy=unhealthy)
        finally:
            # After the incident has started: it decides before it writes, and the
            # store's write lock keeps this row ahead of the incident's rows.
            await self._save_policy()

    async def _follow(self, group: asyncio.TaskGroup, component: str, *, unhealthy: bool) -> None:
        if not self._accepting:
            return
        if not unhealthy:
            for dependent in self._dependents_to_retry(component):
                self._start(group, dependent, after_root=True)
            if component not in self._active and component not in self._retrying:
                await self._escalations.healthy(component)  # none left from before a restart
            return
        if component in self._active or component in self._retrying:
            logger.debug("%s already has an open incident; not triggered again", component)
            return
        await self._triage(group, component)

    async def _triage(self, group: asyncio.TaskGroup, component: str) -> None:
        """An unhealthy component: a symptom, expected, or an incident of its own."""
        root = self._unhealthy_root(component)
        if root is not None:
            await self._record_failure(component, f"symptom of {root}", symptom_of=root)
            self._symptoms.setdefault(root, set()).add(component)
            logger.info(
                "%s is unhealthy because %s is: recorded as a symptom, no recovery",
                component,
                root,
            )
            return
        window = await self._controls.window_for(component, self._clock.now())
        if window is not None:
            await self._record_failure(
                component, f"expected (maintenance {window['id']})", expected=True
            )
            self._in_maintenance.add(component)
            logger.info("%s failed during its maintenance window: expected", component)
            return
        self._start(group, component)

    def _take_up_later(self, group: asyncio.TaskGroup, component: str) -> None:
        """After an error: look at the component again after a pause, once."""
        if component in self._retrying:
            return
        self._retrying.add(component)
        group.create_task(self._take_up_again(group, component), name=f"retry:{component}")

    async def _take_up_again(self, group: asyncio.TaskGroup, component: str) -> None:
        try:
            while True:
                await self._clock.sleep(STORE_RETRY_S)
                if (
                    not self._accepting
                    or component in self._active
                    or self._monitor.state(component).health is not Health.UNHEALTHY
                ):
                    return
                try:
                    await self._triage(group, component)
                except Exception as exc:
                    self._went_wrong(component, "the failure", exc)
                    continue
                self._went_right(component)
                return
        finally:
            self._retrying.discard(component)

    def _went_wrong(
        self, component: str, what: str, exc: Exception, retry_s: float = STORE_RETRY_S
    ) -> None:
        """Log an error once with its cause; the same error again is only a debug line.

        A store error is said as such (nothing is done that cannot be written down);
        anything else is a bug or exhaustion, logged with its traceback.
        """
        cause = exc.__cause__ or exc.__context__
        text = f"{type(exc).__name__}: {exc}" + (
            f" (cause: {type(cause).__name__}: {cause})" if cause is not None else ""
        )
        stored = isinstance(exc, StoreError)
        if self._errors.get(component) == text:
            logger.debug("%s of %s failed again: %s", what, component, text)
            return
        self._errors[component] = text
        logger.error(
            "cannot record %s of %s, tried again in %g s: %s"
            if stored
            else "%s of %s failed, tried again in %g s: %s",
            what,
            component,
            retry_s,
            text,
            exc_info=None if stored else exc,
            extra={"error_id": self._error_id(component)},
        )

    def _went_right(self, component: str) -> None:
        if self._errors.pop(component, None) is not None:
            logger.info("%s: handled normally again", component)

    def _error_id(self, component: str) -> str | None:
        if component not in self._monitor.components:
            return None
        return self._monitor.state(component).error_id

    async def _save_policy(self) -> None:
        if self._journal is not None:
            await self._journal.save()

    async def _watch_maintenance(self, group: asyncio.TaskGroup) -> None:
        """Close windows that ran out; then what they held is a failure like any other."""
        while True:
            try:
                await self._end_windows(group)
            except Exception as exc:  # the next check tries again
                self._went_wrong(MAINTENANCE, "the end", exc, MAINTENANCE_CHECK_S)
            else:
                self._went_right(MAINTENANCE)
            await self._clock.sleep(MAINTENANCE_CHECK_S)

    async def _end_windows(self, group: asyncio.TaskGroup) -> None:
        now = self._clock.now()
        for window in await self._controls.close_elapsed(now):
            logger.info("maintenance window %s ended", window["id"])
        for component in sorted(self._in_maintenance):
            if await self._controls.window_for(component, now) is not None:
                continue
            self._in_maintenance.discard(component)
            if (
                self._accepting
                and component not in self._active
                and component not in self._retrying
                and self._monitor.state(component).health is Health.UNHEALTHY
                and self._unhealthy_root(component) is None
            ):
                self._start(group, component)

    def _start(self, group: asyncio.TaskGroup, component: str, after_root: bool = False) -> None:
        self._active.add(component)
        self._idle.clear()
        group.create_task(self._handle(group, component, after_root), name=f"incident:{component}")

    # -- dependencies ----------------------------------------------------------

    def _unhealthy_root(self, component: str) -> str | None:
        """The deepest unhealthy component this one depends on, if any."""
        components = self._monitor.components
        found: str | None = None
        stack = list(components[component].depends_on)
        seen: set[str] = set()
        while stack:
            dependency = stack.pop()
            if dependency in seen:
                continue
            seen.add(dependency)
            if self._monitor.state(dependency).health is Health.UNHEALTHY:
                found = dependency
                stack.extend(components[dependency].depends_on)
        return found

    async def _record_failure(
        self, component: str, why: str, symptom_of: str | None = None, expected: bool = False
    ) -> None:
        """A failure that opens no incident: a dependency explains it, or it was expected."""
        state = self._monitor.state(component)
        now = self._clock.now()
        await self._executions.record_failure(
            new_id("fail", now),
            component,
            state.error_id,
            self._severity(component, state.error_id),
            message=f"{why}: {state.detail}",
            detected_at=now,
            symptom_of=symptom_of,
            expected=expected,
        )

    def _dependents_to_retry(self, recovered: str) -> list[str]:
        """Symptoms of a root that is healthy again, still unhealthy and now unexplained."""
        ready = []
        for dependent in sorted(self._symptoms.pop(recovered, set())):
            if (
                dependent not in self._active
                and self._monitor.state(dependent).health is Health.UNHEALTHY
            ):
                root = self._unhealthy_root(dependent)
                if root is None:
                    ready.append(dependent)
                else:
                    self._symptoms.setdefault(root, set()).add(dependent)
        return ready

    def stop_accepting(self) -> None:
        """No new incidents from now on, and waiting ones give up (shutdown has begun)."""
        self._accepting = False

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait for in-flight executions; False if some are still running at the timeout."""
        try:
            await self._clock.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _handle(self, group: asyncio.TaskGroup, component: str, after_root: bool) -> None:
        record_as(component)  # this task's writes are its records (held if it is essential)
        incident: _Incident | None = None
        try:
            try:
                incident = await self._open_incident(component, after_root)
                if incident is not None:
                    await self._recover(incident)
                self._went_right(component)
            except Exception as exc:
                # A store error (a full disk past the store's reserve, another process
                # holding the write lock: no recovery goes unrecorded) or a bug: this
                # incident ends, and the component, still unhealthy, is taken up again
                # below, after a pause, with a new incident. Other incidents go on.
                self._went_wrong(component, "the recovery", exc)
                if incident is not None:
                    await self._abandon(incident, exc)
                await self._pause_after_error(component)
        finally:
            self._active.discard(component)
            if not self._active:
                self._idle.set()
        # A failure that arrived while this incident was closing found it still open
        # and started nothing: it must not be lost.
        if (
            self._accepting
            and self._monitor.state(component).health is Health.UNHEALTHY
            and self._unhealthy_root(component) is None
        ):
            logger.info("%s failed again as its incident closed: a new incident", component)
            self._start(group, component)

    async def _pause_after_error(self, component: str) -> None:
        """STORE_RETRY_S before the component is taken up again, so an error that comes
        back at once does not spin. A new failure ends the pause: the component healthy
        at some point during it (its recovery worked, its bookkeeping did not) and then
        unhealthy again is a crash that must not wait out the error before it."""
        seen_healthy = False
        waited = 0.0
        while self._accepting and waited < STORE_RETRY_S:
            unhealthy = self._monitor.state(component).health is Health.UNHEALTHY
            if seen_healthy and unhealthy:
                return
            seen_healthy = seen_healthy or not unhealthy
            await self._clock.sleep(WAIT_STEP_S)
            waited += WAIT_STEP_S

    async def _abandon(self, incident: _Incident, exc: Exception) -> None:
        """Close an incident its error ended, if the store takes it (best effort)."""
        try:
            await self._write(  # its own rows first, if its error came before they were written
                incident,
                self._incidents.set_phase(
                    incident.id,
                    IncidentPhase.FAILED,
                    f"its handling failed ({type(exc).__name__}: {exc}); taken up again",
                    self._clock.now(),
                    attempts=incident.attempts,
                ),
            )
        except Exception as closing:  # already logged the cause above
            logger.debug("incident %s left open: %s", incident.id, closing)

    async def _verdict(self, component: str, outcome: ExecutionOutcome) -> bool:
        """Whether a run fixed its component: it resolved and a fresh probe finds it
        healthy. Written on the execution before learning may count it, since reaching
        ``done`` alone does not say the fault is gone."""
        resolved = outcome.status == ExecutionStatus.RESOLVED
        healthy = resolved and await self._healthy_after_run(component)
        if resolved:
            await self._executions.set_healthy_after(outcome.execution_id, healthy)
        if self._judged is not None:
            self._judged(outcome.execution_id)
        return healthy

    async def _healthy_after_run(self, component: str) -> bool:
        """A fresh check after a run that resolved. A check that cannot tell (the
        supervisor's own resources) is asked again for up to BLIND_WAIT_S rather than
        taken for a failure, which would run the playbook again on a healthy component."""
        healthy, _ = await self._monitor.probe(component)
        waited = 0.0
        while self._monitor.blind(component) is not None and waited < BLIND_WAIT_S:
            await self._clock.sleep(WAIT_STEP_S)
            waited += WAIT_STEP_S
            healthy, _ = await self._monitor.probe(component)
        return healthy

    async def _open_incident(self, component: str, after_root: bool) -> _Incident | None:
        config = self._monitor.components[component]
        grace = config.grace_s
        if after_root and isinstance(config, BridgeComponent):
            grace = max(grace, config.heartbeat_window_s)  # heartbeats need a window to return
        if grace > 0 and not await self._wait_healthy(component, grace):
            await self._monitor.probe(component)
        state = self._monitor.state(component)
        if state.health is not Health.UNHEALTHY:
            self.transients += 1
            logger.info("%s recovered within its grace window: transient", component)
            return None
        now = self._clock.now()
        failure = FailureInfo(new_id("fail", now), component, state.error_id, state.detail)
        incident = _Incident(
            new_id("inc", now),
            component,
            state.error_id,
            failure,
            severity=self._severity(component, state.error_id),
            detected_at=now,
        )
        if self._policy.failure_detected(component):
            await self._enter_safe_mode(now)
        if self._advisor is not None:
            # what is known now, kept in memory: written with the incident's rows
            incident.context = self._advisor.capture(
                failure.failure_id,
                incident.id,
                component,
                state.error_id,
                severity=incident.severity,
                # the catalog's title keeps failures of one kind alike, whichever
                # symptom (a link drop, a process exit) was noticed first
                message=f"{self._catalog.entry(state.error_id).title}: {state.detail}",
            )
        return incident

    async def _write(self, incident: _Incident, *writes: Awaitable[object]) -> None:
        """``writes`` committed, behind the incident's own rows (failure, incident, its
        context) while those are still unwritten: all in one commit of the store.

        The incident is decided before it is written: the policy's gate and the
        memory's advice read the store and memory only, so a recovery that may run
        writes its failure, incident, verdict and phase in one commit where they were
        several, and the execution's rows follow. Each write here reaches the store's
        writer before it first waits, so they commit in the order given (the failure
        before the incident that names it).
        """
        if not incident.written:
            writes = (*self._opening(incident), *writes)
        results = await asyncio.gather(*writes, return_exceptions=True)
        incident.written = True  # a write that failed ends the incident (raised below)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _opening(self, incident: _Incident) -> list[Awaitable[object]]:
        failure = incident.failure
        rows: list[Awaitable[object]] = [
            self._executions.record_failure(
                failure.failure_id,
                incident.component,
                incident.error_id,
                incident.severity,
                message=failure.message,
                detected_at=incident.detected_at,
            ),
            self._incident_row(incident),
        ]
        if incident.context is not None:
            rows.append(self._keep_context(incident))
        return rows

    async def _incident_row(self, incident: _Incident) -> None:
        announced = self._payload(incident, incident.failure.message)  # as detected
        await self._incidents.open(
            incident.id,
            incident.component,
            incident.error_id,
            incident.failure.failure_id,
            detail=incident.failure.message,
            now=incident.detected_at,
        )
        self._observer.incident_changed(incident.component, announced)

    async def _keep_context(self, incident: _Incident) -> None:
        assert self._advisor is not None and incident.context is not None
        try:
            await self._advisor.keep(incident.context)
        except SupervisorError as exc:  # recovery must not wait on the memory
            logger.error(
                "failure memory could not capture %s: %s", incident.failure.failure_id, exc
            )
            incident.context = None

    async def _recover(self, incident: _Incident) -> None:
        component = incident.component
        while self._accepting:
            if self._monitor.state(component).health is not Health.UNHEALTHY:
                await self._recovered_without_us(incident)
                return
            playbook = await self._select_playbook(
                component, incident.error_id, incident.failure.failure_id
            )
            if playbook is None:
                await self._escalate(
                    incident,
                    None,
                    f"no active playbook handles {incident.error_id} on {component}",
                )
                await self._wait_healthy(component, None)
                continue
            hold = await self._holds.check(
                component, incident.error_id, incident.failure.message, playbook.limits.max_attempts
            )
            if hold is not None:
                await self._record(incident, hold.verdict)
                detail = f"automatic recovery held: {hold.verdict.detail}"
                if hold.escalate:
                    await self._escalate(incident, hold.verdict.reason, detail)
                elif (
                    incident.phase is not IncidentPhase.RECOVERING
                    or incident.held_for != hold.verdict.reason
                ):
                    await self._set_phase(incident, IncidentPhase.RECOVERING, detail)
                incident.held_for = hold.verdict.reason
                await self._wait_healthy(component, hold.wait_s)
                continue
            incident.held_for = None
            verdict = self._policy.evaluate(component, playbook.limits.max_attempts)
            if not verdict.allowed:
                await self._save_policy()
                await self._record(incident, verdict)
                await self._escalate(
                    incident, verdict.reason, f"automatic recovery held: {verdict.detail}"
                )
                await self._wait_healthy(component, self._wait_for(component, verdict))
                continue
            incident.attempts += 1
            consultation = await self._consult_memory(incident, playbook)
            learned = consultation.learned if consultation is not None else None
            chosen = learned.playbook if learned is not None else playbook
            kind = "playbook" if learned is None else "learned_fix"
            # the policy's state, the verdict, the phase (and the incident's own rows, the
            # first time): one commit, before the run
            incident.last_recorded = None
            await self._write(
                incident,
                self._save_policy(),
                self._evaluation_row(incident, verdict),
                self._phase_row(
                    incident,
                    IncidentPhase.EXECUTING,
                    f"running {chosen.id} {chosen.version} ({kind})",
                ),
            )
            priority = SEVERITY_PRIORITY.get(self._severity(component, incident.error_id), 2)
            acting = asyncio.Event()
            async with asyncio.TaskGroup() as beside:
                if consultation is not None:  # its audit entry, written beside the run
                    beside.create_task(
                        self._note_decision(consultation, after=acting),
                        name=f"memory-decision:{component}",
                    )
                try:
                    outcome = await self._runner.run(
                        chosen,
                        incident.failure,
                        incident.id,
                        kind,
                        priority=priority,
                        acting=acting.set,
                    )
                finally:
                    acting.set()  # a run that ended before any action: the record now
            self._after_execution(outcome)
            succeeded = await self._verdict(component, outcome)
            denial = self._policy.record_outcome(
                component, succeeded, self._signature(incident, outcome)
            )
            await self._save_policy()
            if self._advisor is not None and incident.context is not None:
                await self._advisor.executed(
                    incident.context, chosen, outcome, kind, learned=learned, succeeded=succeeded
                )
            if learned is not None and not succeeded and denial is None:
                await self._set_phase(
                    incident,
                    IncidentPhase.RECOVERING,
                    f"the learned fix did not work ({outcome.detail})",
                )
                continue  # straight on to the playbook
            if succeeded:
                await self._set_phase(
                    incident,
                    IncidentPhase.RESOLVED,
                    f"resolved by {outcome.resolved_by} ({outcome.execution_id})",
                )
                await self._escalations.resolve(incident.id)
                return
            if outcome.status in (ExecutionStatus.ESCALATED, ExecutionStatus.FAILED):
                await self._escalate(
                    incident,
                    None,
                    f"{playbook.id} {outcome.status} for {component}: {outcome.detail}",
                )
            else:
                await self._set_phase(
                    incident,
                    IncidentPhase.RECOVERING,
                    f"{outcome.detail}, but {component} is unhealthy",
                )
            # A run that resolved but left (or found) the component failed again is tried
            # again at once: the attempt budget caps that loop. A run that failed waits.
            pause = (
                0.0
                if outcome.status == ExecutionStatus.RESOLVED
                else playbook.limits.cooldown_seconds
            )
            if denial is not None:
                await self._record(incident, denial)
                await self._escalate(
                    incident, denial.reason, f"automatic recovery held: {denial.detail}"
                )
                pause = self._wait_for(component, denial)
            await self._wait_healthy(component, pause)

    # -- decisions and their records ------------------------------------------

    async def _consult_memory(self, incident: _Incident, playbook: Playbook) -> Consultation | None:
        """Once per incident, before the first execution: a fix that worked before.

        The decision is made here, before anything runs; its audit entry is written
        beside the run it chose (``_note_decision``)."""
        if self._advisor is None or incident.context is None or incident.memory_consulted:
            return None
        incident.memory_consulted = True
        try:
            return await self._advisor.consult(incident.context, playbook)
        except SupervisorError as exc:
            logger.error("failure memory could not advise on %s: %s", incident.id, exc)
            return None

    async def _note_decision(self, consultation: Consultation, *, after: asyncio.Event) -> None:
        """The memory's decision in the audit log, once the run's first action is under way:
        its commit would otherwise come before the run's first row, on the recovery's path."""
        assert self._advisor is not None
        await after.wait()
        try:
            await self._advisor.record(consultation)
        except SupervisorError as exc:  # the run it chose goes on
            logger.error(
                "failure memory could not record its decision on %s: %s",
                consultation.context.failure_id,
                exc,
            )

    def _wait_for(self, component: str, verdict: Verdict) -> float:
        """How long a denied incident waits before asking the policy again."""
        if verdict.reason is Reason.TERMINATION_RATE:
            return TERMINATION_RECHECK_S
        return max(self._policy.reopens_in(component), WAIT_STEP_S)

    def _signature(self, incident: _Incident, outcome: ExecutionOutcome) -> Signature | None:
        step = outcome.failed_step
        if step is None:
            return None
        return Signature(step.action, step.outcome, step.step_id, incident.error_id)

    def _after_execution(self, outcome: ExecutionOutcome) -> None:
        failed = outcome.failed_step
        self._policy.execution_finished(outcome.status, None if failed is None else failed.outcome)
        due = self._policy.termination_alert_due()
        if due and not self._termination_alerted:
            reading = self._policy.termination()
            self._observer.alert(
                "high",
                f"termination rate {reading.rate:.0%} ({reading.terminated} of"
                f" {reading.finished} executions in the last hour): automation stops at 10%",
                {"termination_rate": f"{reading.rate:.3f}"},
            )
        self._termination_alerted = due

    async def _record(self, incident: _Incident, verdict: Verdict) -> None:
        """Record a verdict; a hold repeated while it lasts is recorded once."""
        if not verdict.allowed and verdict.reason == incident.last_recorded:
            return
        incident.last_recorded = None if verdict.allowed else verdict.reason
        await self._write(incident, self._evaluation_row(incident, verdict))

    async def _evaluation_row(self, incident: _Incident, verdict: Verdict) -> None:
        await self._incidents.record_evaluation(
            incident.id, incident.component, verdict, self._clock.now()
        )
        self._observer.viability(incident.component, verdict)
        log = logger.info if verdict.allowed else logger.warning
        log(
            "viability of %s for %s: %s (%s) %s",
            incident.id,
            incident.component,
            "allowed" if verdict.allowed else "denied",
            verdict.reason,
            verdict.detail,
            extra={"error_id": incident.error_id},
        )

    async def _escalate(self, incident: _Incident, reason: Reason | None, detail: str) -> None:
        """Call a human, once per incident and reason."""
        if (
            reason is not None
            and incident.phase is IncidentPhase.ESCALATED
            and incident.escalated_for == reason
        ):
            return
        incident.escalated_for = reason
        await self._set_phase(incident, IncidentPhase.ESCALATED, detail)
        await self._escalations.escalate(
            incident.id,
            incident.component,
            incident.error_id,
            self._severity(incident.component, incident.error_id),
            message=detail,
        )

    async def _enter_safe_mode(self, now: datetime) -> None:
        settings = self._policy.settings
        reason = (
            f"{self._policy.failing_components()} components failed"
            f" within {settings.safe_mode_window_s:g} s"
        )
        if await self._controls.set_safe_mode(True, reason, "supervisor", now):
            logger.error("entering safe mode: %s", reason)
            self._observer.alert(
                "critical",
                f"safe mode: {reason}; automatic recovery stopped except for"
                f" {', '.join(settings.essentials) or 'nothing'}; leave it by hand"
                " (graylogic-supervisor safe-mode leave)",
                {"safe_mode": "entered"},
            )

    def _severity(self, component: str, error_id: str) -> str:
        """The catalog's severity, raised to critical when other components depend on this one."""
        severity = self._catalog.entry(error_id).severity
        if any(component in c.depends_on for c in self._monitor.components.values()):
            return "critical"
        return severity

    async def _recovered_without_us(self, incident: _Incident) -> None:
        detail = "healthy again without an execution of ours"
        if incident.phase is IncidentPhase.ESCALATED:
            await self._incidents.close_escalated(incident.id, detail, self._clock.now())
            self._publish(incident, detail, closed=True)
        else:
            await self._set_phase(incident, IncidentPhase.RESOLVED, detail)
        await self._escalations.resolve(incident.id)
        logger.info("%s: %s", incident.component, detail)

    async def _set_phase(self, incident: _Incident, phase: IncidentPhase, detail: str) -> None:
        await self._write(incident, self._phase_row(incident, phase, detail))

    async def _phase_row(self, incident: _Incident, phase: IncidentPhase, detail: str) -> None:
        incident.phase = phase
        await self._incidents.set_phase(
            incident.id, phase, detail, self._clock.now(), attempts=incident.attempts
        )
        self._publish(
            incident, detail, closed=phase in (IncidentPhase.RESOLVED, IncidentPhase.FAILED)
        )

    def _publish(self, incident: _Incident, detail: str, closed: bool = False) -> None:
        self._observer.incident_changed(incident.component, self._payload(incident, detail, closed))

    def _payload(self, incident: _Incident, detail: str, closed: bool = False) -> dict[str, Any]:
        return {
            "incident_id": incident.id,
            "component": incident.component,
            "error_id": incident.error_id,
            "phase": incident.phase,
            "attempts": incident.attempts,
            "breaker": str(self._policy.breaker(incident.component)),
            "detail": detail,
            "open": not closed,
            "updated_at": isoformat(self._clock.now()),
        }

    async def _wait_healthy(self, component: str, seconds: float | None) -> bool:
        """Wait until the component is healthy, shutdown begins, or ``seconds`` pass."""
        waited = 0.0
        while self._accepting and (seconds is None or waited < seconds):
            if self._monitor.state(component).health is not Health.UNHEALTHY:
                return True
            step = WAIT_STEP_S if seconds is None else min(WAIT_STEP_S, seconds - waited)
            await self._clock.sleep(step)
            waited += step
        return self._monitor.state(component).health is not Health.UNHEALTHY

    async def _select_playbook(
        self, component: str, error_id: str, failure_id: str
    ) -> Playbook | None:
        """The active playbook for the failure, or its running trial's version for the
        trial's share of failures (never in safe mode). The catalog's choice first, then
        one a person wrote, a learning's draft only when nothing else covers it."""
        candidates = sorted(
            (
                p
                for p in await self._versions.active_playbooks()
                if p.trigger.component == component and error_id in p.trigger.error_ids
            ),
            key=lambda p: p.id.startswith(DRAFT_ID_PREFIX),  # stable: drafts last
        )
        preferred = self._catalog.entry(error_id).playbook
        chosen = next((p for p in candidates if p.id == preferred), None)
        if chosen is None and candidates:
            chosen = candidates[0]
        if chosen is None or self._arms is None:
            return chosen
        safe_mode = (await self._controls.safe_mode()).active
        return await self._arms.choose(chosen, failure_id, safe_mode)
