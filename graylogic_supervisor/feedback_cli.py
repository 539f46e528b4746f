"""``executions feedback``: a person's word on an execution, for learning to count.

Stored as the page and the API store it (``store/feedback.py``): the step ids are
checked against the execution's own steps, and the feedback commits with its audit
entry. Several people may give feedback on one execution; each is kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from graylogic_supervisor.clock import SystemClock
from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.operator_cli import default_actor
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.feedback import (
    ESCALATION_TIMINGS,
    Feedback,
    FeedbackRefused,
    FeedbackRepository,
)

EXIT_OK, EXIT_INVALID = 0, 1
TIMINGS = {timing.replace("_", "-"): timing for timing in ESCALATION_TIMINGS}


def add_feedback_command(
    exec_commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    feedback = exec_commands.add_parser(
        "feedback",
        help="say whether an execution's playbook was enough, what wasted time, and how"
        " its escalation was timed",
        description=(
            "Record your feedback on an execution. The analysis counts it as"
            " evidence: steps marked as wasting time support removing or reordering them"
            " (never a health verification), 'too late' supports shorter timeouts, 'too"
            " early' more retries, 'not sufficient' added steps; each recommendation lists"
            " the feedback it used. Give at least one of the options. Audited."
        ),
    )
    config_option(feedback)
    feedback.add_argument("execution_id")
    feedback.add_argument(
        "--sufficient", choices=["yes", "no"], default=None, help="was the playbook enough"
    )
    feedback.add_argument(
        "--wasted",
        action="append",
        default=[],
        metavar="STEP",
        help="a step id of this execution that wasted time (repeatable)",
    )
    feedback.add_argument(
        "--escalation",
        choices=list(TIMINGS),
        default=None,
        help="how the escalation was timed: too-late, too-early, right, or"
        " not-escalated-should-have (it did not escalate and should have)",
    )
    feedback.add_argument("--note", default=None, help="anything else, in words")
    feedback.add_argument(
        "--by", default=None, help="who gives it, for the audit log (default: login name)"
    )


async def run_feedback(args: argparse.Namespace, config: SupervisorConfig) -> int:
    given = Feedback(
        sufficient=None if args.sufficient is None else args.sufficient == "yes",
        wasted_steps=tuple(args.wasted),
        escalation=None if args.escalation is None else TIMINGS[args.escalation],
        note=args.note.strip() if args.note else None,
    )
    clock = SystemClock()
    async with Database(config.database_path) as db:
        try:
            entry = await FeedbackRepository(db, AuditLog(db)).give(
                args.execution_id, given, by=args.by or default_actor(), now=clock.now()
            )
        except FeedbackRefused as refused:
            option = {"wasted_steps": " (--wasted)", "feedback": ""}.get(refused.field, "")
            print(f"executions feedback: {refused.message}{option}", file=sys.stderr)
            return EXIT_INVALID
    print(f"{entry.execution_id}: feedback {entry.id} recorded by {entry.given_by}")
    return EXIT_OK
