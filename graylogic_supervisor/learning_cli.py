"""Commands for the learning loop: ``analyze``, ``recommendations …``, ``rollbacks
list|show``, ``trials list|show|stop``, ``playbook versions|diff|rollback|metrics``,
``user …`` and ``simulate``.

Deciding a recommendation or rolling back needs a user with the ``admin`` or
``system_owner`` role (``user add``); every decision goes to the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.domain.states import VersionStatus
from graylogic_supervisor.engine.plugins import action_specs
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.changes import change_from_yaml
from graylogic_supervisor.learning.draft_steps import draft_site
from graylogic_supervisor.learning.drafts import NO_BASE
from graylogic_supervisor.learning.reasons import analysis_lines
from graylogic_supervisor.learning.service import LearningService
from graylogic_supervisor.operator_cli import default_actor
from graylogic_supervisor.passwords import PasswordPool
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.sessions import SessionRepository
from graylogic_supervisor.store.users import ROLES, UserRepository, forget_first_admin_password
from graylogic_supervisor.store.versions import PlaybookVersions
from graylogic_supervisor.token_cli import add_token_commands

EXIT_OK, EXIT_INVALID = 0, 1
ANALYZE_ACTIONS = ("run", "list", "show")
STATUSES = ("pending", "approved", "rejected", "archived", "superseded", "all")
TRIAL_STATUSES = ("running", "promoted", "dropped", "all")
LEARNING_PLAYBOOK_COMMANDS = ("versions", "diff", "rollback", "metrics")


def add_learning_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    playbook_commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="run the learning analysis now and store what it recommends",
        description=(
            "Analyse each active playbook's recorded executions: low-success steps, steps"
            " that never help, bottlenecks, better orders, skip conditions, missing steps,"
            " timeout and retry tuning. A change is recommended only when replaying the"
            " recorded executions shows it lowers the expected resolution time, with at least"
            " learning.min_executions executions and learning.confidence_threshold. Every"
            " change considered is kept in the analysis's report with its verdict:"
            " `analyze list`, `analyze show ID` (and the admin page's Analyses)."
        ),
        usage="%(prog)s [run | list | show ID] [options]",
    )
    config_option(analyze)
    analyze.add_argument(
        "action",
        nargs="?",
        choices=ANALYZE_ACTIONS,
        default="run",
        help="run (the default): analyse now and store the report; list: the stored"
        " analyses, newest first; show ID: one analysis's findings and every change it"
        " considered, with its verdict and figures",
    )
    analyze.add_argument("analysis_id", nargs="?", help="the analysis to show (show only)")
    analyze.add_argument("--playbook", action="append", help="run: only this playbook (repeatable)")
    analyze.add_argument(
        "--limit", type=int, default=20, help="list: how many analyses (default 20)"
    )
    analyze.add_argument(
        "--json", action="store_true", help="print the full report (or the list) as JSON"
    )

    recs = commands.add_parser(
        "recommendations", help="list, show, approve or reject recommended playbook changes"
    )
    rec_commands = recs.add_subparsers(dest="rec_command", required=True, metavar="ACTION")
    listing = rec_commands.add_parser("list", help="recommendations, newest first")
    config_option(listing)
    listing.add_argument("--status", choices=STATUSES, default="pending")
    listing.add_argument("--playbook", default=None)
    listing.add_argument("--json", action="store_true")
    show = rec_commands.add_parser(
        "show",
        help="one recommendation: change, evidence, expected impact, and the diff (a"
        " new_playbook: the drafted playbook and its dry run)",
        description="One recommendation: its change, evidence, expected impact and decision."
        " A new_playbook (a draft for a failure no playbook covers) shows the drafted"
        " playbook, the fixes people recorded behind it (who, how often each worked) and a"
        " dry run by the real engine: the check finds the failure, the first fix works;"
        " nothing is run or written.",
    )
    config_option(show)
    show.add_argument("recommendation_id")
    show.add_argument("--json", action="store_true")
    approve = rec_commands.add_parser(
        "approve",
        help="make the change a new active playbook version (or modify it first)",
        description=(
            "Approve as recommended, or give --change-file with the change edited (YAML or"
            " JSON, the shape `recommendations show` prints under recommendation); the"
            " changed playbook is validated before it is saved."
        ),
    )
    config_option(approve)
    approve.add_argument("recommendation_id")
    approve.add_argument("--by", default=None, help="an admin or system_owner (default: login)")
    approve.add_argument("--reason", default="", help="why, for the version and the audit log")
    approve.add_argument("--change-file", type=Path, default=None, help="the modified change")
    approve.add_argument(
        "--trial",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run it as a trial on a share of incidents, the active version staying"
        " (--no-trial: make it active at once; default: as the recommendation proposes)",
    )
    approve.add_argument(
        "--share", type=float, default=None, help="a trial's share (default learning.trial_share)"
    )
    reject = rec_commands.add_parser("reject", help="reject a recommendation, with a reason")
    config_option(reject)
    reject.add_argument("recommendation_id")
    reject.add_argument("--by", default=None, help="an admin or system_owner (default: login)")
    reject.add_argument("--reason", required=True)

    rollbacks = commands.add_parser(
        "rollbacks", help="list rollbacks, or show one's investigation report"
    )
    rb_commands = rollbacks.add_subparsers(dest="rb_command", required=True, metavar="ACTION")
    rb_list = rb_commands.add_parser("list", help="rollbacks, newest first")
    config_option(rb_list)
    rb_list.add_argument("--playbook", default=None)
    rb_list.add_argument("--json", action="store_true")
    rb_show = rb_commands.add_parser(
        "show",
        help="one rollback: versions, baseline and why, both tests, changes, approvals,"
        " step metrics, unresolved executions",
    )
    config_option(rb_show)
    rb_show.add_argument("rollback_id")
    rb_show.add_argument("--json", action="store_true")
    trials = commands.add_parser(
        "trials",
        help="trial versions: list them, show both arms' figures, stop one",
        description=(
            "A change approved as a trial runs on a share of incidents beside the active"
            " version until the statistics promote it (faster, success not lower) or drop it"
            " (worse, or not shown better after 8 x learning.min_executions executions)."
        ),
    )
    trial_commands = trials.add_subparsers(dest="trial_command", required=True, metavar="ACTION")
    trial_list = trial_commands.add_parser("list", help="trials, newest first")
    config_option(trial_list)
    trial_list.add_argument("--status", choices=TRIAL_STATUSES, default="all")
    trial_list.add_argument("--playbook", default=None)
    trial_list.add_argument("--json", action="store_true")
    trial_show = trial_commands.add_parser("show", help="one trial with both arms' figures")
    config_option(trial_show)
    trial_show.add_argument("trial_id")
    trial_show.add_argument("--json", action="store_true")
    trial_stop = trial_commands.add_parser("stop", help="end a running trial; the base stays")
    config_option(trial_stop)
    trial_stop.add_argument("trial_id")
    trial_stop.add_argument("--by", default=None, help="an admin or system_owner (default: login)")
    trial_stop.add_argument("--reason", required=True)

    versions = playbook_commands.add_parser(
        "versions", help="a playbook's versions: status, who approved what and why"
    )
    config_option(versions)
    versions.add_argument("playbook_id")
    diff = playbook_commands.add_parser("diff", help="the difference between two versions")
    config_option(diff)
    diff.add_argument("playbook_id")
    diff.add_argument("old")
    diff.add_argument("new")
    rollback = playbook_commands.add_parser(
        "rollback", help="re-activate an earlier version of a playbook"
    )
    config_option(rollback)
    rollback.add_argument("playbook_id")
    rollback.add_argument(
        "--to",
        required=True,
        dest="to_version",
        help="the version; 'none' retires a drafted playbook's first version (its failures"
        " are escalated at once again)",
    )
    rollback.add_argument("--by", default=None, help="an admin or system_owner (default: login)")
    rollback.add_argument("--reason", required=True)
    metrics = playbook_commands.add_parser(
        "metrics", help="per-version, per-step and path metrics (default: the active version)"
    )
    config_option(metrics)
    metrics.add_argument("playbook_id")
    metrics.add_argument("--version", default=None)
    metrics.add_argument("--json", action="store_true")

    user = commands.add_parser("user", help="people who may approve changes and use the admin page")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_commands.add_parser(
        "add", help="add a user; without --password-stdin a random password is printed once"
    )
    config_option(add)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = user_commands.add_parser(
        "passwd", help="set a user's password (ends the user's admin page sessions)"
    )
    config_option(passwd)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    users = user_commands.add_parser("list", help="users and their roles")
    config_option(users)
    unlock = user_commands.add_parser(
        "unlock",
        help="forget a user's failed logins, so the login limit no longer refuses them",
    )
    config_option(unlock)
    unlock.add_argument("name")
    unlock.add_argument("--address", default=None, help="only those from this address")
    for action, text in (
        ("disable", "refuse a user's logins and end the user's sessions"),
        ("enable", "let a disabled user log in again"),
    ):
        toggle = user_commands.add_parser(action, help=text)
        config_option(toggle)
        toggle.add_argument("name")
    add_token_commands(user_commands, config_option)

    simulate = commands.add_parser(
        "simulate",
        help="run a scenario's incidents through the engine and the learning loop",
        description=(
            "Runs rounds of incidents drawn from SCENARIO (see tests/scenarios/FORMAT.md) through"
            " the real engine on a virtual clock, in a scratch store; after each round the"
            " learning analysis runs and, with --auto-approve, every recommendation at or"
            " above the confidence threshold is approved. The same seed gives the same report."
        ),
    )
    simulate.add_argument("scenario", type=Path)
    simulate.add_argument("--incidents", type=int, default=200, help="per round (default 200)")
    simulate.add_argument("--rounds", type=int, default=5, help="default 5")
    simulate.add_argument("--seed", type=int, default=0, help="default 0")
    simulate.add_argument("--auto-approve", action="store_true")
    simulate.add_argument(
        "--confidence-threshold", type=float, default=None, help="default: the config's (0.8)"
    )
    simulate.add_argument("--json", action="store_true", help="print the JSON report")
    simulate.add_argument(
        "--store",
        type=Path,
        default=None,
        help="keep the simulation's store in this new file (default: in memory, discarded)",
    )
    config_option(simulate)


def run_simulate(args: argparse.Namespace, config: SupervisorConfig) -> int:
    from graylogic_supervisor.sim.scenario import load_scenario
    from graylogic_supervisor.sim.simulator import SimulationOptions, cron_interval_s, simulate

    if args.incidents < 1 or args.rounds < 1:
        print("--incidents and --rounds must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    scenario = load_scenario(args.scenario, config.playbooks.directory)
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)  # one line per step else
    options = SimulationOptions(
        incidents=args.incidents,
        rounds=args.rounds,
        seed=args.seed,
        auto_approve=args.auto_approve,
        confidence_threshold=args.confidence_threshold or config.learning.confidence_threshold,
        min_executions=config.learning.min_executions,
        analysis_interval_s=cron_interval_s(
            config.learning.analysis_cron, config.learning.timezone
        ),
        store=args.store,
    )
    if args.store is not None and args.store.exists():
        print(f"{args.store} exists: give a new file for the simulation's store", file=sys.stderr)
        return EXIT_INVALID
    report = asyncio.run(simulate(scenario, options))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"{report['scenario']} (seed {report['seed']})")
    for entry in report["rounds"]:
        print(
            f"round {entry['round']}: {entry['playbook_version']}  success"
            f" {entry['success_rate']:.1%}  mttr {entry['mttr_s']:.1f} s"
            f"  p95 {entry['p95_s']:.1f} s"
            + (f"  rolled back to {entry['rolled_back_to']}" if entry["rolled_back_to"] else "")
        )
        for rec in entry["recommendations"]:
            mark = "approved" if rec["approved"] else "pending"
            print(f"    [{mark}] {rec['type']} ({rec['confidence']:.2f}): {rec['summary']}")
    print(f"final version {report['final_version']}")
    return EXIT_OK


async def run_learning_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    clock = SystemClock()
    async with Database(config.database_path) as db:
        versions = PlaybookVersions(db)
        service = LearningService(
            db,
            versions,
            AuditLog(db),
            action_specs(),
            settings=config.learning,
            clock=clock,
            site=draft_site(config),
        )
        try:
            if args.command == "analyze":
                return await _analyze(service, args)
            if args.command == "recommendations":
                return await _recommendations(service, args)
            if args.command == "rollbacks":
                return await _rollbacks(service, args)
            if args.command == "trials":
                return await _trials(service, args)
            if args.command == "user":
                async with PasswordPool() as passwords:
                    return await _user(
                        UserRepository(db, passwords), db, args, clock, state_dir=config.state_dir
                    )
            return await _playbook(service, versions, args)
        except SupervisorError as exc:
            print(f"graylogic-supervisor: {exc}", file=sys.stderr)
            return EXIT_INVALID


async def _analyze(service: LearningService, args: argparse.Namespace) -> int:
    if args.action != "show" and args.analysis_id is not None:
        print(f"analyze {args.action} takes no analysis id", file=sys.stderr)
        return EXIT_INVALID
    if args.action == "list":
        return await _analyses(service, args)
    if args.action == "show":
        return await _show_analysis(service, args)
    report = await service.analyze("cli", args.playbook)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    for playbook in report["playbooks"]:
        print(
            f"{playbook['playbook_id']} {playbook['version']}: {playbook['executions']} executions"
        )
        if playbook["note"]:
            print(f"  {playbook['note']}")
        for name, items in playbook["findings"].items():
            if items:
                print(f"  {name.replace('_', ' ')}: {json.dumps(items)}")
        for summary in playbook["recommended"]:
            print(f"  recommended: {summary}")
        print(f"  {len(playbook['considered'])} changes considered (analyze show {report['id']})")
    for draft in report["drafts"]:  # failures no playbook covers
        print(f"draft for {draft['error_id']} on {draft['component']}: {draft['verdict']}")
    print(f"{len(report['recommendations'])} new recommendations ({report['id']})")
    return EXIT_OK


async def _analyses(service: LearningService, args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("--limit must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    runs = await service.analyses.listing(args.limit)
    if args.json:
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    for run in runs:
        print(
            f"{run['id']}  {run['finished_at']}  {run['trigger']:10s} {run['playbooks']}"
            f" playbooks, {run['recommendations']} new recommendations"
        )
    if not runs:
        print("no analyses")
    return EXIT_OK


async def _show_analysis(service: LearningService, args: argparse.Namespace) -> int:
    if args.analysis_id is None:
        print("analyze show needs an analysis id (see: analyze list)", file=sys.stderr)
        return EXIT_INVALID
    found = await service.analyses.get(args.analysis_id)
    if found is None:
        print(f"no analysis {args.analysis_id}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    for line in analysis_lines(found):
        print(line)
    return EXIT_OK


async def _recommendations(service: LearningService, args: argparse.Namespace) -> int:
    if args.rec_command == "list":
        status = None if args.status == "all" else args.status
        recs = await service.store.listing(status, args.playbook)
        if args.json:
            print(json.dumps([r.as_dict() for r in recs], indent=2))
            return EXIT_OK
        for rec in recs:
            print(
                f"{rec.id}  {rec.status:10s} {rec.priority:6s} {rec.confidence:.2f}"
                f" (n={rec.sample_size})  {rec.playbook_id} {rec.base_version}  {rec.summary}"
                + ("  [trial proposed]" if rec.trial else "")
            )
        if not recs:
            print("no recommendations")
        return EXIT_OK
    if args.rec_command == "show":
        found = await service.store.get(args.recommendation_id)
        if found is None:
            print(f"no recommendation {args.recommendation_id}", file=sys.stderr)
            return EXIT_INVALID
        data = found.as_dict()
        from graylogic_supervisor.draft_review import draft_dry_run  # a draft's only

        walked = await draft_dry_run(found.change)
        if args.json:
            print(json.dumps({**data, "dry_run": walked} if walked else data, indent=2))
            return EXIT_OK
        print(yaml.safe_dump(data, sort_keys=False), end="")
        if walked is not None:
            print("dry_run: |  # the check finds the failure, the first fix works")
            print("\n".join(f"  {line}" for line in walked.splitlines()))
        return EXIT_OK
    by = args.by or default_actor()
    if args.rec_command == "approve":
        change = _read_change(args.change_file) if args.change_file else None
        version = await service.approve(
            args.recommendation_id, by, args.reason, change, trial=args.trial, share=args.share
        )
        decided = await service.store.get(args.recommendation_id)
        assert decided is not None  # it was just approved
        trial = await service.trials.running_as(decided.playbook_id, version)
        if trial is None:
            print(f"{args.recommendation_id}: approved by {by}; version {version} is active")
        else:
            print(
                f"{args.recommendation_id}: approved by {by} as a trial; version {version} runs"
                f" on {trial.share:.0%} of incidents beside {trial.base_version} ({trial.id})"
            )
        return EXIT_OK
    await service.reject(args.recommendation_id, by, args.reason)
    print(f"{args.recommendation_id}: rejected by {by}")
    return EXIT_OK


async def _rollbacks(service: LearningService, args: argparse.Namespace) -> int:
    if args.rb_command == "list":
        found = await service.store.rollbacks(args.playbook)
        if args.json:
            print(json.dumps(found, indent=2))
            return EXIT_OK
        for rb in found:
            print(
                f"{rb['id']}  {rb['at']}  {rb['playbook_id']} {rb['from_version']} ->"
                f" {rb['to_version']}  by {rb['by']}: {rb['reason']}"
            )
        if not found:
            print("no rollbacks")
        return EXIT_OK
    report = await service.store.rollback(args.rollback_id)
    if report is None:
        print(f"no rollback {args.rollback_id}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(yaml.safe_dump(report, sort_keys=False), end="")
    return EXIT_OK


async def _trials(service: LearningService, args: argparse.Namespace) -> int:
    if args.trial_command == "list":
        status = None if args.status == "all" else args.status
        trials = await service.trials.store.listing(status, args.playbook)
        if args.json:
            print(json.dumps([t.as_dict() for t in trials], indent=2))
            return EXIT_OK
        for trial in trials:
            print(
                f"{trial.id}  {trial.status:9s} {trial.playbook_id} {trial.trial_version}"
                f" beside {trial.base_version} on {trial.share:.0%}  since {trial.started_at}"
                + (f": {trial.reason}" if trial.reason else "")
            )
        if not trials:
            print("no trials")
        return EXIT_OK
    found = await service.trials.store.get(args.trial_id)
    if found is None:
        print(f"no trial {args.trial_id}", file=sys.stderr)
        return EXIT_INVALID
    if args.trial_command == "show":
        data = await service.trials.report(found)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print(yaml.safe_dump(data, sort_keys=False), end="")
        return EXIT_OK
    by = args.by or default_actor()
    stopped = await service.stop_trial(args.trial_id, by, args.reason)
    print(f"{args.trial_id}: stopped by {by}; {stopped['active_version']} stays active")
    return EXIT_OK


def _read_change(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SupervisorError(f"{path}: cannot read the change: {exc}") from exc
    return change_from_yaml(text, path)


async def _user(
    users: UserRepository,
    db: Database,
    args: argparse.Namespace,
    clock: SystemClock,
    *,
    state_dir: Path,
) -> int:
    audit = AuditLog(db)
    command, name = args.user_command, str(getattr(args, "name", ""))
    if command == "list":
        for user in await users.all():
            state = " (disabled)" if user.disabled else ""
            print(f"{user.name}  {user.role}  since {user.created_at}{state}")
        return EXIT_OK
    if command == "unlock":
        forgotten = await SessionRepository(db).unlock(name, args.address)
        await audit.append(
            default_actor(),
            "user.unlock",
            name,
            {"address": args.address, "failures_forgotten": forgotten},
            now=clock.now(),
        )
        where = f" from {args.address}" if args.address else ""
        print(f"{forgotten} failed login(s) of {name}{where} forgotten")
        return EXIT_OK
    if command in ("disable", "enable"):
        ended = await users.set_disabled(name, command == "disable")
        await audit.append(
            default_actor(), f"user.{command}", name, {"sessions_ended": ended}, now=clock.now()
        )
        print(f"user {name} {command}d" + (f"; {ended} session(s) ended" if ended else ""))
        return EXIT_OK
    generated = not args.password_stdin
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else secrets.token_urlsafe(12)
    )
    if len(password) < 8:
        print("a password has at least 8 characters", file=sys.stderr)
        return EXIT_INVALID
    detail: dict[str, object] = {"role": getattr(args, "role", None)}
    if command == "add":
        await users.add_audited(
            name, args.role, password, by=default_actor(), now=clock.now(), audit=audit
        )
        message = f"user {name} added as {args.role}"
    else:
        ended = await users.set_password(name, password)
        detail["sessions_ended"] = ended
        message = f"password of {name} set" + (f"; {ended} session(s) ended" if ended else "")
        await audit.append(default_actor(), f"user.{command}", name, detail, now=clock.now())
        if name == "admin" and (removed := forget_first_admin_password(state_dir)):
            message += f"; {removed} removed (the first password no longer works)"
    print(message)
    if generated:
        print(f"password (shown once): {password}")
    return EXIT_OK


async def _playbook(
    service: LearningService, versions: PlaybookVersions, args: argparse.Namespace
) -> int:
    command = args.playbook_command
    if command == "versions":
        rows = await versions.versions_of(args.playbook_id)
        if not rows:
            print(f"no playbook {args.playbook_id}", file=sys.stderr)
            return EXIT_INVALID
        for row in rows:
            flags = ("active " if row["active"] else "") + (
                "FAILED " if row["status"] == VersionStatus.FAILED else ""
            )
            approved = f", approved by {row['approved_by']}" if row["approved_by"] else ""
            print(
                f"{row['version']:10s} {flags:14s}{row['created_at']}  by {row['created_by']}"
                f"{approved}: {row['reason']}"
            )
        return EXIT_OK
    if command == "diff":
        print(await service.diff(args.playbook_id, args.old, args.new), end="")
        return EXIT_OK
    if command == "rollback":
        by = args.by or default_actor()
        previous = await service.rollback(args.playbook_id, args.to_version, by, args.reason)
        if args.to_version == NO_BASE:
            print(f"{args.playbook_id}: {previous} retired; no playbook handles its failures")
            return EXIT_OK
        print(f"{args.playbook_id}: {args.to_version} is active again (was {previous})")
        return EXIT_OK
    version = args.version or await versions.active_version(args.playbook_id)
    if version is None:
        print(f"no playbook {args.playbook_id}", file=sys.stderr)
        return EXIT_INVALID
    figures = await service.metrics.version(args.playbook_id, version)
    data = {
        "playbook_metrics": figures.as_dict()
        if figures
        else {"version": version, "total_executions": 0},
        "steps": [s.as_dict() for s in await service.metrics.steps(args.playbook_id, version)],
        "common_paths": [
            p.as_dict() for p in await service.metrics.paths(args.playbook_id, version)
        ],
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return EXIT_OK
