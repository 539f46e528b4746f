"""The operator's commands: safe mode, maintenance windows, escalations, the audit log.

They act on the store, which the running daemon reads before every decision,
so they work whether the daemon runs or not. Every change names who made it
(``--by``, default the login name) and goes into the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.store.audit import AuditLog, ChainCheck
from graylogic_supervisor.store.audit_head import ChainHead, HeadFileError, parse_head
from graylogic_supervisor.store.commands import ALL, CommandRepository
from graylogic_supervisor.store.controls import SITE, ControlRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository

EXIT_OK, EXIT_INVALID = 0, 1
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` → seconds."""
    match = DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without a zone is the site's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (e.g. 2026-11-26T08:00)") from exc
    return moment if moment.tzinfo else moment.astimezone()


def default_actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def add_operator_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    def by_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--by", default=None, help="who does this, for the audit log (default: login name)"
        )

    safe = commands.add_parser(
        "safe-mode",
        help="show, enter or leave safe mode",
        description=(
            "In safe mode automatic recovery stops except for the essentials"
            " (policy.essentials). The supervisor enters it on its own after a burst of"
            " failures; only a person leaves it."
        ),
    )
    safe_commands = safe.add_subparsers(dest="safe_command", required=True, metavar="ACTION")
    for name, text in (
        ("status", "is safe mode on, since when and why"),
        ("enter", "enter safe mode by hand"),
        ("leave", "leave safe mode: automatic recovery resumes"),
    ):
        sub = safe_commands.add_parser(name, help=text)
        config_option(sub)
        if name != "status":
            by_option(sub)
            sub.add_argument("--reason", required=True, help="why, for the audit log")

    maintenance = commands.add_parser(
        "maintenance",
        help="hold automatic recovery while an installer works",
        description=(
            "During a maintenance window automatic recovery of the component (or of the whole"
            " site) is held and its failures are recorded as expected. The window ends on its"
            " own; both ends go into the audit log."
        ),
    )
    maintenance_commands = maintenance.add_subparsers(
        dest="maintenance_command", required=True, metavar="ACTION"
    )
    start = maintenance_commands.add_parser("start", help="open a window")
    config_option(start)
    by_option(start)
    start.add_argument("component", help="a component name, or 'site' for everything")
    start.add_argument(
        "--for", dest="duration", type=parse_duration, required=True, help="e.g. 30m, 2h, 1d"
    )
    start.add_argument("--reason", required=True, help="what is being done")
    end = maintenance_commands.add_parser("end", help="close a window early")
    config_option(end)
    by_option(end)
    end.add_argument("window_id")
    listing = maintenance_commands.add_parser("list", help="recent and current windows")
    config_option(listing)

    escalation = commands.add_parser(
        "escalation", help="list escalations, acknowledge one (no further level is sent)"
    )
    escalation_commands = escalation.add_subparsers(
        dest="escalation_command", required=True, metavar="ACTION"
    )
    recent = escalation_commands.add_parser("list", help="recent escalations, newest first")
    config_option(recent)
    recent.add_argument("--limit", type=int, default=20)
    ack = escalation_commands.add_parser("ack", help="acknowledge: you have taken it")
    config_option(ack)
    by_option(ack)
    ack.add_argument("escalation_id")

    audit = commands.add_parser("audit", help="read and verify the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser(
        "verify",
        help="recompute the hash chain (the archive segments in <state_dir>/audit-archive,"
        " then the live entries from the archive's anchor) and hold it against its head"
        " file; exit 1 if broken, or if a segment is changed or missing",
    )
    config_option(verify)
    verify.add_argument(
        "--expect-head",
        action="append",
        default=[],
        type=_head_argument,
        metavar="HEAD",
        help="a head recorded elsewhere, e.g. the retained {root}/supervisor/audit/head"
        " message (its JSON, or SEQ:HASH); the store must reach it and carry its hash",
    )
    show = audit_commands.add_parser("list", help="the newest entries")
    config_option(show)
    show.add_argument("--limit", type=int, default=30)
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.add_argument(
        "--since", type=parse_time, help="from this time (ISO 8601, e.g. 2026-11-26T08:00)"
    )
    show.add_argument("--until", type=parse_time, help="before this time (ISO 8601)")
    show.add_argument("--actor", help="only this actor (a person, or 'supervisor')")
    show.add_argument(
        "--action", help="only this action, or a prefix ending in '.' (e.g. 'memory.')"
    )


