"""The composition root: builds every object, runs every loop, shuts down in order.

``_run`` reads as the order of start-up: prepare the state directory, open the
store, the broker link, health (services, heartbeats, the monitor), the engine
(actions, playbooks, the runner), the supervisor (policy, audit, escalations, the
failure memory), start supervising (resumed runs, our services, online), the web
app, then the loops in one TaskGroup until a signal, and the shutdown. Each part
is one function returning a frozen record of what it built, so a reader sees what
each later part takes from the earlier ones. The module is long because it is the
one place where everything is wired; no function in it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from graylogic_supervisor import __version__, loops
from graylogic_supervisor.broker import BrokerPlan, plan_broker, write_mosquitto_conf
from graylogic_supervisor.catalog import (
    ErrorCatalog,
    catalog_playbook_warnings,
    check_catalog_covers,
    load_catalog,
)
from graylogic_supervisor.clock import Clock, SystemClock
from graylogic_supervisor.config import (
    BridgeComponent,
    MqttComponent,
    ServiceConfig,
    SupervisorConfig,
)
from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.builtins import bounded_specs, builtin_registry
from graylogic_supervisor.engine.builtins.compose import RunPlaybook
from graylogic_supervisor.engine.control import ExecutionControls, PriorityGate
from graylogic_supervisor.engine.plugins import SiteContext, add_plugins
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.fdbudget import FdBudget
from graylogic_supervisor.health.broker_check import BrokerCheck
from graylogic_supervisor.health.heartbeats import HeartbeatTracker
from graylogic_supervisor.health.monitor import (
    ComponentHealth,
    Health,
    HealthChange,
    HealthMonitor,
    Prober,
    service_running,
)
from graylogic_supervisor.health.probes import (
    cpu_prober,
    database_prober,
    disk_prober,
    memory_prober,
)
from graylogic_supervisor.learning.draft_steps import draft_site
from graylogic_supervisor.learning.feed import FinishedExecutions
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.memory.capture import ContextCapture, resource_state
from graylogic_supervisor.memory.events import EventRing, ExecutionEvents
from graylogic_supervisor.memory.fixes import configured_targets
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.mqtt.discovery import discovery_messages
from graylogic_supervisor.mqtt.link import LinkSettings, MqttLink, encode
from graylogic_supervisor.mqtt.probe import ProbeTarget
from graylogic_supervisor.mqtt.socket_race import quiet_closed_socket_races
from graylogic_supervisor.mqtt.topics import Topics, offline_payload
from graylogic_supervisor.passwords import PasswordPool
from graylogic_supervisor.playbooks.loader import load_directory
from graylogic_supervisor.reload import Reloader
from graylogic_supervisor.sdnotify import Notifier
from graylogic_supervisor.services.factory import build_backend, readiness_of
from graylogic_supervisor.services.manager import ServiceManager
from graylogic_supervisor.services.process import stop_orphans
from graylogic_supervisor.services.systemd import SubprocessRunner
from graylogic_supervisor.shutdown import ShutdownDeadline, bounded, kill_children
from graylogic_supervisor.statelock import StateLock
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.audit_watch import ChainWatch
from graylogic_supervisor.store.commands import CommandRepository
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.hold import HoldLimits, WriteHold
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.recovery_state import RecoveryStateRepository
from graylogic_supervisor.store.reserve import DiskReserve
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.tokens import TokenRepository
from graylogic_supervisor.store.trials import TrialRepository
from graylogic_supervisor.store.users import UserRepository, ensure_first_admin
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.store.views import PageStore, RecordViews
from graylogic_supervisor.supervised import LoopFactory, LoopSupervisor, RestartPolicy
from graylogic_supervisor.supervisor.advisor import MemoryAdvisor
from graylogic_supervisor.supervisor.escalation import EscalationChain
from graylogic_supervisor.supervisor.events import FanOut
from graylogic_supervisor.supervisor.loop import Supervisor
from graylogic_supervisor.supervisor.policy import RecoveryPolicy
from graylogic_supervisor.supervisor.rebuild import PolicyJournal, rebuild_policy
from graylogic_supervisor.supervisor.recorder import ExecutionFanOut, MetricsRecorder
from graylogic_supervisor.supervisor.resumption import Resumable, resumable_executions
from graylogic_supervisor.supervisor.status import DurationHistory, StatusPublisher
from graylogic_supervisor.supervisor.store_space import StoreSpace
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.server import ListenError, limits_for, serve

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from graylogic_supervisor.web.render import AdminDeps

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# The shutdown's tail, after the executions' grace (shutdown_grace_s): each phase's bound.
LINK_FLUSH_S = 1.0
LOOPS_STOP_S = 2.0  # a loop that ignores its cancellation this long is left behind
CHILDREN_STOP_S = 3.0  # then whatever still runs below us is killed
STORE_CLOSE_S = 2.0
# The last resort fires this long after the grace (the unit's TimeoutStopSec is grace + 10).
SHUTDOWN_TAIL_S = 9.0


@dataclass(frozen=True)
class DaemonOptions:
    clock: Clock
    notifier: Notifier
    deadline: ShutdownDeadline | None = None  # ends the process if stopping overruns


async def run_daemon(
    config: SupervisorConfig, config_path: Path, options: DaemonOptions | None = None
) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads ``config_path``.

    Raises :class:`~graylogic_supervisor.statelock.StateDirInUse`, having touched
    nothing, when another daemon runs on the same state directory.
    """
    options = options or DaemonOptions(
        SystemClock(),
        Notifier.from_environment(),
        ShutdownDeadline(config.shutdown_grace_s + SHUTDOWN_TAIL_S),
    )
    deadline = options.deadline
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_requested() -> None:
        if deadline is not None:
            deadline.arm()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    quiet_closed_socket_races(loop)
    try:
        # Before anything touches the state directory: a second daemon must not take the
        # first one's broker for an orphan.
        with StateLock(config.state_dir, options.clock.now()):
            await _run(config, config_path, options, stop=stop, reload_requested=reload_requested)
    finally:
        if deadline is not None:
            deadline.arm()  # what is left of the exit is bounded too
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _run(
    config: SupervisorConfig,
    config_path: Path,
    options: DaemonOptions,
    *,
    stop: asyncio.Event,
    reload_requested: asyncio.Event,
) -> None:
    """Build every part in order, run the loops until ``stop``, then shut down in reverse."""
    clock = options.clock
    catalog, plan = await _prepare_state_dir(config)
    async with AsyncExitStack() as stack:
        metrics = Metrics(__version__)
        store = await _open_store(config, clock, stack)
        link = await _build_link(config, plan, clock, store)
        metrics.watch_held_writes(lambda: store.db.held_rows)
        link.link.add_drop_listener(metrics.mqtt_message_dropped)
        health = _build_health(config, plan, clock, store, link=link, metrics=metrics, stack=stack)
        engine = await _build_engine(
            config, catalog, clock, store, link=link, health=health, metrics=metrics
        )
        decide = await _build_supervisor(
            config,
            config_path,
            clock,
            store,
            catalog=catalog,
            link=link,
            health=health,
            engine=engine,
            stack=stack,
        )
        await _start_supervising(config, store, health, link=link, engine=engine, decide=decide)
        web = await _build_web(
            config,
            clock,
            store,
            health=health,
            engine=engine,
            decide=decide,
            metrics=metrics,
            stack=stack,
        )
        await _run_loops(
            config,
            options,
            stop,
            reload_requested,
            parts=_Parts(
                store=store,
                link=link,
                health=health,
                engine=engine,
                decide=decide,
                web=web,
                metrics=metrics,
            ),
            stack=stack,
        )
    logger.info("stopped")


