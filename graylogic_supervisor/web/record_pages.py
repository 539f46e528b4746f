"""The failure memory, learning activity and the audit log on the admin page.

A technician records how an escalated failure was resolved here, through the
same repository and audit entry as ``graylogic-supervisor memory resolve``.
"""

from __future__ import annotations

import json
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.memory.model import Resolution
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.web.render import (
    admin,
    changing,
    refuse,
    render,
    see_other,
    to_login,
    viewer,
)

OUTCOMES = ("open", "resolved_by_supervisor", "resolved_by_human", "unresolved")
PAGE = 100


def record_routes() -> list[Route]:
    return [
        Route("/failures", failures, methods=["GET"]),
        Route("/failures/{failure_id}", failure, methods=["GET"]),
        Route("/failures/{failure_id}/resolve", resolve, methods=["POST"]),
        Route("/learning", learning_activity, methods=["GET"]),
        Route("/audit", audit_log, methods=["GET"]),
    ]


async def failures(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    outcome = request.query_params.get("outcome", "")
    chosen = outcome if outcome in OUTCOMES else ""
    deps = admin(request)
    rows = await deps.db.fetchall(
        "SELECT failure_id, component, error_id, detected_at, outcome, fix_action, fix_target,"
        " count FROM failure_memory WHERE ? = '' OR outcome = ?"
        " ORDER BY detected_at DESC LIMIT ?",
        (chosen, chosen, PAGE),
    )
    patterns = await MemoryRepository(deps.db).patterns()
    return render(
        request,
        "failures.html",
        session=session,
        rows=rows,
        patterns=patterns,
        outcome=outcome,
        outcomes=OUTCOMES,
    )


async def failure(request: Request, error: str | None = None, status: int = 200) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    deps = admin(request)
    failure_id = request.path_params["failure_id"]
    row = await deps.db.fetchone(
        "SELECT outcome, record FROM failure_memory WHERE failure_id = ?", (failure_id,)
    )
    if row is None:
        return refuse(404, "the failure memory has no such failure")
    executions = await deps.db.fetchall(
        "SELECT id, playbook_id, playbook_version, status, detail FROM executions"
        " WHERE failure_id = ? ORDER BY started_at",
        (failure_id,),
    )
    return render(
        request,
        "failure.html",
        status,
        session=session,
        may_change=session.role in ("admin", "system_owner"),
        failure_id=failure_id,
        outcome=row["outcome"],
        record=json.loads(row["record"]),
        executions=executions,
        error=error,
    )


async def resolve(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    deps = admin(request)
    failure_id = request.path_params["failure_id"]
    fix_action = form.get("fix_action", "").strip()
    what = form.get("what", "").strip()
    if not fix_action or not what:
        return await failure(request, "say which action fixed it and what was done", 400)
    now = deps.auth.clock.now()
    resolution = Resolution(
        resolved_at=now,
        fixed_by=session.user,
        what_fixed_it=what[:500],
        fix_action=fix_action[:100],
        fix_target=form.get("target", "").strip()[:100] or None,
        root_cause=form.get("root_cause", "").strip()[:500] or None,
    )
    if not await MemoryRepository(deps.db).resolve(failure_id, resolution, now):
        return refuse(404, "the failure memory has no such failure")
    await AuditLog(deps.db).append(
        session.user, "memory.resolve", failure_id, resolution.model_dump(mode="json"), now
    )
    return see_other(f"/failures/{failure_id}")


async def learning_activity(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    deps = admin(request)
    now = deps.auth.clock.now()
    week, month = isoformat(now - timedelta(days=7)), isoformat(now - timedelta(days=30))
    patterns = await deps.db.fetchall(
        "SELECT id, component, error_id, fix_action, created_at FROM memory_patterns"
        " WHERE created_at >= ? ORDER BY created_at DESC",
        (week,),
    )
    applied = await deps.db.fetchall(
        "SELECT playbook_id, version, parent_version, approved_by, reason, created_at"
        " FROM playbook_versions WHERE recommendation_id IS NOT NULL AND created_at >= ?"
        " ORDER BY created_at DESC",
        (month,),
    )
    progress = []
    for book in await deps.versions.active_playbooks():
        versions = await deps.learning.metrics.versions(book.id)
        first = next((v for v in versions if v.executions), None)
        current = next((v for v in versions if v.version == book.version), None)
        progress.append({"playbook": book, "first": first, "current": current})
    return render(
        request,
        "learning.html",
        session=session,
        patterns=patterns,
        applied=applied,
        progress=progress,
    )


async def audit_log(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    audit = AuditLog(admin(request).db)
    entries = await audit.entries(limit=PAGE)
    return render(
        request,
        "audit.html",
        session=session,
        entries=entries,
        check=await audit.verify(),
    )