async def run_operator_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    clock = SystemClock()
    by = getattr(args, "by", None) or default_actor()
    async with Database(config.database_path) as db:
        audit = AuditLog(db)
        controls = ControlRepository(db, audit)
        if args.command == "safe-mode":
            if args.safe_command == "status":
                state = await controls.safe_mode()
                if state.active:
                    print(f"safe mode ON since {state.since} ({state.reason}, {state.changed_by})")
                else:
                    print("safe mode off")
                return EXIT_OK
            entering = args.safe_command == "enter"
            changed = await controls.set_safe_mode(entering, args.reason, by, clock.now())
            word = "entered" if entering else "left"
            print(
                f"safe mode {word}"
                if changed
                else f"safe mode was already {'on' if entering else 'off'}"
            )
            return EXIT_OK
        if args.command == "maintenance":
            if args.maintenance_command == "start":
                component = SITE if args.component == "site" else args.component
                if component != SITE and component not in config.components:
                    known = ", ".join(config.components) or "none"
                    print(
                        f"unknown component {component!r} (known: {known}, or 'site')",
                        file=sys.stderr,
                    )
                    return EXIT_INVALID
                window = await controls.start_maintenance(
                    component, args.duration, args.reason, by=by, now=clock.now()
                )
                print(f"{window}: maintenance of {args.component} for {args.duration:g} s")
                return EXIT_OK
            if args.maintenance_command == "end":
                if await controls.end_maintenance(args.window_id, by, clock.now()):
                    print(f"{args.window_id} ended")
                    return EXIT_OK
                print(f"no current window {args.window_id}", file=sys.stderr)
                return EXIT_INVALID
            for row in await controls.windows():
                state = "ended " + row["ended_at"] if row["ended_at"] else "until " + row["ends_at"]
                scope = "site" if row["component"] == SITE else row["component"]
                print(
                    f"{row['id']}  {scope}  {row['starts_at']}  {state}"
                    f"  {row['created_by']}: {row['reason']}"
                )
            return EXIT_OK
        if args.command == "escalation":
            return await _escalation_command(args, EscalationRepository(db, audit), by)
        if args.audit_command == "verify":
            return _report_check(
                await audit.verify([("the expected head", head) for head in args.expect_head])
            )
        entries = await audit.entries(
            limit=args.limit,
            actor=args.actor,
            action=args.action,
            since=args.since,
            until=args.until,
        )
        for row in reversed(entries):
            if args.json:
                print(json.dumps(dict(zip(row.keys(), tuple(row), strict=True))))
            else:
                print(
                    f"{row['seq']:>6}  {row['at']}  {row['actor']}  {row['action']}"
                    f"  {row['subject']}  {row['detail']}"
                )
        return EXIT_OK


def _head_argument(text: str) -> ChainHead:
    try:
        return parse_head(text)
    except HeadFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _report_check(check: ChainCheck) -> int:
    """Exit 1 for tampering, and for a head that could not be checked: a verification
    that cannot rule out a deleted tail has not verified."""
    for warning in check.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if not check.ok:
        where = f" at entry {check.first_bad_seq}" if check.first_bad_seq else ""
        print(f"audit log BROKEN{where}: {check.problem}", file=sys.stderr)
        return EXIT_INVALID
    print(f"audit log ok: {check.entries} entries, chain intact")
    if check.head is not None:
        print(f"head: {json.dumps(check.head.as_json())}")
    for note in check.notes:
        print(f"note: {note}")
    return EXIT_OK if not check.warnings else EXIT_INVALID


async def _escalation_command(
    args: argparse.Namespace, escalations: EscalationRepository, by: str
) -> int:
    if args.escalation_command == "ack":
        if await escalations.acknowledge(args.escalation_id, by, SystemClock().now()):
            print(f"{args.escalation_id} acknowledged by {by}")
            return EXIT_OK
        print(f"no unacknowledged escalation {args.escalation_id}", file=sys.stderr)
        return EXIT_INVALID
    for row in await escalations.recent(args.limit):
        if row["closed_at"]:
            state = f"closed {row['closed_at']}"
        elif row["acknowledged_by"]:
            state = f"acked by {row['acknowledged_by']} {row['acknowledged_at']}"
        else:
            state = "OPEN"
        level = "none yet" if row["level"] < 0 else str(row["level"])
        print(
            f"{row['id']}  {row['raised_at']}  {row['component']}  {row['severity']}"
            f"  level {level}  {state}  {row['message']}"
        )
    return EXIT_OK


CONTROL_COMMANDS = ("pause", "resume", "cancel", "override")
RESULT_WAIT_S = 3.0


def add_execution_control(
    exec_commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``executions pause|resume|cancel|override`` and ``emergency-stop``: for the daemon."""
    texts = {
        "pause": "pause a running execution after its current step",
        "resume": "resume a paused execution",
        "cancel": "cancel a running execution; its completed steps are undone",
        "override": "mark a running step succeeded or failed (it stops at once)",
    }
    for name, text in texts.items():
        sub = exec_commands.add_parser(name, help=text)
        config_option(sub)
        sub.add_argument("execution_id")
        if name == "override":
            sub.add_argument("step_id", help="the step that is running")
            sub.add_argument("--outcome", choices=["success", "failure"], required=True)
        sub.add_argument("--reason", required=True, help="why, for the audit log")
        sub.add_argument("--by", default=None, help="who (default: login name)")
    stop = commands.add_parser(
        "emergency-stop",
        help="cancel every running execution and enter safe mode",
        description="Cancels every running execution (their completed steps are undone) and"
        " enters safe mode, so nothing new starts until someone leaves it.",
    )
    config_option(stop)
    stop.add_argument("--reason", required=True)
    stop.add_argument("--by", default=None)


async def run_control_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    """Queue the command for the daemon, then wait briefly to say what it did."""
    clock = SystemClock()
    by = args.by or default_actor()
    async with Database(config.database_path) as db:
        commands = CommandRepository(db)
        if args.command == "emergency-stop":
            command_id = await commands.issue(
                ALL, "emergency_stop", by, args.reason, now=clock.now()
            )
        else:
            command_id = await commands.issue(
                args.execution_id,
                args.executions_command,
                by,
                args.reason,
                now=clock.now(),
                step_id=getattr(args, "step_id", None),
                outcome=getattr(args, "outcome", None),
            )
        for _ in range(int(RESULT_WAIT_S / 0.1)):
            result = await commands.result(command_id)
            if result is not None:
                print(result)
                return EXIT_OK
            await clock.sleep(0.1)
    print(
        f"queued (command {command_id}); no running daemon applied it within {RESULT_WAIT_S:g} s",
        file=sys.stderr,
    )
    return EXIT_INVALID