async def _prepare_state_dir(config: SupervisorConfig) -> tuple[ErrorCatalog, BrokerPlan]:
    """The catalog checked, the state directory made, orphans stopped, the broker planned."""
    catalog = load_catalog(config.catalog)
    check_catalog_covers(config, catalog)
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    for orphan in await stop_orphans(state_dir / "run"):
        logger.warning("stopped %s, left running by a supervisor that was killed", orphan)
    plan = plan_broker(config.broker, state_dir)
    write_mosquitto_conf(plan, state_dir)
    _log_plan(plan)
    return catalog, plan


@dataclass(frozen=True)
class _Store:
    """The open store, its repositories, and the runs a restart carries on."""

    db: Database
    reserve: DiskReserve
    executions: ExecutionRepository
    versions: PlaybookVersions
    incidents: IncidentRepository
    resumable: list[Resumable]


async def _open_store(config: SupervisorConfig, clock: Clock, stack: AsyncExitStack) -> _Store:
    """Open the store (closed last), and close what the last run left open."""
    reserve = DiskReserve(
        config.database_path.parent / "store.reserve", int(config.store.reserve_mb * MIB)
    )
    hold = WriteHold(HoldLimits(config.store.hold_max_rows, config.store.hold_max_kb * 1024))
    db = Database(config.database_path, reserve=reserve, hold=hold)
    await db.open()
    stack.push_async_callback(bounded, "closing the store", db.close, STORE_CLOSE_S)
    executions = ExecutionRepository(db)
    versions = PlaybookVersions(db)
    incidents = IncidentRepository(db)
    resumable = await resumable_executions(executions, RecordViews(db), versions, clock)
    interrupted = await executions.mark_interrupted(
        clock.now(), keep=[r.execution_id for r in resumable]
    )
    await incidents.close_all_open("the supervisor restarted", clock.now())
    for execution_id in interrupted:
        logger.warning(
            "execution %s was running when the supervisor stopped: interrupted", execution_id
        )
    return _Store(
        db=db,
        reserve=reserve,
        executions=executions,
        versions=versions,
        incidents=incidents,
        resumable=resumable,
    )


