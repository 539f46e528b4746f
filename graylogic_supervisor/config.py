"""The supervisor's configuration: pydantic models and the loader.

Paths that point at files shipped beside the config (playbooks, catalog) are
relative to the config file; ``state_dir`` is relative to the working directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from graylogic_supervisor.errors import ConfigError, SourceProblem
from graylogic_supervisor.playbooks.regexguard import safe_regex
from graylogic_supervisor.resources import bundled_path
from graylogic_supervisor.yamlsource import PathKey, dotted, load_located, validate_located

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
ERROR_ID_PATTERN = r"^ERR-[A-Z0-9]+-[A-Z0-9]+-\d{3}$"


def usable_path(value: Path) -> Path:
    """Refused here, with its line, what would otherwise fail when the path is resolved."""
    if "\0" in str(value):
        raise ValueError("a path cannot contain a NUL character")
    try:
        value.expanduser()
    except RuntimeError as exc:  # ~name of a user this machine does not have
        raise ValueError(f"cannot expand {value.parts[0]!r}: no such user") from exc
    return value


FilePath = Annotated[Path, AfterValidator(usable_path)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(Model):
    name: str = "dev-site"


class BackoffConfig(Model):
    """Capped, jittered exponential backoff."""

    initial_s: float = Field(0.1, gt=0)
    multiplier: float = Field(2.0, ge=1)
    max_s: float = Field(10.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)


class MqttConfig(Model):
    """How the supervisor's own MQTT client talks to the broker."""

    client_id: str = "graylogic-supervisor"
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(10, ge=2, le=3600)
    topic_root: str = Field("graylogic", pattern=r"^[A-Za-z0-9_/-]+$")
    probe_timeout_s: float = Field(2.0, gt=0)
    confirm_timeout_s: float = Field(
        5.0,
        gt=0,
        description="a failed probe's second round trip, on its own connection (at least"
        " probe_timeout_s): the broker is unhealthy only if that fails too",
    )
    discovery_prefix: str | None = Field(
        "homeassistant", description="Home Assistant discovery prefix; null disables discovery"
    )
    reconnect: BackoffConfig = BackoffConfig()


