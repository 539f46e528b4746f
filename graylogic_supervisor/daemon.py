"""The composition root: builds every object, runs every loop, shuts down in order."""

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

from graylogic_supervisor import __version__, loops
from graylogic_supervisor.broker import BrokerPlan, plan_broker, write_mosquitto_conf
from graylogic_supervisor.catalog import (
    catalog_playbook_warnings,
    check_catalog_covers,
    load_catalog,
)
from graylogic_supervisor.clock import Clock, SystemClock
from graylogic_supervisor.config import (
    BridgeComponent,
    MqttComponent,
    SupervisorConfig,
)
from graylogic_supervisor.engine.builtins import builtin_registry
from graylogic_supervisor.engine.builtins.compose import RunPlaybook
from graylogic_supervisor.engine.control import ExecutionControls, PriorityGate
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
    service_running,
)
from graylogic_supervisor.health.probes import (
    cpu_prober,
    database_prober,
    disk_prober,
    memory_prober,
)
from graylogic_supervisor.learning.feed import FinishedExecutions
from graylogic_supervisor.learning.service import LearningService, learning_settings
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.memory.capture import ContextCapture, resource_state
from graylogic_supervisor.memory.events import EventRing, ExecutionEvents
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.metrics import Metrics
from graylogic_supervisor.mqtt.discovery import discovery_messages
from graylogic_supervisor.mqtt.link import LinkSettings, MqttLink, encode
from graylogic_supervisor.mqtt.probe import ProbeTarget
from graylogic_supervisor.mqtt.socket_race import quiet_closed_socket_races
from graylogic_supervisor.mqtt.topics import Topics, offline_payload
from graylogic_supervisor.passwords import PasswordPool
from graylogic_supervisor.playbooks.loader import load_directory
from graylogic_supervisor.reload import Reloader, memory_settings, policy_settings
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
from graylogic_supervisor.supervisor.resumption import resumable_executions
from graylogic_supervisor.supervisor.status import DurationHistory, StatusPublisher
from graylogic_supervisor.supervisor.store_space import StoreSpace
from graylogic_supervisor.web.app import WebDeps, create_app
from graylogic_supervisor.web.auth import AuthDeps
from graylogic_supervisor.web.render import AdminDeps
from graylogic_supervisor.web.server import ListenError, limits_for, serve

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
            await _run(config, config_path, options, stop, reload_requested)
    finally:
        if deadline is not None:
            deadline.arm()  # what is left of the exit is bounded too
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _run(
    config: SupervisorConfig,
    config_path: Path,
    options: DaemonOptions,
    stop: asyncio.Event,
    reload_requested: asyncio.Event,
) -> None:
    clock, notifier = options.clock, options.notifier
    catalog = load_catalog(config.catalog)
    check_catalog_covers(config, catalog)
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    for orphan in await stop_orphans(state_dir / "run"):
        logger.warning("stopped %s, left running by a supervisor that was killed", orphan)

    plan = plan_broker(config.broker, state_dir)
    write_mosquitto_conf(plan, state_dir)
    _log_plan(plan)

    async with AsyncExitStack() as stack:
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

        services = ServiceManager(clock)
        stack.push_async_callback(_stop_children, services)
        topics = Topics(config.mqtt.topic_root)
        link = MqttLink(_link_settings(config, plan, topics), clock, random.Random())
        publisher = StatusPublisher(
            link,
            topics,
            config.site.name,
            clock,
            durations=DurationHistory(await executions.resolved_durations()),
        )
        probe_target = ProbeTarget(
            plan.host,
            plan.port,
            config.mqtt.username,
            config.mqtt.password.get_secret_value() if config.mqtt.password else None,
            topics.root,
        )

        probe_mqtt = BrokerCheck(
            probe_target, services, config.mqtt.probe_timeout_s, config.mqtt.confirm_timeout_s
        )
        bridges = {
            name: component
            for name, component in config.components.items()
            if isinstance(component, BridgeComponent)
        }
        heartbeats = HeartbeatTracker(
            bridges,
            topics.root,
            clock,
            lambda component, healthy, detail: monitor.report(component, healthy, detail),
            lambda component: monitor.probe(component),
            lambda: link.flooded_at,
        )
        link.subscribe(heartbeats.topic_filter, heartbeats.handle, lane=heartbeats.lane, qos=0)
        services.add_replace_listener(heartbeats.service_replaced)

        events = EventRing(clock, config.memory.recent_events)

        def on_health_change(state: ComponentHealth) -> None:
            publisher.component_changed(state, monitor.overall())
            events.add("health", state.component, f"{state.health.value}: {state.detail}")
            broker_back = state.health is Health.HEALTHY and isinstance(
                config.components[state.component], MqttComponent
            )
            if broker_back and not link.connected:
                link.reconnect_now()  # do not wait out the link's backoff or breaker

        monitor = HealthMonitor(
            config.components,
            services,
            {
                "mqtt": probe_mqtt,
                "service": service_running,
                "bridge": heartbeats.prober,
                "database": database_prober(db, clock),
                "memory": memory_prober(),
                "disk": disk_prober(state_dir),
                "cpu": cpu_prober(clock),
            },
            clock,
            publisher=on_health_change,
            on_could_not_tell=lambda component, cause: metrics.probe_could_not_tell(
                component, cause
            ),
        )
        systemctl = SubprocessRunner()
        all_services = ([plan.service] if plan.service else []) + list(config.services)
        for service_config in all_services:
            backend = build_backend(
                service_config,
                state_dir=state_dir,
                on_exit=monitor.service_exited,
                systemctl=systemctl,
            )
            services.add(backend, readiness_of(service_config, plan.host))
        link.add_listener(monitor.link_changed)
        store_space = StoreSpace(
            reserve,
            publisher,
            monitor.probe,
            [n for n, c in config.components.items() if c.kind in ("disk", "database")],
            clock=clock,
            check_interval_s=config.store.space_check_s,
            flush_held=db.flush_held,
        )
        store_space.take_reserve()
        db.on_full = store_space.on_full

        composer = RunPlaybook(versions)
        registry = builtin_registry(
            services, monitor, probe_target, publisher, db, state_dir, composer
        )
        loaded, errors = load_directory(config.playbooks.directory, registry.specs())
        for error in errors:
            logger.error("playbook skipped: %s", error)
        for item in loaded:
            await versions.seed(item.playbook, item.source, str(item.file), clock.now())
        logger.info("%d playbooks loaded from %s", len(loaded), config.playbooks.directory)
        for warning in catalog_playbook_warnings(catalog, {item.playbook.id for item in loaded}):
            logger.warning("%s", warning)

        metrics = Metrics(__version__)
        metrics.watch_held_writes(lambda: db.held_rows)
        link.add_drop_listener(metrics.mqtt_message_dropped)
        heartbeats.add_drop_listener(metrics.heartbeat_dropped)
        controls_of_runs = ExecutionControls(clock)
        recorder = MetricsRecorder(metrics, plan.service.name if plan.service else None)
        finished = FinishedExecutions()
        runner = Runner(
            registry,
            executions,
            clock,
            observer=ExecutionFanOut([publisher, recorder, ExecutionEvents(events)]),
            resources=lambda: resource_state(state_dir),
            controls=controls_of_runs,
            gate=PriorityGate(config.engine.max_concurrent_executions),
        )
        composer.bind(runner)
        policy = RecoveryPolicy(policy_settings(config), clock)
        db.holds_for = policy.is_essential  # their records are held, not refused
        recovery_state = RecoveryStateRepository(db)
        await rebuild_policy(policy, recovery_state, incidents, executions, clock)
        # the audit chain's hashing and head file, in their own thread (not asyncio's pool)
        audit_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        stack.callback(audit_worker.shutdown, wait=False)
        audit = AuditLog(db, audit_worker)
        controls = ControlRepository(db, audit)
        observer = FanOut([publisher, recorder])
        audit_watch = ChainWatch(audit, clock, alert=observer.alert)
        await audit_watch.create_if_empty()
        link.add_listener(lambda connected, _: audit_watch.republish() if connected else None)
        escalation_store = EscalationRepository(db, audit)
        await escalation_store.close_unacknowledged(clock.now())
        escalations = await stack.enter_async_context(
            EscalationChain(
                config.escalation, escalation_store, observer, clock, site=config.site.name
            )
        )
        advisor = None
        memory = FailureMemory(MemoryRepository(db), memory_settings(config), clock)
        if config.memory.enabled:
            remembered = await memory.load()
            logger.info("failure memory: %d records", remembered)
            advisor = MemoryAdvisor(
                memory,
                ContextCapture(monitor, events, state_dir, clock),
                audit,
                versions,
                registry.specs(),
                clock,
            )
        supervisor = Supervisor(
            monitor,
            versions,
            executions,
            incidents,
            runner,
            catalog,
            policy,
            controls,
            observer,
            escalations,
            clock,
            advisor,
            PolicyJournal(policy, recovery_state, clock),
            arms=TrialArms(TrialRepository(db), versions),
            judged=finished.judged,  # learning counts a run once its health verdict is written
        )
        reloader = Reloader(
            config_path,
            config,
            registry.specs(),
            monitor,
            policy=policy,
            supervisor=supervisor,
            versions=versions,
            audit=audit,
            clock=clock,
        )

        for resumed in resumable:
            supervisor.adopt(
                resumed.failure.component,
                runner.resume(
                    resumed.execution_id,
                    resumed.playbook,
                    resumed.failure,
                    resumed.step_id,
                    elapsed_s=resumed.elapsed_s,
                    rows=resumed.rows,
                ),
            )

        for service_config in all_services:
            if service_config.backend == "process":
                try:
                    await services.start(service_config.name)
                except ServiceError as exc:
                    logger.error("%s", exc)  # the health probe will see it and recover it
        publisher.announce_online(monitor.overall())
        if config.mqtt.discovery_prefix:
            for topic, payload in discovery_messages(
                config.mqtt.discovery_prefix, topics, config.site.name
            ):
                link.publish_on_connect(topic, payload)

        learning = LearningService(
            db,
            versions,
            audit,
            registry.specs(),
            learning_settings(config.learning),
            clock,
            alert=observer.alert,
        )
        passwords = await stack.enter_async_context(
            PasswordPool(config.admin.password_workers, config.admin.password_queue)
        )
        users = UserRepository(db, passwords)  # logins hash in this pool only
        await ensure_first_admin(users, audit, clock)
        sessions = SessionRepository(db)
        await sessions.purge(clock.now())
        app = create_app(
            WebDeps(
                health=monitor,
                recovering=lambda: supervisor.recovering,
                metrics=metrics,
                site=config.site.name,
                version=__version__,
            ),
            AdminDeps(
                PageStore.of(db),
                AuthDeps(users, sessions, audit, clock, metrics=metrics),
                controls,
                escalation_store,
                executions,
                CommandRepository(db),
                versions,
                learning,
                policy.termination,
                config.admin.metrics_token.get_secret_value()
                if config.admin.metrics_token
                else None,
                audit_watch,
            ),
        )
        web_ready = asyncio.Event()
        fds = FdBudget.at_startup(config.admin.fd_reserve)
        scheduler = loops.nightly_scheduler(config, memory, learning, clock)
        scheduler.start()  # inside the running loop, as APScheduler 3 requires
        stack.callback(scheduler.shutdown, wait=False)

        keeper = LoopSupervisor(
            clock, random.Random(), metrics, RestartPolicy(cancel_wait_s=LOOPS_STOP_S)
        )

        def resync_supervisor() -> None:
            """A restarted supervisor loop hears again of what is still unhealthy."""
            for state in monitor.snapshot().values():
                if state.health is Health.UNHEALTHY:
                    monitor.changes.put_nowait(HealthChange(Health.UNKNOWN, state))

        async with asyncio.TaskGroup() as group:

            def keep(
                name: str, loop: LoopFactory, on_restart: Callable[[], None] | None = None
            ) -> asyncio.Task[None]:
                """One loop of the group, restarted when it fails (supervised.py)."""
                return group.create_task(keeper.run(name, loop, on_restart=on_restart), name=name)

            web = group.create_task(
                keeper.run(
                    "web",
                    partial(
                        serve,
                        app,
                        config.admin.bind,
                        config.admin.port,
                        ready=web_ready,
                        limits=limits_for(config.admin, fds),
                        budget=fds,
                        metrics=metrics,
                    ),
                    # the admin port taken at start-up ends it; later the server is restarted
                    fatal=lambda error: isinstance(error, ListenError) and not web_ready.is_set(),
                ),
                name="web",
            )
            # Listening first: an address in use ends start-up here, before anything else
            # runs (and before READY=1).
            await web_ready.wait()
            tasks = [
                web,
                keep("mqtt-link", link.run),
                keep("heartbeat-rechecks", heartbeats.run),
                keep("health-probes", monitor.run),
                keep("supervisor", supervisor.run, on_restart=resync_supervisor),
                keep("escalation-chain", escalations.run),
                keep("store-space", store_space.run),
                keep(
                    "state-publisher",
                    partial(
                        loops.publish_state,
                        publisher,
                        metrics,
                        policy,
                        supervisor,
                        controls,
                        clock,
                        learning,
                    ),
                ),
                keep("reload", partial(loops.reload_on_signal, reloader, reload_requested, events)),
                keep("user-actions", partial(loops.watch_user_actions, audit, events, clock)),
                keep(
                    "learning",
                    partial(loops.learn_from_executions, finished.queue, learning, clock),
                ),
                keep(
                    "execution-watchdog",
                    partial(loops.watch_stuck_executions, controls_of_runs, publisher, clock),
                ),
                keep("audit-watch", partial(audit_watch.run, publisher.audit_head)),
                keep(
                    "operator-commands",
                    partial(
                        loops.apply_commands,
                        CommandRepository(db),
                        controls_of_runs,
                        controls,
                        audit,
                        clock,
                    ),
                ),
            ]
            interval = notifier.watchdog_interval_s()
            if interval is not None:
                # On the event loop, never a thread: a wedged loop stops the pings, and
                # systemd notices. A crashed loop elsewhere does not: it is restarted here.
                tasks.append(
                    keep("watchdog", partial(loops.systemd_watchdog, notifier, clock, interval))
                )
            notifier.ready()
            notifier.status(f"supervising {', '.join(config.components) or 'nothing'}")
            logger.info(
                "graylogic-supervisor %s running for site %s", __version__, config.site.name
            )
            await stop.wait()

            logger.info("stopping")
            notifier.stopping()
            supervisor.stop_accepting()
            if not await supervisor.wait_idle(config.shutdown_grace_s):
                logger.warning(
                    "executions still running after %.0f s; they are marked interrupted",
                    config.shutdown_grace_s,
                )
            publisher.announce_stopping()
            await bounded(
                "flushing the MQTT link",
                partial(link.flush, timeout_s=LINK_FLUSH_S),
                LINK_FLUSH_S + 0.5,
            )
            for task in tasks:
                task.cancel()  # each ends within LOOPS_STOP_S, or is left behind
    logger.info("stopped")


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