@dataclass(frozen=True)
class _Link:
    """The broker link and what speaks on it."""

    topics: Topics
    link: MqttLink
    publisher: StatusPublisher
    probe_target: ProbeTarget


async def _build_link(
    config: SupervisorConfig, plan: BrokerPlan, clock: Clock, store: _Store
) -> _Link:
    topics = Topics(config.mqtt.topic_root)
    link = MqttLink(_link_settings(config, plan, topics), clock, random.Random())
    publisher = StatusPublisher(
        link,
        topics,
        config.site.name,
        clock,
        durations=DurationHistory(await store.executions.resolved_durations()),
    )
    probe_target = ProbeTarget(
        plan.host,
        plan.port,
        config.mqtt.username,
        config.mqtt.password.get_secret_value() if config.mqtt.password else None,
        topics.root,
    )
    return _Link(topics, link, publisher, probe_target)


@dataclass(frozen=True)
class _Health:
    """Our services and everything that judges health."""

    services: ServiceManager
    all_services: list[ServiceConfig]
    heartbeats: HeartbeatTracker
    monitor: HealthMonitor
    events: EventRing
    store_space: StoreSpace
    broker_service: str | None  # the broker's service, when we supervise it


def _build_health(
    config: SupervisorConfig,
    plan: BrokerPlan,
    clock: Clock,
    store: _Store,
    *,
    link: _Link,
    metrics: Metrics,
    stack: AsyncExitStack,
) -> _Health:
    services = ServiceManager(clock)
    stack.push_async_callback(_stop_children, services)
    bridges = {
        name: component
        for name, component in config.components.items()
        if isinstance(component, BridgeComponent)
    }
    heartbeats = HeartbeatTracker(
        bridges,
        link.topics.root,
        clock,
        lambda component, healthy, detail: monitor.report(component, healthy, detail),
        recheck=lambda component: monitor.probe(component),
        flooded_at=lambda: link.link.flooded_at,
    )
    link.link.subscribe(heartbeats.topic_filter, heartbeats.handle, lane=heartbeats.lane, qos=0)
    services.add_replace_listener(heartbeats.service_replaced)
    heartbeats.add_drop_listener(metrics.heartbeat_dropped)
    events = EventRing(clock, config.memory.recent_events)

    def on_health_change(state: ComponentHealth) -> None:
        link.publisher.component_changed(state, monitor.overall())
        events.add("health", state.component, f"{state.health.value}: {state.detail}")
        broker_back = state.health is Health.HEALTHY and isinstance(
            config.components[state.component], MqttComponent
        )
        if broker_back and not link.link.connected:
            link.link.reconnect_now()  # do not wait out the link's backoff or breaker

    monitor = HealthMonitor(
        config.components,
        services,
        _probers(config, clock, store, link=link, services=services, heartbeats=heartbeats),
        clock,
        publisher=on_health_change,
        on_could_not_tell=metrics.probe_could_not_tell,
    )
    all_services = ([plan.service] if plan.service else []) + list(config.services)
    _add_services(all_services, services, plan.host, monitor=monitor, state_dir=config.state_dir)
    link.link.add_listener(monitor.link_changed)
    store_space = _store_space(config, clock, store, link=link, monitor=monitor)
    return _Health(
        services=services,
        all_services=all_services,
        heartbeats=heartbeats,
        monitor=monitor,
        events=events,
        store_space=store_space,
        broker_service=plan.service.name if plan.service else None,
    )


