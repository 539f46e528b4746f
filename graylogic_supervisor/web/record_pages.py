"""The failure memory, learning activity and the audit log on the admin page.

A technician records how an escalated failure was resolved here, through the
same repository and audit entry as ``graylogic-supervisor memory resolve``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.memory import Resolution
from graylogic_supervisor.memory.fixes import FixCatalog, ResolutionRefused
from graylogic_supervisor.memory.fixes import record_resolution as record_fix
from graylogic_supervisor.memory.standing import PatternStanding, standing
from graylogic_supervisor.store.audit import ChainCheck
from graylogic_supervisor.store.sessions import Session
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

OUTCOMES = ("open", "resolved_by_supervisor", "resolved_by_human", "unresolved")
PAGE = 100
REFUSAL_STATUS = {"invalid": 400, "unknown_failure": 404, "already_resolved": 409}


def record_routes() -> list[Route]:
    return [
        Route("/failures", failures, methods=["GET"]),
        Route("/failures/{failure_id}", failure, methods=["GET"]),
        Route("/failures/{failure_id}/resolve", resolve, methods=["POST"]),
        Route("/learning", learning_activity, methods=["GET"]),
        Route("/audit", audit_log, methods=["GET"]),
    ]


async def failures_data(request: Request) -> dict[str, Any]:
    """The newest failure records (of one outcome, if asked) and the learned patterns."""
    outcome = request.query_params.get("outcome", "")
    chosen = outcome if outcome in OUTCOMES else ""
    deps = admin(request)
    rows = await deps.records.views.remembered_failures(chosen, PAGE)
    patterns = await deps.records.memory.patterns()
    uses = await deps.records.memory.learned_fix_uses()
    return {
        "outcome": chosen,
        "failures": [asdict(row) for row in rows],
        "patterns": [_pattern_row(standing(p, uses, deps.memory)) for p in patterns],
    }


def _pattern_row(found: PatternStanding) -> dict[str, Any]:
    """A learned pattern as the page shows it: its history against the one asked for, its
    runs ahead of the playbook, and what the memory does with it now."""
    p = found.pattern
    return {
        "id": p.id,
        "component": p.component,
        "error_id": p.error_id,
        "fix_action": p.fix_action,
        "fix_target": p.fix_target,
        "failures": len(p.members),
        "history": found.history,
        "min_history": found.min_history,
        "times_matched": found.ran_first,
        "times_resolved": found.resolved,
        "success_rate": found.success_rate,
        "last_used": None if found.last_used is None else isoformat(found.last_used),
        "learned_playbook_id": found.learned_playbook_id,
        "state": found.state,
        "detail": found.detail,
        "flag_reason": p.flag_reason,
    }


async def failures(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    data = await failures_data(request)
    return render(
        request,
        "failures.html",
        session=session,
        rows=data["failures"],
        patterns=data["patterns"],
        outcome=data["outcome"],
        outcomes=OUTCOMES,
    )


async def failure_data(request: Request) -> dict[str, Any] | None:
    """One failure's record, outcome and executions; None when the memory has none."""
    deps = admin(request)
    failure_id = request.path_params["failure_id"]
    views = deps.records.views
    remembered = await views.memory_record(failure_id)
    if remembered is None:
        return None
    executions = await views.executions_summary_of_failure(failure_id)
    return {
        "failure_id": failure_id,
        "outcome": remembered.outcome,
        "record": remembered.record,
        "executions": [asdict(x) for x in executions],
    }


async def failure(request: Request, error: str | None = None, status: int = 200) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    data = await failure_data(request)
    if data is None:
        return not_found(request, session, "The failure memory has no such failure")
    return render(
        request,
        "failure.html",
        status,
        session=session,
        may_change=may_change(session),
        error=error,
        **data,
    )


async def record_resolution(
    request: Request, session: Session, fields: dict[str, str], *, force_hint: str
) -> tuple[int, str] | None:
    """A technician's resolution, checked (``memory/fixes.py``), recorded and audited;
    (status, why) when refused: 400 a bad action or target, 404, 409 already resolved."""
    deps = admin(request)
    failure_id = request.path_params["failure_id"]
    what = fields.get("what", "").strip()
    if not what:
        return 400, "say what was done"
    now = deps.auth.clock.now()
    catalog = FixCatalog(deps.learning.specs, deps.fix_targets)
    try:
        resolution = await record_fix(
            deps.records.memory,
            catalog,
            failure_id,
            Resolution(
                resolved_at=now,
                fixed_by=session.user,
                what_fixed_it=what[:500],
                fix_action=fields.get("fix_action", "").strip()[:100] or None,
                fix_target=fields.get("target", "").strip()[:100] or None,
                root_cause=fields.get("root_cause", "").strip()[:500] or None,
            ),
            now=now,
            force=fields.get("force", "").strip().lower() in ("1", "on", "true"),
        )
    except ResolutionRefused as refused:
        hint = f" ({force_hint})" if refused.kind == "already_resolved" else ""
        return REFUSAL_STATUS[refused.kind], refused.message + hint
    await deps.auth.audit.append(
        session.user, "memory.resolve", failure_id, resolution.model_dump(mode="json"), now=now
    )
    return None


async def resolve(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    problem = await record_resolution(
        request, session, form, force_hint="tick 'Replace the resolution already recorded'"
    )
    if problem is not None:
        status, why = problem
        if status == 404:
            return refuse(status, why)
        return await failure(request, why, status)
    return see_other(f"/failures/{request.path_params['failure_id']}")


async def learning_data(request: Request) -> dict[str, Any]:
    """Patterns of the last week, improvements of the last month, and per playbook what
    its active version does against its first."""
    deps = admin(request)
    now = deps.auth.clock.now()
    views = deps.records.views
    patterns = await views.patterns_since(now - timedelta(days=7))
    applied = await views.approved_versions_since(now - timedelta(days=30))
    progress = []
    for book in await deps.versions.active_playbooks():
        versions = await deps.learning.metrics.versions(book.id)
        first = next((v for v in versions if v.executions), None)
        current = next((v for v in versions if v.version == book.version), None)
        progress.append(
            {
                "playbook_id": book.id,
                "active_version": book.version,
                "first": first.as_dict() if first else None,
                "current": current.as_dict() if current else None,
            }
        )
    return {
        "patterns_this_week": [asdict(r) for r in patterns],
        "improvements_this_month": [asdict(r) for r in applied],
        "since_first_version": progress,
    }


async def learning_activity(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    return render(request, "learning.html", session=session, **await learning_data(request))


async def audit_check(request: Request) -> ChainCheck:
    """The daemon's incremental check (entries since the last look, off the loop); the
    whole chain, still off the loop, where no watch was given (tests, tools)."""
    deps = admin(request)
    if deps.audit_watch is not None:
        return await deps.audit_watch.check()
    return await deps.auth.audit.verify()


async def audit_log(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    entries = await admin(request).auth.audit.entries(limit=PAGE)
    return render(
        request,
        "audit.html",
        session=session,
        entries=entries,
        check=await audit_check(request),
    )
