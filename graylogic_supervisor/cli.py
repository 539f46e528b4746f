"""The command line: run the daemon, check files, and read what it recorded."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from graylogic_supervisor import __version__
from graylogic_supervisor.backup_cli import (
    BACKUP_COMMANDS,
    add_backup_commands,
    run_backup_command,
)
from graylogic_supervisor.catalog import (
    catalog_playbook_warnings,
    check_catalog_covers,
    load_catalog,
)
from graylogic_supervisor.config import (
    CONFIG_ENV,
    SITE_CONFIG,
    SupervisorConfig,
    default_config_path,
    load_config,
    locate_config,
)
from graylogic_supervisor.engine.plugins import action_specs
from graylogic_supervisor.errors import SourceError, StoreError, SupervisorError
from graylogic_supervisor.export_cli import add_export_command, run_export
from graylogic_supervisor.feedback_cli import add_feedback_command, run_feedback
from graylogic_supervisor.learning_cli import (
    LEARNING_PLAYBOOK_COMMANDS,
    add_learning_commands,
    run_learning_command,
    run_simulate,
)
from graylogic_supervisor.memory_cli import add_memory_commands, run_memory_command
from graylogic_supervisor.operator_cli import (
    CONTROL_COMMANDS,
    add_execution_control,
    add_operator_commands,
    run_control_command,
    run_operator_command,
)
from graylogic_supervisor.playbooks.loader import load_directory, load_files, load_playbook
from graylogic_supervisor.token_cli import run_token_command

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graylogic-supervisor",
        description=(
            "Recovery supervisor for a building controller: watches the MQTT broker, local "
            "services and protocol bridges, runs tracked recovery playbooks, records every "
            "step in SQLite."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run_and_check(commands)
    playbook_commands = _add_playbook_commands(commands)
    exec_commands = _add_execution_commands(commands)
    add_execution_control(exec_commands, commands, _config_option)
    add_operator_commands(commands, _config_option)
    add_memory_commands(commands, _config_option)
    add_learning_commands(commands, playbook_commands, _config_option)
    add_backup_commands(commands, _config_option)
    return parser


def _add_run_and_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``run`` and ``check-config``."""
    run = commands.add_parser(
        "run",
        help="run the daemon (until SIGTERM or SIGINT)",
        description="Run the supervisor. Without --config it runs on the embedded defaults.",
    )
    _config_option(run)
    run.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default="auto",
        help="log line format; auto is json under systemd (JOURNAL_STREAM set), text otherwise",
    )

    check = commands.add_parser(
        "check-config",
        help="validate a config file, its catalog and its playbooks",
        description=(
            "Validate a config file, its catalog and its playbooks;"
            " every error names file, line and field."
        ),
    )
    check.add_argument("path", type=Path, help="the config file (YAML)")