def _probers(
    config: SupervisorConfig,
    clock: Clock,
    store: _Store,
    *,
    link: _Link,
    services: ServiceManager,
    heartbeats: HeartbeatTracker,
) -> dict[str, Prober]:
    """Each component kind's periodic check."""
    return {
        "mqtt": BrokerCheck(
            link.probe_target,
            services,
            config.mqtt.probe_timeout_s,
            config.mqtt.confirm_timeout_s,
        ),
        "service": service_running,
        "bridge": heartbeats.prober,
        "database": database_prober(store.db, clock),
        "memory": memory_prober(),
        "disk": disk_prober(config.state_dir),
        "cpu": cpu_prober(clock),
    }


def _add_services(
    all_services: list[ServiceConfig],
    services: ServiceManager,
    host: str,
    *,
    monitor: HealthMonitor,
    state_dir: Path,
) -> None:
    """Each service's backend, its exits told to the monitor (none is started here)."""
    systemctl = SubprocessRunner()
    for service_config in all_services:
        backend = build_backend(
            service_config,
            state_dir=state_dir,
            on_exit=monitor.service_exited,
            systemctl=systemctl,
        )
        services.add(backend, readiness_of(service_config, host))


def _store_space(
    config: SupervisorConfig, clock: Clock, store: _Store, *, link: _Link, monitor: HealthMonitor
) -> StoreSpace:
    """The watch on the store's disk: its reserve taken, told when a write finds it full."""
    store_space = StoreSpace(
        store.reserve,
        link.publisher,
        monitor.probe,
        [n for n, c in config.components.items() if c.kind in ("disk", "database")],
        clock=clock,
        check_interval_s=config.store.space_check_s,
        flush_held=store.db.flush_held,
    )
    store_space.take_reserve()
    store.db.on_full = store_space.on_full
    return store_space


@dataclass(frozen=True)
class _Engine:
    """The actions, the playbooks seeded from their directory, and the runner."""

    registry: ActionRegistry
    runner: Runner
    controls_of_runs: ExecutionControls
    recorder: MetricsRecorder
    finished: FinishedExecutions


