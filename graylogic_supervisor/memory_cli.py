"""Commands for the failure memory and for asking why: ``why``, ``memory …``.

A technician records here what fixed an escalated failure, which is how the
memory learns fixes the playbooks did not know.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.domain.memory import Resolution
from graylogic_supervisor.engine.plugins import action_specs
from graylogic_supervisor.memory.fixes import (
    FixCatalog,
    ResolutionRefused,
    configured_targets,
    record_resolution,
)
from graylogic_supervisor.memory.service import FailureMemory
from graylogic_supervisor.memory.standing import PatternStanding, standing
from graylogic_supervisor.operator_cli import default_actor
from graylogic_supervisor.store.analyses import AnalysisRepository
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning import LearningRepository
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.views import RecordViews
from graylogic_supervisor.why import explain, explain_learning

EXIT_OK, EXIT_INVALID = 0, 1


def add_memory_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    why = commands.add_parser(
        "why",
        help="why the supervisor did what it did: an execution, failure, incident,"
        " recommendation or rollback",
        description=(
            "For an execution, failure or incident: the failure, the failure memory's decision"
            " record (what it matched and with what scores, the confidence, what it chose and"
            " what it set aside), the policy's evaluations and the executions. For a"
            " recommendation: its evidence, figures and confidence, the analysis that made it"
            " and its verdict there, the decision and who made it. For a rollback: the"
            " version, the comparison's figures, the trigger, who or what rolled it back."
        ),
    )
    config_option(why)
    why.add_argument(
        "identifier",
        help="an execution (exec-…), failure (fail-…), incident (inc-…), recommendation"
        " (rec-…) or rollback (rollback-…) id",
    )

    memory = commands.add_parser("memory", help="the failure memory: resolutions, recall, patterns")
    memory_commands = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    resolve = memory_commands.add_parser(
        "resolve",
        help="record what fixed a failure (after an escalation)",
        description=(
            "Record a technician's resolution; the memory learns the fix from it. The fix"
            " action and target are checked against this site's actions and configuration;"
            " a failure already resolved is kept unless --force."
        ),
    )
    config_option(resolve)
    resolve.add_argument("failure_id")
    resolve.add_argument(
        "--fix-action",
        help=(
            "the action that fixed it, e.g. restart_service: a fix action this site can run"
            " (built-in or plugin). Omit it, or say 'manual', for a fix no action can repeat"
            " (a replaced SD card): it is recorded, never proposed as an automatic fix"
        ),
    )
    resolve.add_argument(
        "--target", help="what it acted on: a configured service or component, e.g. mosquitto"
    )
    resolve.add_argument(
        "--force",
        action="store_true",
        help="replace a resolution already recorded (by the supervisor or a person)",
    )
    resolve.add_argument("--what", required=True, help="what was done, in words")
    resolve.add_argument("--root-cause", help="what caused it, if known")
    resolve.add_argument("--by", default=None, help="who fixed it (default: login name)")
    similar = memory_commands.add_parser(
        "similar", help="the past failures most like one, explained"
    )
    config_option(similar)
    similar.add_argument("failure_id")
    patterns = memory_commands.add_parser(
        "patterns",
        help="learned patterns and how well they work",
        description=(
            "One line per learned pattern: its fix, its members, its history (the alike"
            " failures behind it) against memory.learned_fix_min_history, the times its fix"
            " ran ahead of the playbook, resolved the failure (and the rate), when it was"
            " last used, and what the memory does with it now: WAITS FOR HISTORY (learned and"
            " shown, the playbook runs first), MAY RUN FIRST (when a failure fits it"
            " confidently), FLAGGED FOR REVIEW, or HELD BACK (its last"
            " memory.review_min_matches runs first all failed)."
        ),
    )
    config_option(patterns)
    consolidate = memory_commands.add_parser(
        "consolidate", help="merge, learn patterns, decay and apply retention now"
    )
    config_option(consolidate)


async def run_memory_command(args: argparse.Namespace, config: SupervisorConfig) -> int:
    clock = SystemClock()
    async with Database(config.database_path) as db:
        if args.command == "why":
            lines = await explain_learning(
                LearningRepository(db), AnalysisRepository(db), args.identifier
            ) or await explain(RecordViews(db), args.identifier)
            if lines is None:
                print(
                    f"no execution, failure, incident, recommendation or rollback"
                    f" {args.identifier}",
                    file=sys.stderr,
                )
                return EXIT_INVALID
            print("\n".join(lines))
            return EXIT_OK
        repository = MemoryRepository(db)
        memory = FailureMemory(repository, config.memory, clock)  # its retention, thresholds
        if args.memory_command == "resolve":
            by = args.by or default_actor()
            catalog = FixCatalog(
                action_specs(),
                configured_targets(
                    [config.broker.service, *(s.name for s in config.services)],
                    config.components,
                ),
            )
            try:
                resolution = await record_resolution(
                    repository,
                    catalog,
                    args.failure_id,
                    Resolution(
                        resolved_at=clock.now(),
                        fixed_by=by,
                        what_fixed_it=args.what,
                        fix_action=args.fix_action,
                        fix_target=args.target,
                        root_cause=args.root_cause,
                    ),
                    now=clock.now(),
                    force=args.force,
                )
            except ResolutionRefused as refused:
                hint = " (--force)" if refused.kind == "already_resolved" else ""
                print(f"memory resolve: {refused.message}{hint}", file=sys.stderr)
                return EXIT_INVALID
            await AuditLog(db).append(
                by,
                "memory.resolve",
                args.failure_id,
                resolution.model_dump(mode="json"),
                now=clock.now(),
            )
            fix = " ".join(p for p in (resolution.fix_action, resolution.fix_target) if p)
            print(f"{args.failure_id}: resolution recorded ({fix or 'manual: not automatable'})")
            note = catalog.note(resolution.fix_action)
            if note is not None:
                print(f"note: {note}")
            return EXIT_OK
        if args.memory_command == "patterns":
            uses = await repository.learned_fix_uses()
            patterns = await repository.patterns()
            for pattern in patterns:
                print(pattern_line(standing(pattern, uses, config.memory)))
            if not patterns:
                print("no learned patterns yet")
            return EXIT_OK
        await memory.load()
        if args.memory_command == "similar":
            record = await repository.get(args.failure_id)
            if record is None:
                print(f"the memory has no failure {args.failure_id}", file=sys.stderr)
                return EXIT_INVALID
            threshold = config.memory.similar_min_score
            for match in memory.similar(record.context):
                print(match.explain())
                if match.score < threshold:
                    print(
                        f"  score below memory.similar_min_score {threshold:g}:"
                        " not used to choose a fix"
                    )
            return EXIT_OK
        report = await memory.consolidate()
        print(report)
        return EXIT_OK


def pattern_line(found: PatternStanding) -> str:
    """One pattern: its fix, its history against the one asked for, its runs ahead of the
    playbook and how they went, and what the memory does with it now."""
    pattern = found.pattern
    rate = "-" if found.success_rate is None else f"{found.success_rate:.0%}"
    last = "never" if found.last_used is None else found.last_used.isoformat(timespec="seconds")
    return (
        f"{pattern.id}  {pattern.component} {pattern.error_id} -> {pattern.fix_action}"
        f" {pattern.fix_target or ''}  members {len(pattern.members)}  history"
        f" {found.history} of {found.min_history}  ran first {found.ran_first}, resolved"
        f" {found.resolved} ({rate}), last used {last}  {found.state.upper()}: {found.detail}"
    )