def _add_playbook_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``playbook validate|dry-run|export|import``; the learning adds its own actions."""
    playbook = commands.add_parser("playbook", help="work with playbook files")
    playbook_commands = playbook.add_subparsers(
        dest="playbook_command", required=True, metavar="ACTION"
    )
    validate = playbook_commands.add_parser(
        "validate",
        help="validate playbook files",
        description=(
            "Validate playbook files; every error names file, line and field."
            " Exit status 1 if any is invalid."
        ),
    )
    validate.add_argument("paths", type=Path, nargs="+", help="playbook files (YAML)")
    dry = playbook_commands.add_parser(
        "dry-run",
        help="walk a playbook on simulated outcomes; nothing is run or written",
        description=(
            "Walk a playbook through the real engine with simulated step outcomes (default:"
            " every step succeeds) and print the path and its expected time. No action runs,"
            " no service is touched, nothing is written."
        ),
    )
    dry.add_argument("file", type=Path, help="the playbook file (YAML)")
    dry.add_argument(
        "--outcome",
        action="extend",
        nargs="+",
        default=[],
        metavar="STEP=OUTCOME",
        help=(
            "a step's simulated outcome: success, failure, timeout or error (a group's branch"
            " is GROUP.BRANCH, a step's undo STEP:compensate); may be repeated"
        ),
    )
    dry.add_argument(
        "--history",
        type=Path,
        default=None,
        metavar="DB",
        help="a supervisor store whose step durations give the expected times (read only)",
    )
    dry.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = playbook_commands.add_parser(
        "export", help="print a playbook version from the store as YAML (default: the active one)"
    )
    _config_option(export)
    export.add_argument("playbook_id")
    export.add_argument("--version", default=None)
    importer = playbook_commands.add_parser(
        "import",
        help="validate a playbook file and add it to the store as a version",
        description=(
            "Validate a playbook file and store its version; it becomes active when it is"
            " newer than the active one. The daemon uses it from its next failure on."
        ),
    )
    _config_option(importer)
    importer.add_argument("file", type=Path)
    importer.add_argument("--by", default=None, help="who (default: login name)")
    importer.add_argument("--reason", required=True, help="why, for the version and the audit log")
    return playbook_commands


def _add_execution_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``executions list|show``; the operators' controls add theirs."""
    executions = commands.add_parser(
        "executions",
        help="read recorded executions; pause, resume, cancel or override running ones",
    )
    exec_commands = executions.add_subparsers(
        dest="executions_command", required=True, metavar="ACTION"
    )
    listing = exec_commands.add_parser("list", help="the most recent executions, newest first")
    _config_option(listing)
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument(
        "--status", choices=["running", "resolved", "escalated", "failed", "interrupted"]
    )
    show = exec_commands.add_parser(
        "show", help="one execution record with every step, as YAML (or --json)"
    )
    _config_option(show)
    show.add_argument("execution_id")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    add_export_command(exec_commands, _config_option)
    add_feedback_command(exec_commands, _config_option)
    return exec_commands


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=(
            f"config file (default: ${CONFIG_ENV}, else {SITE_CONFIG} if it exists,"
            f" else the embedded defaults, {default_config_path()})"
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "check-config":
            return _check_config(args.path)
        if args.command == "simulate":
            return run_simulate(args, _load(args.config, say=False))  # a store of its own
        if args.command == "user" and args.user_command == "token":
            return asyncio.run(run_token_command(args, _load(args.config)))
        if args.command in ("analyze", "recommendations", "rollbacks", "trials", "user") or (
            args.command == "playbook" and args.playbook_command in LEARNING_PLAYBOOK_COMMANDS
        ):
            return asyncio.run(run_learning_command(args, _load(args.config)))
        if args.command == "playbook":
            if args.playbook_command == "dry-run":
                return _dry_run(args)
            if args.playbook_command in ("export", "import"):
                return asyncio.run(_playbook_store(args, _load(args.config)))
            return _validate_playbooks(args.paths)
        if args.command == "executions" and args.executions_command in CONTROL_COMMANDS:
            return asyncio.run(run_control_command(args, _load(args.config)))
        if args.command == "emergency-stop":
            return asyncio.run(run_control_command(args, _load(args.config)))
        if args.command == "executions" and args.executions_command == "export":
            return asyncio.run(run_export(args, _load(args.config)))
        if args.command == "executions" and args.executions_command == "feedback":
            return asyncio.run(run_feedback(args, _load(args.config)))
        if args.command == "executions":
            return asyncio.run(_executions(args))
        if args.command in ("why", "memory"):
            return asyncio.run(run_memory_command(args, _load(args.config)))
        if args.command in BACKUP_COMMANDS:
            return run_backup_command(args, _load(args.config))
        if args.command in ("safe-mode", "maintenance", "escalation", "audit"):
            return asyncio.run(run_operator_command(args, _load(args.config)))
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_USAGE


def _load(path: Path | None, *, say: bool = True) -> SupervisorConfig:
    return load_config(_locate(path, say=say))


def _locate(path: Path | None, *, say: bool = True) -> Path:
    """The config to use; when the command line did not name it and the command works on
    the site's store (``say``), which one and why, on stderr (stdout stays as it was)."""
    found, why = locate_config(path, os.environ)
    if path is None and say:
        print(f"config: {found} ({why})", file=sys.stderr)
    return found


def _run(args: argparse.Namespace) -> int:
    from graylogic_supervisor.daemon import run_daemon
    from graylogic_supervisor.logsetup import configure_logging
    from graylogic_supervisor.shutdown import run_to_exit

    path = _locate(args.config)
    config = load_config(path)
    check_catalog_covers(config, load_catalog(config.catalog), path)
    configure_logging(config.log_level, args.log_format)
    failed = False
    try:
        # asyncio.run, but leftovers that ignore cancellation cannot hold the exit
        run_to_exit(run_daemon(config, path))
    except* SupervisorError as group:  # the admin port or the state dir taken: say so, plainly
        for error in group.exceptions:
            print(f"graylogic-supervisor: {error}", file=sys.stderr)
        failed = True
    return EXIT_INVALID if failed else EXIT_OK


def _check_config(path: Path) -> int:
    config = load_config(path)
    catalog = load_catalog(config.catalog)
    check_catalog_covers(config, catalog, path)
    loaded, errors = load_directory(config.playbooks.directory, action_specs(config))
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return EXIT_INVALID
    for warning in catalog_playbook_warnings(catalog, {item.playbook.id for item in loaded}):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{path}: ok ({len(config.components)} components, {len(catalog.errors)} catalog entries,"
        f" {len(loaded)} playbooks)"
    )
    return EXIT_OK


def _validate_playbooks(paths: Sequence[Path]) -> int:
    loaded, errors = load_files(paths, action_specs())
    for item in loaded:
        print(
            f"{item.file}: ok ({item.playbook.id} {item.playbook.version},"
            f" {len(item.playbook.steps)} steps)"
        )
    for error in errors:
        print(error, file=sys.stderr)
    return EXIT_INVALID if errors else EXIT_OK


async def _playbook_store(args: argparse.Namespace, config: SupervisorConfig) -> int:
    """Playbook versions in and out of the store, as YAML."""
    from graylogic_supervisor.clock import SystemClock
    from graylogic_supervisor.operator_cli import default_actor
    from graylogic_supervisor.store.audit import AuditLog
    from graylogic_supervisor.store.database import Database
    from graylogic_supervisor.store.versions import PlaybookVersions

    clock = SystemClock()
    async with Database(config.database_path) as db:
        versions = PlaybookVersions(db)
        if args.playbook_command == "export":
            version = args.version or await versions.active_version(args.playbook_id)
            source = await versions.source_yaml(args.playbook_id, version) if version else None
            if source is None:
                print(f"no version {version or '(active)'} of {args.playbook_id}", file=sys.stderr)
                return EXIT_INVALID
            print(source, end="" if source.endswith("\n") else "\n")
            return EXIT_OK
        item = load_playbook(args.file, action_specs())
        by = args.by or default_actor()
        outcome = await versions.seed(
            item.playbook, item.source, f"import by {by}: {args.reason}", clock.now()
        )
        await AuditLog(db).append(
            by,
            "playbook.import",
            item.playbook.id,
            {"version": item.playbook.version, "outcome": outcome.action, "reason": args.reason},
            now=clock.now(),
        )
        active = await versions.active_version(item.playbook.id)
        print(f"{item.playbook.id} {item.playbook.version}: {outcome.action}; active {active}")
        return EXIT_OK


def _dry_run(args: argparse.Namespace) -> int:
    from graylogic_supervisor.engine.dryrun import (
        DryRunError,
        dry_run,
        format_report,
        parse_outcomes,
    )

    # The simulated run logs as a real one would (a raised stand-in, an escalation);
    # those lines describe nothing that happened, and the report is the output.
    logging.getLogger("graylogic_supervisor").addHandler(logging.NullHandler())
    try:
        report = asyncio.run(dry_run(args.file, parse_outcomes(args.outcome), args.history))
    except DryRunError as exc:
        print(f"dry-run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(format_report(report))
    return EXIT_OK


async def _executions(args: argparse.Namespace) -> int:
    from graylogic_supervisor.store.database import Database
    from graylogic_supervisor.store.executions import ExecutionRepository

    config = _load(args.config)
    if not config.database_path.exists():
        print(f"no database at {config.database_path} yet", file=sys.stderr)
        return EXIT_INVALID
    async with Database(config.database_path) as db:
        repository = ExecutionRepository(db)
        if args.executions_command == "list":
            for row in await repository.recent(args.limit, args.status):
                duration = (
                    "" if row["duration_seconds"] is None else f"{row['duration_seconds']:.3f}s"
                )
                print(
                    f"{row['id']}  {row['started_at']}"
                    f"  {row['playbook_id']} {row['playbook_version']}"
                    f"  {row['component']}  {row['status']}  {duration}  {row['resolved_by'] or ''}"
                )
            return EXIT_OK
        record = await repository.record(args.execution_id)
    if record is None:
        print(f"no execution {args.execution_id}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(yaml.safe_dump({"execution_record": record}, sort_keys=False), end="")
    return EXIT_OK