async def _build_engine(
    config: SupervisorConfig,
    catalog: ErrorCatalog,
    clock: Clock,
    store: _Store,
    *,
    link: _Link,
    health: _Health,
    metrics: Metrics,
) -> _Engine:
    composer = RunPlaybook(store.versions)
    registry = builtin_registry(
        health.services,
        health.monitor,
        link.probe_target,
        link.publisher,
        db=store.db,
        state_dir=config.state_dir,
        composer=composer,
        actions=config.actions,
        webhooks=config.escalation.webhooks,
        site=config.site.name,
    )
    add_plugins(registry, SiteContext(config.site.name, config.state_dir), config.actions.plugins)
    specs = bounded_specs(registry.specs(), config.actions, config.escalation.webhooks)
    loaded, errors = load_directory(config.playbooks.directory, specs)
    for error in errors:
        logger.error("playbook skipped: %s", error)
    for item in loaded:
        await store.versions.seed(item.playbook, item.source, str(item.file), clock.now())
    logger.info("%d playbooks loaded from %s", len(loaded), config.playbooks.directory)
    for warning in catalog_playbook_warnings(catalog, {item.playbook.id for item in loaded}):
        logger.warning("%s", warning)

    controls_of_runs = ExecutionControls(clock)
    recorder = MetricsRecorder(metrics, health.broker_service)
    runner = Runner(
        registry,
        store.executions,
        clock,
        observer=ExecutionFanOut([link.publisher, recorder, ExecutionEvents(health.events)]),
        resources=lambda: resource_state(config.state_dir),
        controls=controls_of_runs,
        gate=PriorityGate(config.engine.max_concurrent_executions),
    )
    composer.bind(runner)
    return _Engine(registry, runner, controls_of_runs, recorder, FinishedExecutions())


@dataclass(frozen=True)
class _Decide:
    """What turns health changes into recoveries, and what they are recorded and told by."""

    policy: RecoveryPolicy
    audit: AuditLog
    controls: ControlRepository
    observer: FanOut
    audit_watch: ChainWatch
    escalation_store: EscalationRepository
    escalations: EscalationChain
    memory: FailureMemory
    supervisor: Supervisor
    reloader: Reloader


async def _build_supervisor(
    config: SupervisorConfig,
    config_path: Path,
    clock: Clock,
    store: _Store,
    *,
    catalog: ErrorCatalog,
    link: _Link,
    health: _Health,
    engine: _Engine,
    stack: AsyncExitStack,
) -> _Decide:
    db = store.db
    policy = RecoveryPolicy(config.policy, clock)
    db.holds_for = policy.is_essential  # their records are held, not refused
    recovery_state = RecoveryStateRepository(db)
    await rebuild_policy(policy, recovery_state, store.incidents, store.executions, clock=clock)
    # the audit chain's hashing and head file, in their own thread (not asyncio's pool)
    audit_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
    stack.callback(audit_worker.shutdown, wait=False)
    audit = AuditLog(db, audit_worker)
    controls = ControlRepository(db, audit)
    observer = FanOut([link.publisher, engine.recorder])
    audit_watch = ChainWatch(audit, clock, alert=observer.alert)
    await audit_watch.create_if_empty()
    link.link.add_listener(lambda connected, _: audit_watch.republish() if connected else None)
    escalation_store = EscalationRepository(db, audit)
    await escalation_store.close_unacknowledged(clock.now())
    escalations = await stack.enter_async_context(
        EscalationChain(config.escalation, escalation_store, observer, clock, site=config.site.name)
    )
    memory = FailureMemory(MemoryRepository(db), config.memory, clock)
    advisor = await _memory_advisor(
        config, memory, audit=audit, store=store, health=health, engine=engine, clock=clock
    )
    supervisor = Supervisor(
        health.monitor,
        store.versions,
        store.executions,
        store.incidents,
        runner=engine.runner,
        catalog=catalog,
        policy=policy,
        controls=controls,
        observer=observer,
        escalations=escalations,
        clock=clock,
        advisor=advisor,
        journal=PolicyJournal(policy, recovery_state, clock),
        arms=TrialArms(TrialRepository(db), store.versions),
        judged=engine.finished.judged,  # learning counts a run once its health verdict is written
    )
    reloader = Reloader(
        config_path,
        config,
        engine.registry.specs(),
        health.monitor,
        policy=policy,
        supervisor=supervisor,
        versions=store.versions,
        audit=audit,
        clock=clock,
    )
    return _Decide(
        policy=policy,
        audit=audit,
        controls=controls,
        observer=observer,
        audit_watch=audit_watch,
        escalation_store=escalation_store,
        escalations=escalations,
        memory=memory,
        supervisor=supervisor,
        reloader=reloader,
    )


