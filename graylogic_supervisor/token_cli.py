"""``user token create|list|revoke``: API tokens for scripts (see ``store/tokens.py``).

The token is printed once, alone on stdout, so a script can capture it
(``TOKEN=$(graylogic-supervisor user token create NAME --label ci)``); what it is
for goes to stderr. Making and revoking a token name who did it (``--by``, default
the login name) in the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.operator_cli import default_actor
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.tokens import MAX_LABEL, TokenRepository
from graylogic_supervisor.store.users import UserError

EXIT_OK, EXIT_INVALID = 0, 1
MAX_DAYS = 3650


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"not a number of days from 1 to {MAX_DAYS}: {text!r}")
    return days


def add_token_commands(
    user_commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    token = user_commands.add_parser(
        "token",
        help="API tokens for scripts: create, list, revoke",
        description=(
            "API tokens let a script call /api/v1 (and /metrics) as a user, with the user's"
            " role: send 'Authorization: Bearer TOKEN'. Only a hash is stored; the token is"
            " shown once. A disabled user's tokens stop working."
        ),
    )
    commands = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = commands.add_parser(
        "create",
        help="make a token for a user and print it once",
        description="Make a token for NAME and print it once, alone on stdout.",
    )
    config_option(create)
    create.add_argument("name", help="the user it acts as")
    create.add_argument(
        "--label", required=True, help=f"what it is for (1 to {MAX_LABEL} characters)"
    )
    create.add_argument(
        "--expires-days",
        type=_days,
        default=None,
        metavar="N",
        help=f"it stops working after N days (1 to {MAX_DAYS}; default: until revoked)",
    )
    create.add_argument("--by", default=None, help="who makes it (default: login name)")
    listing = commands.add_parser("list", help="tokens, newest first (never the tokens themselves)")
    config_option(listing)
    listing.add_argument("name", nargs="?", default=None, help="only this user's")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = commands.add_parser("revoke", help="stop a token from working, at once")
    config_option(revoke)
    revoke.add_argument("token_id", metavar="ID", help="the token's id (tok-…), from list")
    revoke.add_argument("--by", default=None, help="who revokes it (default: login name)")


async def run_token_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    clock = SystemClock()
    async with Database(config.database_path) as db:
        tokens, audit = TokenRepository(db), AuditLog(db)
        try:
            if args.token_action == "create":  # noqa: S105  # nosec B105: a subcommand
                lifetime = None if args.expires_days is None else timedelta(days=args.expires_days)
                secret, made = await tokens.create(
                    args.name,
                    args.label,
                    by=args.by or default_actor(),
                    now=clock.now(),
                    lifetime=lifetime,
                    audit=audit,
                )
                print(secret)
                print(
                    f"token {made.id} for {made.user} ({made.label}),"
                    f" {'expires ' + made.expires_at if made.expires_at else 'until revoked'};"
                    " shown once: keep it now",
                    file=sys.stderr,
                )
                return EXIT_OK
            if args.token_action == "revoke":  # noqa: S105  # nosec B105: a subcommand
                revoked = await tokens.revoke(
                    args.token_id, by=args.by or default_actor(), now=clock.now(), audit=audit
                )
                print(f"token {revoked.id} of {revoked.user} ({revoked.label}) revoked")
                return EXIT_OK
        except UserError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        now = clock.now()
        for token in await tokens.list(args.name):
            if args.json:
                print(json.dumps({**asdict(token), "state": token.state(now)}))
            else:
                print(
                    f"{token.id}  {token.user}  {token.label!r}  created {token.created_at}"
                    f" by {token.created_by}  expires {token.expires_at or 'never'}"
                    f"  {token.state(now)}"
                )
        return EXIT_OK
