"""Executions on the admin page: a filtered list, and each one's timeline, decision
record and controls. Pause, resume and cancel go through the same commands table
as the CLI: the daemon applies them within a quarter of a second and audits them.

Each execution also shows its learning annotations (``learning/annotations.py``) and
people's feedback on it; a technician gives feedback from the page (the API and the
CLI store it the same way, ``store/feedback.py``: validated, audited)."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylogic_supervisor.domain.states import ExecutionStatus
from graylogic_supervisor.learning.annotations import Annotations, load_annotations
from graylogic_supervisor.store.feedback import (
    ESCALATION_TIMINGS,
    Feedback,
    FeedbackEntry,
    FeedbackRefused,
)
from graylogic_supervisor.store.records import ExecutionRecord, StepRecord
from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.store.views import ExecutionFilter
from graylogic_supervisor.web.auth import may_change
from graylogic_supervisor.web.render import (
    admin,
    changing,
    not_found,
    refuse,
    render,
    see_other,
    to_login,
    viewer,
)
from graylogic_supervisor.web.svg import timeline
from graylogic_supervisor.why import explain

STATUSES = tuple(ExecutionStatus)
CONTROLS = ("pause", "resume", "cancel")
PAGE = 50


def execution_routes() -> list[Route]:
    return [
        Route("/executions", executions, methods=["GET"]),
        Route("/executions/{execution_id}", execution, methods=["GET"]),
        Route("/executions/{execution_id}/control", control, methods=["POST"]),
        Route("/executions/{execution_id}/feedback", feedback, methods=["POST"]),
    ]


def execution_filters(request: Request) -> tuple[dict[str, str], ExecutionFilter]:
    """The query's filters, unknown or unreadable values dropped: what was chosen (for the
    form) and the filter for the store."""
    query = request.query_params
    chosen: dict[str, str] = {}
    for key in ("playbook", "component"):
        value = query.get(key, "").strip()[:100]
        if value:
            chosen[key] = value
    status = query.get("status", "")
    if status in STATUSES:
        chosen["status"] = status
    for key in ("since", "until"):
        value = query.get(key, "").strip()
        if not value:
            continue
        try:
            datetime.fromisoformat(value)
        except ValueError:
            continue
        chosen[key] = value
    text = query.get("q", "").strip()[:100]
    if text:
        chosen["q"] = text
    return chosen, ExecutionFilter(
        playbook=chosen.get("playbook"),
        component=chosen.get("component"),
        status=chosen.get("status"),
        since=chosen.get("since"),
        until=chosen.get("until"),
        text=chosen.get("q"),
    )


async def executions(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    chosen, wanted = execution_filters(request)
    rows = await admin(request).records.views.executions(wanted, PAGE)
    return render(
        request, "executions.html", session=session, rows=rows, chosen=chosen, statuses=STATUSES
    )


async def learning_part(
    request: Request, row: ExecutionRecord, steps: list[StepRecord]
) -> tuple[Annotations, list[FeedbackEntry]]:
    """The execution's learning annotations and every feedback on it (page and API)."""
    deps = admin(request)
    annotations = await load_annotations(
        row, steps, learning=deps.learning, versions=deps.versions, views=deps.records.views
    )
    return annotations, await deps.learning.feedback.of_execution(row.id)


async def give_feedback(
    request: Request, session: Session, given: Feedback
) -> FeedbackEntry | tuple[int, str]:
    """Store one person's feedback (validated, audited in the same transaction): the
    entry, or (status, why): 400 naming the field, 404 for an unknown execution."""
    deps = admin(request)
    try:
        return await deps.learning.feedback.give(
            request.path_params["execution_id"],
            given,
            by=session.user,
            now=deps.auth.clock.now(),
        )
    except FeedbackRefused as refused:
        return (404 if refused.kind == "unknown_execution" else 400), refused.message


def feedback_of_form(form: dict[str, str]) -> Feedback | str:
    """The page's form as a feedback (checkboxes ``wasted:STEP``), or why it cannot be."""
    sufficient = form.get("sufficient", "")
    if sufficient not in ("", "yes", "no"):
        return "sufficient is yes, no or not said"
    escalation = form.get("escalation", "").strip() or None
    return Feedback(
        sufficient=None if not sufficient else sufficient == "yes",
        wasted_steps=tuple(
            key.removeprefix("wasted:")
            for key, value in form.items()
            if key.startswith("wasted:") and value
        ),
        escalation=escalation,
        note=form.get("note", "").strip() or None,
    )


async def execution(request: Request, error: str | None = None, status: int = 200) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    deps = admin(request)
    execution_id = request.path_params["execution_id"]
    views = deps.records.views
    row = await views.execution(execution_id)
    if row is None:
        return not_found(request, session, f"No execution {execution_id}")
    steps = await views.steps(execution_id)
    first = datetime.fromisoformat(steps[0].started_at) if steps else None
    bars = []
    for step in steps:
        offset = (datetime.fromisoformat(step.started_at) - first).total_seconds() if first else 0.0
        label = step.step_id + (f" #{step.attempt}" if step.attempt > 1 else "")
        bars.append(
            {
                "label": label,
                "offset_s": float(offset),
                "duration_s": step.duration_seconds,
                "outcome": str(step.outcome),
            }
        )
    why = await explain(views, execution_id) or []
    commands = await views.commands_of(execution_id, 10)
    annotations, given = await learning_part(request, row, steps)
    return render(
        request,
        "execution.html",
        status,
        session=session,
        error=error,
        annotations=annotations,
        notes={a.seq: a for a in annotations.steps},
        feedback=given,
        step_ids=list(dict.fromkeys(step.step_id for step in steps)),
        timings=ESCALATION_TIMINGS,
        may_change=may_change(session),
        x=row,
        steps=steps,
        chart=Markup(timeline(bars)),  # noqa: S704  # built from escaped text only
        why=why,
        commands=commands,
        running=row.status is ExecutionStatus.RUNNING,
    )


async def queue_control(
    request: Request, session: Session, command: str, reason: str
) -> int | tuple[int, str]:
    """Queue pause, resume or cancel for the daemon (as the CLI does): the command's id,
    or (status, why) when it is refused. The page and the API share it."""
    deps = admin(request)
    execution_id = request.path_params["execution_id"]
    reason = reason.strip()
    if command not in CONTROLS:
        return 400, f"command must be one of {', '.join(CONTROLS)}"
    if not reason:
        return 400, f"to {command} an execution, give a reason"
    if await deps.records.views.execution(execution_id) is None:
        return 404, "no such execution"
    return await deps.commands.issue(
        execution_id, command, session.user, reason, now=deps.auth.clock.now()
    )


async def control(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    queued = await queue_control(request, session, form.get("command", ""), form.get("reason", ""))
    if isinstance(queued, tuple):
        return refuse(*queued)
    return see_other(f"/executions/{request.path_params['execution_id']}")


async def feedback(request: Request) -> Response:
    """The page's feedback form: stored, then back to the execution (a viewer is refused)."""
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    given = feedback_of_form(form)
    if isinstance(given, str):
        return await execution(request, given, 400)
    stored = await give_feedback(request, session, given)
    if isinstance(stored, tuple):
        status, why = stored
        if status == 404:
            return refuse(status, why)
        return await execution(request, why, status)
    return see_other(f"/executions/{request.path_params['execution_id']}#feedback")