async def _memory_advisor(
    config: SupervisorConfig,
    memory: FailureMemory,
    *,
    audit: AuditLog,
    store: _Store,
    health: _Health,
    engine: _Engine,
    clock: Clock,
) -> MemoryAdvisor | None:
    """The failure memory loaded and its advisor, when the memory is enabled."""
    if not config.memory.enabled:
        return None
    remembered = await memory.load()
    logger.info("failure memory: %d records", remembered)
    return MemoryAdvisor(
        memory,
        ContextCapture(health.monitor, health.events, config.state_dir, clock),
        audit,
        store.versions,
        actions=engine.registry.specs(),
        clock=clock,
    )


async def _start_supervising(
    config: SupervisorConfig,
    store: _Store,
    health: _Health,
    *,
    link: _Link,
    engine: _Engine,
    decide: _Decide,
) -> None:
    """Carry on the interrupted runs, start our services, say we are online."""
    for resumed in store.resumable:
        decide.supervisor.adopt(
            resumed.failure.component,
            engine.runner.resume(
                resumed.execution_id,
                resumed.playbook,
                resumed.failure,
                resumed.step_id,
                elapsed_s=resumed.elapsed_s,
                rows=resumed.rows,
            ),
        )
    for service_config in health.all_services:
        if service_config.backend == "process":
            try:
                await health.services.start(service_config.name)
            except ServiceError as exc:
                logger.error("%s", exc)  # the health probe will see it and recover it
    link.publisher.announce_online(health.monitor.overall())
    if config.mqtt.discovery_prefix:
        for topic, payload in discovery_messages(
            config.mqtt.discovery_prefix, link.topics, config.site.name, list(config.components)
        ):
            link.link.publish_on_connect(topic, payload)


@dataclass(frozen=True)
class _Web:
    """The learning service and the web app that shows it."""

    learning: LearningService
    app: Starlette
    commands: CommandRepository


async def _build_web(
    config: SupervisorConfig,
    clock: Clock,
    store: _Store,
    *,
    health: _Health,
    engine: _Engine,
    decide: _Decide,
    metrics: Metrics,
    stack: AsyncExitStack,
) -> _Web:
    db, audit = store.db, decide.audit
    learning = LearningService(
        db,
        store.versions,
        audit,
        engine.registry.specs(),
        settings=config.learning,
        clock=clock,
        alert=decide.observer.alert,
        site=draft_site(config),
    )
    passwords = await stack.enter_async_context(
        PasswordPool(config.admin.password_workers, config.admin.password_queue)
    )
    users = UserRepository(db, passwords)  # logins hash in this pool only
    await ensure_first_admin(users, audit, clock, config.state_dir)
    sessions = SessionRepository(db)
    await sessions.purge(clock.now())
    supervisor = decide.supervisor
    metrics_token = (
        config.admin.metrics_token.get_secret_value() if config.admin.metrics_token else None
    )

    def admin() -> AdminDeps:
        """The admin page's collaborators: its modules load on its first request."""
        from graylogic_supervisor.web.render import AdminDeps

        return AdminDeps(
            PageStore.of(db),
            AuthDeps(users, sessions, audit, clock, metrics=metrics, tokens=TokenRepository(db)),
            decide.controls,
            decide.escalation_store,
            store.executions,
            CommandRepository(db),
            store.versions,
            learning,
            decide.policy.termination,
            metrics_token,
            decide.audit_watch,
            fix_targets=configured_targets(
                [config.broker.service, *(s.name for s in config.services)], config.components
            ),
            memory=config.memory,
        )

    app = create_app(
        WebDeps(
            health=health.monitor,
            recovering=lambda: supervisor.recovering,
            metrics=metrics,
            site=config.site.name,
            version=__version__,
        ),
        admin,
    )
    return _Web(learning, app, CommandRepository(db))


