"""``backup`` and ``restore``: a copy of the store taken while the daemon runs, and
put back once it checks out (``store/backup.py``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.operator_cli import default_actor
from graylogic_supervisor.store.backup import RestoreRefused, backup, restore, timestamp

EXIT_OK, EXIT_INVALID = 0, 1
BACKUP_COMMANDS = ("backup", "restore")


def add_backup_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    save = commands.add_parser(
        "backup",
        help="copy the store to a file, safely while the daemon runs",
        description=(
            "Copy the store (playbook versions, failure memory, users, audit log, records)"
            " through SQLite's online backup API: one consistent snapshot, taken while the"
            " daemon goes on writing. The audit chain's head is written beside the copy"
            " (FILE.audit-head). Prints the file, its size and the time taken."
        ),
    )
    config_option(save)
    save.add_argument(
        "--to",
        type=Path,
        default=None,
        metavar="PATH",
        help="the backup file, or a directory to put it in"
        " (default: STATE_DIR/backups/store-<UTC timestamp>.db)",
    )

    put_back = commands.add_parser(
        "restore",
        help="replace the store with a backup, once the backup checks out",
        description=(
            "Check the backup (SQLite integrity check, then the audit chain as `audit verify`"
            " does) and only then replace the store with it. Refused while a daemon runs on"
            " the state directory: stop it first. The old store is kept beside it as"
            " NAME.before-restore-<UTC timestamp> (with its WAL and audit head). The restore"
            " goes into the restored audit log."
        ),
    )
    config_option(put_back)
    put_back.add_argument("path", type=Path, help="the backup file")
    put_back.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (for scripts)"
    )
    put_back.add_argument(
        "--by", default=None, help="who restores, for the audit log (default: login name)"
    )


def run_backup_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    if args.command == "backup":
        return _backup(args.to, config)
    return _restore(args, config)


def _backup(to: Path | None, config: SupervisorConfig) -> int:
    name = f"store-{timestamp(SystemClock().now())}.db"
    folder = config.state_dir / "backups" if to is None else to
    dest = folder / name if to is None or to.is_dir() else to
    try:
        result = backup(config.database_path, dest)
    except StoreError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_INVALID
    head = "" if result.audit_head is None else f", audit head {result.audit_head.seq}"
    print(f"{result.path}  {result.size} bytes  {result.seconds:.2f}s{head}")
    return EXIT_OK


def _restore(args: argparse.Namespace, config: SupervisorConfig) -> int:
    db_path: Path = config.database_path
    if not args.yes:
        print(
            f"Replace {db_path} with {args.path}? The current store is kept beside it."
            " Type 'yes' to go on: ",
            end="",
            flush=True,
        )
        answer = sys.stdin.readline().strip().lower()
        if answer != "yes":
            print("restore: not confirmed, nothing changed", file=sys.stderr)
            return EXIT_INVALID
    try:
        restored = asyncio.run(
            restore(
                args.path,
                db_path,
                state_dir=config.state_dir,
                now=SystemClock().now(),
                actor=args.by or default_actor(),
            )
        )
    except RestoreRefused as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in restored.check.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    kept = f"; the old store is kept as {restored.kept}" if restored.kept else ""
    print(
        f"restored {db_path} from {args.path}: integrity ok,"
        f" audit chain ok ({restored.check.entries} entries){kept}"
    )
    return EXIT_OK
