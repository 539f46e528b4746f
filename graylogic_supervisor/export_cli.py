"""``executions export``: the event log in bulk, for integrators and process mining.

Read from the store in pages and written as it is read, so a store of any size
exports in flat memory. To a file (``--out``) the export is written beside it and
renamed into place only when complete: a reader never sees half an export.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.export import FORMATS, write_events
from graylogic_supervisor.operator_cli import parse_time
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.export import EventFilter, EventLog

EXIT_OK, EXIT_INVALID = 0, 1


def add_export_command(
    exec_commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    export = exec_commands.add_parser(
        "export",
        help="write every recorded step as an event: CSV, JSON lines or XES",
        description=(
            "Write the event log: one event per recorded step attempt, oldest execution"
            " first. Columns: case_id (the execution), seq (order within it), activity (the"
            " step id; a compensation is STEP:compensate), name, action, target, attempt,"
            " start, end, duration_seconds, outcome, error, playbook_id, playbook_version,"
            " component, error_id, case_status. XES (IEEE 1849) puts each execution in a"
            " trace and reads in process-mining tools such as PM4Py. Times are UTC."
        ),
    )
    config_option(export)
    export.add_argument("--format", choices=FORMATS, required=True, help="the file format")
    export.add_argument(
        "--since",
        type=parse_time,
        default=None,
        metavar="DATE",
        help="executions started at or after (ISO 8601; no zone: local time)",
    )
    export.add_argument(
        "--until",
        type=parse_time,
        default=None,
        metavar="DATE",
        help="executions started at or before (ISO 8601; no zone: local time)",
    )
    export.add_argument("--playbook", default=None, metavar="ID", help="one playbook's executions")
    export.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write here (default: stdout)"
    )


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else isoformat(moment)


async def run_export(args: argparse.Namespace, config: SupervisorConfig) -> int:
    if not config.database_path.exists():
        print(f"no database at {config.database_path} yet", file=sys.stderr)
        return EXIT_INVALID
    chosen = EventFilter(since=_stamp(args.since), until=_stamp(args.until), playbook=args.playbook)
    async with Database(config.database_path) as db:
        events = EventLog(db).stream(chosen)
        if args.out is None:
            try:
                count = await write_events(events, sys.stdout, args.format)
                sys.stdout.flush()
            except BrokenPipeError:  # the reader stopped (``| head``): not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return EXIT_OK
        else:
            partial = args.out.with_name(f".{args.out.name}.partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    count = await write_events(events, out, args.format)
                partial.replace(args.out)
            finally:
                partial.unlink(missing_ok=True)
    print(f"exported {count} events", file=sys.stderr)
    return EXIT_OK