@dataclass(frozen=True)
class _Parts:
    store: _Store
    link: _Link
    health: _Health
    engine: _Engine
    decide: _Decide
    web: _Web
    metrics: Metrics


async def _run_loops(
    config: SupervisorConfig,
    options: DaemonOptions,
    stop: asyncio.Event,
    reload_requested: asyncio.Event,
    *,
    parts: _Parts,
    stack: AsyncExitStack,
) -> None:
    """Every loop in one TaskGroup, the web server first; on ``stop``, the shutdown."""
    clock, notifier = options.clock, options.notifier
    scheduler = loops.nightly_scheduler(
        config,
        parts.decide.memory,
        parts.web.learning,
        clock,
        upkeep=loops.StoreUpkeep(parts.store.db, parts.decide.audit),
    )
    scheduler.start()  # inside the running loop, as APScheduler 3 requires
    stack.callback(scheduler.shutdown, wait=False)
    keeper = LoopSupervisor(
        clock, random.Random(), parts.metrics, RestartPolicy(cancel_wait_s=LOOPS_STOP_S)
    )
    web_ready = asyncio.Event()
    fds = FdBudget.at_startup(config.admin.fd_reserve)
    async with asyncio.TaskGroup() as group:
        web = group.create_task(
            keeper.run(
                "web",
                partial(
                    serve,
                    parts.web.app,
                    config.admin.bind,
                    config.admin.port,
                    ready=web_ready,
                    limits=limits_for(config.admin, fds),
                    budget=fds,
                    metrics=parts.metrics,
                ),
                # the admin port taken at start-up ends it; later the server is restarted
                fatal=lambda error: isinstance(error, ListenError) and not web_ready.is_set(),
            ),
            name="web",
        )
        # Listening first: an address in use ends start-up here, before anything else
        # runs (and before READY=1).
        await web_ready.wait()
        tasks = [web] + [
            # each loop of the group restarted when it fails (supervised.py)
            group.create_task(keeper.run(name, loop, on_restart=on_restart), name=name)
            for name, loop, on_restart in _loops(clock, reload_requested, parts=parts)
        ]
        interval = notifier.watchdog_interval_s()
        if interval is not None:
            # On the event loop, never a thread: a wedged loop stops the pings, and
            # systemd notices. A crashed loop elsewhere does not: it is restarted here.
            watchdog = partial(loops.systemd_watchdog, notifier, clock, interval)
            tasks.append(group.create_task(keeper.run("watchdog", watchdog), name="watchdog"))
        notifier.ready()
        notifier.status(f"supervising {', '.join(config.components) or 'nothing'}")
        logger.info("graylogic-supervisor %s running for site %s", __version__, config.site.name)
        await stop.wait()
        await _shut_down(config, notifier, parts.decide.supervisor, link=parts.link)
        for task in tasks:
            task.cancel()  # each ends within LOOPS_STOP_S, or is left behind