class BrokerConfig(Model):
    """Which broker is supervised and how it is run.

    ``auto`` supervises the system broker through systemd where systemd is PID 1,
    and otherwise runs its own Mosquitto through the process backend.
    """

    mode: Literal["auto", "systemd", "process", "external"] = "auto"
    service: str = Field("mosquitto", pattern=NAME_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    unit: str = "mosquitto.service"
    executable: str = "mosquitto"
    process_port: int = Field(1884, ge=1, le=65535)
    # Our own broker only (process mode), relative to this file: clients log in (anonymous
    # refused) and the ACL says who may write where, e.g. only bridge X on {root}/health/X.
    password_file: FilePath | None = None
    acl_file: FilePath | None = None


class ProcessServiceConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    backend: Literal["process"]
    argv: list[str] = Field(min_length=1)
    cwd: FilePath | None = None
    env: dict[str, str] = {}
    ready_port: int | None = Field(None, ge=1, le=65535)
    ready_timeout_s: float = Field(5.0, gt=0)
    stop_timeout_s: float = Field(5.0, gt=0)


class SystemdServiceConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    backend: Literal["systemd"]
    unit: str = Field(pattern=r"^[A-Za-z0-9:_.@-]+\.(service|socket|target|timer)$")
    ready_port: int | None = Field(None, ge=1, le=65535)
    ready_timeout_s: float = Field(10.0, gt=0)


ServiceConfig = Annotated[
    ProcessServiceConfig | SystemdServiceConfig, Field(discriminator="backend")
]


class _ComponentBase(Model):
    """Something whose health is watched and whose failure starts a recovery."""

    error_id: str = Field(pattern=ERROR_ID_PATTERN)
    check_interval_s: float = Field(10.0, gt=0)
    grace_s: float = Field(0.0, ge=0, description="how long unhealthy before it is a failure")
    depends_on: list[str] = Field(
        [], description="components whose failure explains this one's (e.g. a bridge on mqtt)"
    )


class MqttComponent(_ComponentBase):
    """The broker: event-driven through the link and the broker's process, and probed."""

    kind: Literal["mqtt"]
    service: str | None = Field(None, pattern=NAME_PATTERN)


class ServiceComponent(_ComponentBase):
    """A supervised service: healthy while it runs (and its ready port accepts)."""

    kind: Literal["service"]
    service: str = Field(pattern=NAME_PATTERN)


class BridgeComponent(_ComponentBase):
    """A protocol bridge, healthy while its heartbeats arrive on {root}/health/{name}."""

    kind: Literal["bridge"]
    service: str | None = Field(None, pattern=NAME_PATTERN)
    heartbeat_window_s: float = Field(30.0, gt=0)
    max_heartbeats_per_s: float = Field(
        10.0,
        gt=0,
        description="beyond this rate (burst: twice it, at least 3) heartbeats are dropped"
        " and counted; one per window is all a bridge needs",
    )


class DatabaseComponent(_ComponentBase):
    """The supervisor's own SQLite store: latency, integrity and free disk."""

    kind: Literal["database"]
    service: None = None
    max_latency_ms: float = Field(200.0, gt=0)
    min_free_mb: float = Field(50.0, ge=0)


class MemoryComponent(_ComponentBase):
    kind: Literal["memory"]
    service: None = None
    max_percent: float = Field(90.0, gt=0, le=100)


class DiskComponent(_ComponentBase):
    """Free space on the filesystem that holds ``path`` (default: the state directory)."""

    kind: Literal["disk"]
    service: None = None
    path: FilePath | None = None
    max_percent: float = Field(90.0, gt=0, le=100)


class CpuComponent(_ComponentBase):
    """CPU use over the check interval, and load average per core."""

    kind: Literal["cpu"]
    service: None = None
    max_percent: float = Field(95.0, gt=0, le=100)
    max_load_per_cpu: float = Field(4.0, gt=0)


ComponentConfig = Annotated[
    MqttComponent
    | ServiceComponent
    | BridgeComponent
    | DatabaseComponent
    | MemoryComponent
    | DiskComponent
    | CpuComponent,
    Field(discriminator="kind"),
]


class CriticalPattern(Model):
    """A failure that must never be handled automatically on this site (BR-WF-CRITICAL-001)."""

    error_id: str | None = Field(None, pattern=ERROR_ID_PATTERN)
    message: str | None = Field(None, description="a regular expression searched in the message")
    reason: str = "configured critical pattern"

    @field_validator("message")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            # searched in every failure's message: one that backtracks would stall the loop
            safe_regex(value, ValueError)
        return value


class PolicyConfig(Model):
    """The give-up rules (supervisor/policy.py explains each)."""

    attempt_window_s: float = Field(3600.0, gt=0)
    rearm_after_s: float = Field(60.0, ge=0)
    open_cooldown_s: float = Field(120.0, ge=0)
    max_open_cooldown_s: float = Field(1800.0, ge=0)
    termination_window_s: float = Field(3600.0, gt=0)
    termination_rate_limit: float = Field(0.10, gt=0, le=1)
    termination_rate_alert: float = Field(0.08, gt=0, le=1)
    termination_min_sample: int = Field(10, ge=1)
    safe_mode_failures: int = Field(5, ge=1)
    safe_mode_window_s: float = Field(60.0, gt=0)
    essentials: list[str] = Field(
        [], description="components still recovered automatically in safe mode"
    )
    flap_changes: int = Field(6, ge=2, description="health changes within flap_window_s")
    flap_window_s: float = Field(120.0, gt=0)
    stabilisation_s: float = Field(60.0, ge=0)
    critical_patterns: list[CriticalPattern] = []


class WebhookConfig(Model):
    url: str = Field(pattern=r"^https?://")
    token: SecretStr | None = None  # sent as "Authorization: Bearer …"; never logged
    timeout_s: float = Field(5.0, gt=0)


class EscalationLevel(Model):
    after_s: float = Field(ge=0, description="seconds after the escalation was raised")
    channels: list[str] = Field(
        min_length=1, description="'mqtt' (alert topic and admin banner) or 'webhook:NAME'"
    )


class EscalationConfig(Model):
    """Who is told of an escalation, and when, until someone acknowledges it."""

    levels: list[EscalationLevel] = [
        EscalationLevel(after_s=0, channels=["mqtt"]),
    ]
    webhooks: dict[str, WebhookConfig] = {}
    check_interval_s: float = Field(5.0, gt=0)
    # A component failing again within this long of its unacknowledged escalation's last
    # update updates that escalation instead of raising a new one.
    repeat_window_s: float = Field(3600.0, ge=0)


class MemoryConfig(Model):
    """The failure memory: when a remembered fix is tried first, and how long what is kept."""

    enabled: bool = True
    confidence_threshold: float = Field(0.8, gt=0, le=1)
    similar_min_score: float = Field(0.8, gt=0, le=1)
    pattern_threshold: float = Field(0.8, gt=0, le=1)
    pattern_min_members: int = Field(3, ge=2)
    learned_fix_min_history: int = Field(
        10,
        ge=1,
        description="alike failures behind a learned fix before it runs ahead of the playbook"
        " (BR-WF-LEARNING-001); below it the playbook runs and the decision says so",
    )
    recent_events: int = Field(50, ge=1, le=1000)
    consolidation_cron: str = Field("0 3 * * *", description="crontab: minute hour dom month dow")
    timezone: str | None = Field(None, description="for the cron; default the host's")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return known_zone(value)

    pattern_unmatched_days: int = Field(90, ge=1)
    review_min_matches: int = Field(5, ge=1)
    review_success_below: float = Field(0.2, ge=0, le=1)
    compress_after_days: int = Field(365, ge=1)
    keep_routine_days: int = Field(180, ge=1)
    keep_escalated_days: int = Field(730, ge=1)

    @field_validator("consolidation_cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        return crontab(value)


class LearningConfig(Model):
    """Workflow learning: when the analysis runs and what it may recommend."""

    enabled: bool = True
    analysis_cron: str = Field(
        "0 3 * * sun",
        description="crontab: minute hour dom month dow; name the day (APScheduler 3 reads"
        " a numeric day of week with 0 as Monday)",
    )
    timezone: str | None = Field(None, description="for the cron; default the host's")
    confidence_threshold: float = Field(0.8, gt=0, le=1)
    min_executions: int = Field(
        10, ge=1, description="of the active version in the last window_days days"
    )
    window_days: float = Field(
        30.0, gt=0, description="the analysis counts the active version's executions this far back"
    )
    min_improvement: float = Field(
        0.01, ge=0, lt=1, description="share of the expected resolution time a change must save"
    )
    replay_window: int = Field(1000, ge=10, le=100_000, description="recent executions replayed")
    recommendation_expiry_days: float = Field(7.0, gt=0)
    trial_share: float = Field(
        0.2, gt=0, lt=1, description="share of incidents a trial version runs (BR-WF-034)"
    )
    manual_resolve_s: float = Field(
        1800.0, ge=0, description="a technician's time, until the store has recorded some"
    )
    draft_min_resolutions: int = Field(
        3,
        ge=1,
        description="failures of an error id no playbook covers, resolved by people with a"
        " registered fix action, before the analysis drafts a playbook for it",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return known_zone(value)

    @field_validator("analysis_cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        return crontab(value)


def known_zone(value: str | None) -> str | None:
    if value is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def crontab(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a crontab expression: {exc}") from exc
    return value


class EngineConfig(Model):
    max_concurrent_executions: int = Field(
        4, ge=1, le=1000, description="more wait, the most severe failure first"
    )


class StoreConfig(Model):
    """Space set aside beside the store so that it keeps recording when the disk fills."""

    reserve_mb: float = Field(
        16.0, ge=0, description="freed on the first write that finds the disk full; 0: none"
    )
    space_check_s: float = Field(
        10.0, gt=0, description="while full, how often to see whether space has returned"
    )
    hold_max_rows: int = Field(
        1000,
        ge=0,
        description="essential components' records held in memory while the store cannot"
        " write (disk full past the reserve, database locked); 0: none held",
    )
    hold_max_kb: int = Field(1024, ge=0, description="the same hold's bound in kilobytes")


class CleanupDirectory(Model):
    """A directory ``clean_up_files`` may empty of old files; nothing outside it is touched."""

    path: FilePath
    max_age_days: float = Field(gt=0, description="files older than this are removed")
    pattern: str = Field(
        "*", pattern=r"^[^/\\]+$", description="a file-name glob, e.g. '*.log' (no slash)"
    )

    @field_validator("path")
    @classmethod
    def _not_the_root(cls, value: Path) -> Path:
        if value.expanduser() == Path("/"):
            raise ValueError("the filesystem root is never a clean-up directory")
        return value


class ActionsConfig(Model):
    """What the site's built-in actions may touch, and its plugin actions' own settings."""

    cleanup_directories: list[CleanupDirectory] = []
    databases: dict[str, FilePath] = Field(
        {}, description="site SQLite files by name, for check_site_database/vacuum_site_database"
    )
    plugins: dict[str, dict[str, Any]] = Field(
        {}, description="settings handed to a plugin action, by its action name"
    )


class NightlyJob(Model):
    """A job of the store's upkeep on its own cron, in the site's time zone; each kind
    sets its own default time."""

    enabled: bool = True
    cron: str = Field(description="crontab: minute hour dom month dow")
    timezone: str | None = Field(None, description="for the cron; default the host's")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return known_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        return crontab(value)


class RetentionConfig(NightlyJob):
    """How long each kind of record is kept before the nightly clean-up removes it.

    Days per kind; 0 keeps that kind for ever. What something live still refers to is
    never removed whatever its age (a running execution, an open incident or
    escalation, a running trial's versions, the newest runs learning compares), nor are
    executions not yet counted into the learning metrics. The failure memory, the
    playbook versions, the users and the recommendations are not subject to retention.
    """

    cron: str = Field("45 3 * * *", description="crontab: minute hour dom month dow")
    executions_days: int = Field(
        365,
        ge=0,
        description="finished executions with their steps, never fewer days than"
        " learning.window_days; 0: for ever",
    )
    keep_recent_executions: int = Field(
        1000,
        ge=0,
        description="per playbook, the newest executions kept whatever their age"
        " (what replay and the analysis compare); the newest of each version is kept too",
    )
    commands_days: int = Field(
        90, ge=0, description="operators' applied commands to executions; 0: for ever"
    )
    failures_days: int = Field(
        365,
        ge=0,
        description="detected failures no execution, incident or memory record refers to;"
        " 0: for ever",
    )
    incidents_days: int = Field(
        365,
        ge=0,
        description="closed incidents (with their viability evaluations) no execution or"
        " escalation refers to; 0: for ever",
    )
    viability_days: int = Field(
        90, ge=0, description="viability evaluations of closed incidents; 0: for ever"
    )
    escalations_days: int = Field(
        0, ge=0, description="closed or acknowledged escalations; 0: for ever"
    )
    analyses_days: int = Field(
        180,
        ge=0,
        description="learning analysis reports no recommendation refers to; 0: for ever",
    )
    audit_days: int = Field(
        0,
        ge=0,
        description="audit entries older than this leave the table for a compressed archive"
        " segment in <state_dir>/audit-archive (the chain still verifies); 0: never",
    )
    batch_rows: int = Field(
        500, ge=1, le=100_000, description="rows removed per transaction (the writer's pause)"
    )


class BackupConfig(NightlyJob):
    """The nightly backup of the store (SQLite's online backup: safe while it writes)."""

    cron: str = Field("15 2 * * *", description="crontab: minute hour dom month dow")
    directory: FilePath | None = Field(
        None, description="where the backups go; relative to state_dir; default <state_dir>/backups"
    )
    keep: int = Field(
        7, ge=1, description="nightly backups kept; older ones made by this job are removed"
    )


class PlaybooksConfig(Model):
    directory: FilePath = Path("../playbooks")


class AdminConfig(Model):
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    metrics_token: SecretStr | None = Field(
        None, description="bearer token a Prometheus scrape of /metrics may use instead of a login"
    )
    # What clients may hold (issue 13: idle connections took every file descriptor).
    max_connections: int = Field(64, ge=1, description="open connections; more are closed")
    request_timeout_s: float = Field(10.0, gt=0, description="to receive a whole request")
    idle_timeout_s: int = Field(5, ge=1, description="a kept-alive connection between requests")
    write_timeout_s: float = Field(30.0, gt=0, description="an answer the client does not read")
    max_concurrent_requests: int = Field(16, ge=1, description="in the app at once; more get 503")
    fd_reserve: int = Field(
        256, ge=16, description="file descriptors the admin server leaves to supervision"
    )
    password_workers: int = Field(1, ge=1, description="threads hashing passwords (64 MiB each)")
    password_queue: int = Field(2, ge=0, description="logins waiting for one; more get 503")


class SupervisorConfig(Model):
    site: SiteConfig = SiteConfig()
    state_dir: FilePath = Path(".state")
    database: FilePath | None = None
    catalog: FilePath = Path("catalog.yaml")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_s: float = Field(10.0, ge=0)
    mqtt: MqttConfig = MqttConfig()
    broker: BrokerConfig = BrokerConfig()
    services: list[ServiceConfig] = []
    components: dict[str, ComponentConfig] = {}
    policy: PolicyConfig = PolicyConfig()
    escalation: EscalationConfig = EscalationConfig()
    memory: MemoryConfig = MemoryConfig()
    learning: LearningConfig = LearningConfig()
    engine: EngineConfig = EngineConfig()
    store: StoreConfig = StoreConfig()
    retention: RetentionConfig = RetentionConfig()
    backup: BackupConfig = BackupConfig()
    playbooks: PlaybooksConfig = PlaybooksConfig()
    admin: AdminConfig = AdminConfig()
    actions: ActionsConfig = ActionsConfig()

    @field_validator("components")
    @classmethod
    def _component_names(cls, value: dict[str, ComponentConfig]) -> dict[str, ComponentConfig]:
        for name in value:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"component name {name!r} must match {NAME_PATTERN}")
        return value

    @property
    def database_path(self) -> Path:
        return self.database if self.database is not None else self.state_dir / "supervisor.db"

    @property
    def backup_directory(self) -> Path:
        """A relative ``backup.directory`` is taken inside the state directory."""
        return self.state_dir / (self.backup.directory or "backups")


def load_config(path: Path) -> SupervisorConfig:
    """Load and validate a config file, resolving its relative paths.

    Raises ``ConfigError`` listing every problem with its line and field.
    """
    located = load_located(path, ConfigError)
    if located.data is None:
        located.data = {}
    config = validate_located(located, SupervisorConfig, ConfigError)
    problems = [
        SourceProblem(path, located.line_of(where), dotted(where), message)
        for where, message in cross_reference_problems(config)
    ]
    if problems:
        raise ConfigError(path, problems)
    return resolve_paths(config, path.parent)


def cross_reference_problems(config: SupervisorConfig) -> list[tuple[PathKey, str]]:
    """Problems that span fields: duplicate names and dangling references."""
    problems: list[tuple[PathKey, str]] = []
    seen: set[str] = {config.broker.service}
    for index, service in enumerate(config.services):
        if service.name in seen:
            problems.append(
                (("services", index, "name"), f"duplicate service name {service.name!r}")
            )
        seen.add(service.name)
    for name, component in config.components.items():
        if component.service is not None and component.service not in seen:
            problems.append(
                (("components", name, "service"), f"unknown service {component.service!r}")
            )
        for index, dependency in enumerate(component.depends_on):
            if dependency not in config.components:
                problems.append(
                    (
                        ("components", name, "depends_on", index),
                        f"unknown component {dependency!r}",
                    )
                )
    if config.broker.password_file is not None and (
        config.mqtt.username is None or config.mqtt.password is None
    ):
        problems.append(
            (
                ("broker", "password_file"),
                "anonymous clients are refused: set mqtt.username and mqtt.password too",
            )
        )
    for index, essential in enumerate(config.policy.essentials):
        if essential not in config.components:
            problems.append((("policy", "essentials", index), f"unknown component {essential!r}"))
    for level_index, level in enumerate(config.escalation.levels):
        for channel_index, channel in enumerate(level.channels):
            kind, _, name = channel.partition(":")
            if channel == "mqtt" or (kind == "webhook" and name in config.escalation.webhooks):
                continue
            problems.append(
                (
                    ("escalation", "levels", level_index, "channels", channel_index),
                    f"unknown channel {channel!r} (use 'mqtt' or 'webhook:NAME' of a"
                    " configured webhook)",
                )
            )
    if not problems:
        for cycle in dependency_cycles(config.components):
            first = cycle[0]
            problems.append(
                (
                    ("components", first, "depends_on"),
                    f"dependency cycle: {' -> '.join([*cycle, first])}",
                )
            )
    return problems


def dependency_cycles(components: Mapping[str, ComponentConfig]) -> list[list[str]]:
    """Each cycle in ``depends_on`` once, starting at its first component in file order."""
    order = {name: i for i, name in enumerate(components)}
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()

    def walk(name: str, path: list[str]) -> None:
        for dependency in components[name].depends_on:
            if dependency in path:
                cycle = path[path.index(dependency) :]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                    cycles.append(cycle[start:] + cycle[:start])
            elif dependency in components:
                walk(dependency, [*path, dependency])

    for name in components:
        walk(name, [name])
    return cycles


def resolve_paths(config: SupervisorConfig, config_dir: Path) -> SupervisorConfig:
    def beside(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (config_dir / p).resolve()

    def cwd(p: Path) -> Path:
        return p.expanduser().absolute()

    return config.model_copy(
        update={
            "state_dir": cwd(config.state_dir),
            "database": cwd(config.database) if config.database else None,
            "catalog": beside(config.catalog),
            "playbooks": PlaybooksConfig(directory=beside(config.playbooks.directory)),
            "actions": config.actions.model_copy(
                update={
                    "cleanup_directories": [
                        d.model_copy(update={"path": beside(d.path)})
                        for d in config.actions.cleanup_directories
                    ],
                    "databases": {n: beside(p) for n, p in config.actions.databases.items()},
                }
            ),
            "broker": config.broker.model_copy(
                update={
                    "password_file": beside(config.broker.password_file)
                    if config.broker.password_file
                    else None,
                    "acl_file": beside(config.broker.acl_file) if config.broker.acl_file else None,
                }
            ),
        }
    )


def default_config_path() -> Path:
    """The embedded default configuration shipped with the package."""
    return bundled_path("config/supervisor.yaml")


CONFIG_ENV = "GRAYLOGIC_SUPERVISOR_CONFIG"
SITE_CONFIG = Path("/etc/graylogic-supervisor/supervisor.yaml")


def locate_config(
    explicit: Path | None, environ: Mapping[str, str], site_config: Path = SITE_CONFIG
) -> tuple[Path, str]:
    """Which configuration a command uses, and why: ``--config``, else the path in
    ``$GRAYLOGIC_SUPERVISOR_CONFIG``, else the site's file in /etc, else the embedded
    defaults. So a CLI call on the controller finds the daemon's store from any directory."""
    if explicit is not None:
        return explicit, "--config"
    from_environment = environ.get(CONFIG_ENV, "").strip()
    if from_environment:
        return Path(from_environment), f"${CONFIG_ENV}"
    if site_config.is_file():
        return site_config, "the site's configuration"
    return default_config_path(), "the embedded defaults"