def _loops(
    clock: Clock, reload_requested: asyncio.Event, *, parts: _Parts
) -> list[tuple[str, LoopFactory, Callable[[], None] | None]]:
    """The daemon's loops after the web server: (name, loop, what to do on a restart)."""
    link, health, engine, decide = parts.link, parts.health, parts.engine, parts.decide
    monitor, learning = health.monitor, parts.web.learning

    def resync_supervisor() -> None:
        """A restarted supervisor loop hears again of what is still unhealthy."""
        for state in monitor.snapshot().values():
            if state.health is Health.UNHEALTHY:
                monitor.changes.put_nowait(HealthChange(Health.UNKNOWN, state))

    publish_state = partial(
        loops.publish_state,
        link.publisher,
        parts.metrics,
        decide.policy,
        decide.supervisor,
        controls=decide.controls,
        clock=clock,
        learning=learning,
    )
    apply_commands = partial(
        loops.apply_commands,
        parts.web.commands,
        engine.controls_of_runs,
        decide.controls,
        decide.audit,
        clock=clock,
    )
    return [
        ("mqtt-link", link.link.run, None),
        ("heartbeat-rechecks", health.heartbeats.run, None),
        ("health-probes", monitor.run, None),
        ("supervisor", decide.supervisor.run, resync_supervisor),
        ("escalation-chain", decide.escalations.run, None),
        ("store-space", health.store_space.run, None),
        ("state-publisher", publish_state, None),
        (
            "reload",
            partial(loops.reload_on_signal, decide.reloader, reload_requested, health.events),
            None,
        ),
        (
            "user-actions",
            partial(loops.watch_user_actions, decide.audit, health.events, clock),
            None,
        ),
        (
            "learning",
            partial(loops.learn_from_executions, engine.finished.queue, learning, clock),
            None,
        ),
        (
            "execution-watchdog",
            partial(loops.watch_stuck_executions, engine.controls_of_runs, link.publisher, clock),
            None,
        ),
        ("audit-watch", partial(decide.audit_watch.run, link.publisher.audit_head), None),
        ("operator-commands", apply_commands, None),
    ]


async def _shut_down(
    config: SupervisorConfig, notifier: Notifier, supervisor: Supervisor, *, link: _Link
) -> None:
    """Stop taking failures, give the runs their grace, say so, flush the link."""
    logger.info("stopping")
    notifier.stopping()
    supervisor.stop_accepting()
    if not await supervisor.wait_idle(config.shutdown_grace_s):
        logger.warning(
            "executions still running after %.0f s; they are marked interrupted",
            config.shutdown_grace_s,
        )
    link.publisher.announce_stopping()
    await bounded(
        "flushing the MQTT link",
        partial(link.link.flush, timeout_s=LINK_FLUSH_S),
        LINK_FLUSH_S + 0.5,
    )


async def _stop_children(services: ServiceManager) -> None:
    """Stop our services in order; kill whatever still runs below us after the bound."""
    if not await bounded("stopping the services", services.close, CHILDREN_STOP_S):
        killed = kill_children()
        if killed:
            logger.warning("killed child processes %s, still running at shutdown", killed)


def _link_settings(config: SupervisorConfig, plan: BrokerPlan, topics: Topics) -> LinkSettings:
    mqtt = config.mqtt
    return LinkSettings(
        host=plan.host,
        port=plan.port,
        client_id=mqtt.client_id,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        keepalive_s=mqtt.keepalive_s,
        will_topic=topics.supervisor_health,
        will_payload=encode(offline_payload(config.site.name)),
        initial_backoff_s=mqtt.reconnect.initial_s,
        backoff_multiplier=mqtt.reconnect.multiplier,
        max_backoff_s=mqtt.reconnect.max_s,
        backoff_jitter=mqtt.reconnect.jitter,
    )


def _log_plan(plan: BrokerPlan) -> None:
    if plan.mode == "process":
        logger.info(
            "broker: running our own Mosquitto through the process backend on %s:%d (%s)",
            plan.host,
            plan.port,
            plan.reason,
        )
    elif plan.mode == "systemd":
        logger.info(
            "broker: supervising the system broker through systemd on %s:%d (%s)",
            plan.host,
            plan.port,
            plan.reason,
        )
    else:
        logger.info(
            "broker: watching an external broker on %s:%d (%s)", plan.host, plan.port, plan.reason
        )
