"""Recommendations and playbooks on the admin page: see the evidence, decide, roll back.

Decisions go through ``LearningService`` (role checks, validation, audit) exactly
as the CLI's do; a refusal is shown on the page with the service's own words.
"""

from __future__ import annotations

import difflib
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.draft_review import draft_dry_run
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.changes import (
    ChangeError,
    apply_change,
    bump,
    change_from_yaml,
    parse_change,
)
from graylogic_supervisor.learning.drafts import NEW_PLAYBOOK
from graylogic_supervisor.learning.reasons import rollback_lines
from graylogic_supervisor.store.versions import playbook_yaml
from graylogic_supervisor.web.auth import may_change
from graylogic_supervisor.web.render import (
    admin,
    changing,
    not_found,
    render,
    see_other,
    to_login,
    viewer,
)
from graylogic_supervisor.web.svg import line_chart, step_graph

TREND_DAYS = 30


def learning_routes() -> list[Route]:
    return [
        Route("/recommendations", recommendations, methods=["GET"]),
        Route("/recommendations/{rec_id}", recommendation, methods=["GET"]),
        Route("/recommendations/{rec_id}/approve", approve, methods=["POST"]),
        Route("/recommendations/{rec_id}/reject", reject, methods=["POST"]),
        Route("/playbooks", playbooks, methods=["GET"]),
        Route("/playbooks/{playbook_id}", playbook_page, methods=["GET"]),
        Route("/playbooks/{playbook_id}/rollback", rollback, methods=["POST"]),
        Route("/rollbacks", rollbacks, methods=["GET"]),
        Route("/rollbacks/{rollback_id}", rollback_page, methods=["GET"]),
    ]


async def recommendations(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    status = request.query_params.get("status", "pending")
    recs = await admin(request).learning.store.listing(None if status == "all" else status)
    return render(request, "recommendations.html", session=session, recs=recs, shown=status)


async def _proposal(request: Request, rec: Any) -> tuple[str, str, str]:
    """The base version's YAML, the proposed version's YAML, and their diff."""
    deps = admin(request)
    if rec.type == NEW_PLAYBOOK:  # a draft: no version before it
        return "", yaml.safe_dump(rec.change["playbook"], sort_keys=False), ""
    base = await deps.versions.definition(rec.playbook_id, rec.base_version)
    if base is None:
        return "", "", ""
    before = playbook_yaml(base)
    try:
        change = parse_change(rec.change)
        proposed = apply_change(base, change, bump(base.version, change.type), deps.learning.specs)
        after = playbook_yaml(proposed)
    except (SupervisorError, ValueError) as exc:
        after = f"# the change does not apply: {exc}\n"
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"{rec.base_version} (before)",
            "proposed (after)",
        )
    )
    return before, after, diff


async def recommendation(
    request: Request, error: str | None = None, status: int = 200, edited: str | None = None
) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    rec = await admin(request).learning.store.get(request.path_params["rec_id"])
    if rec is None:
        return not_found(request, session, f"No recommendation {request.path_params['rec_id']}")
    before, after, diff = await _proposal(request, rec)
    return render(
        request,
        "recommendation.html",
        status,
        session=session,
        rec=rec,
        before=before,
        after=after,
        diff=diff,
        dry_run=await draft_dry_run(rec.change),
        error=error,
        change_yaml=edited or yaml.safe_dump(rec.change, sort_keys=False),
        may_change=may_change(session),
        trial_share=round(admin(request).learning.settings.trial_share * 100),
    )


async def approve(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    deps = admin(request)
    rec_id = request.path_params["rec_id"]
    modified: dict[str, Any] | None = None
    edited = form.get("change")
    if edited is not None:
        try:
            modified = change_from_yaml(edited, Path("change"))
        except ChangeError as exc:
            return await recommendation(request, str(exc), 400, edited)
    trial = {"1": True, "0": False}.get(form.get("trial", ""))
    try:
        share = float(form["share"]) / 100 if form.get("share") else None
    except ValueError:
        return await recommendation(request, "the share is a percentage", 400, edited)
    try:
        version = await deps.learning.approve(
            rec_id, session.user, form.get("reason", ""), modified, trial=trial, share=share
        )
    except SupervisorError as exc:
        return await recommendation(request, str(exc), 400, edited)
    rec = await deps.learning.store.get(rec_id)
    assert rec is not None
    if await deps.learning.trials.running_as(rec.playbook_id, version) is not None:
        return see_other(f"/playbooks/{rec.playbook_id}?trial={version}")
    return see_other(f"/playbooks/{rec.playbook_id}?approved={version}")


async def reject(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    try:
        await admin(request).learning.reject(
            request.path_params["rec_id"], session.user, form.get("reason", "")
        )
    except SupervisorError as exc:
        return await recommendation(request, str(exc), 400)
    return see_other("/recommendations")


async def playbooks(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    deps = admin(request)
    rows = []
    for book in await deps.versions.active_playbooks():
        metrics = await deps.learning.metrics.version(book.id, book.version)
        pending = await deps.learning.store.listing("pending", book.id)
        rows.append({"playbook": book, "metrics": metrics, "pending": len(pending)})
    learned = await deps.records.views.learned_fixes()
    return render(request, "playbooks.html", session=session, rows=rows, learned=learned)


async def playbook_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    deps = admin(request)
    playbook_id = request.path_params["playbook_id"]
    active = await deps.versions.active_playbook(playbook_id)
    if active is None:  # a learned fix is stored, never active: its newest version
        newest = await deps.records.views.newest_version(playbook_id)
        if newest is not None:
            active = await deps.versions.definition(playbook_id, newest)
    if active is None:
        return not_found(request, session, f"No playbook {playbook_id}")
    is_active = await deps.versions.active_version(playbook_id) == active.version
    # a learned fix's own record: its runs ahead of the playbook and how they went
    fix_use = None if is_active else await deps.records.memory.learned_fix_use(playbook_id)
    versions = await deps.versions.versions_of(playbook_id)
    old = request.query_params.get("old")
    new = request.query_params.get("new")
    diff = None
    if old and new:
        try:
            diff = await deps.learning.diff(playbook_id, old, new)
        except SupervisorError as exc:
            error = str(exc)
    trends = await _trends(request, playbook_id)
    escalated = await deps.records.views.unresolved_of_playbook(playbook_id, 10)
    rolled_back = await deps.learning.store.rollbacks(playbook_id, 20)
    return render(
        request,
        "playbook.html",
        status,
        session=session,
        may_change=may_change(session),
        playbook=active,
        is_active=is_active,
        fix_use=fix_use,
        fix_held_after=deps.memory.review_min_matches,
        yaml_text=playbook_yaml(active),
        metrics=await deps.learning.metrics.version(playbook_id, active.version),
        steps=await deps.learning.metrics.steps(playbook_id, active.version),
        paths=await deps.learning.metrics.paths(playbook_id, active.version),
        versions=versions,
        escalated=escalated,
        rollbacks=rolled_back,
        diff=diff,
        old=old,
        new=new,
        error=error,
        approved=request.query_params.get("approved"),
        on_trial=request.query_params.get("trial"),
        trials=await playbook_trials(request, playbook_id),
        graph=Markup(step_graph(active)),  # noqa: S704  # built from escaped text only
        success_chart=Markup(trends[0]),  # noqa: S704
        time_chart=Markup(trends[1]),  # noqa: S704
    )


async def playbook_trials(request: Request, playbook_id: str) -> list[dict[str, Any]]:
    """The playbook's trials, newest first, each with both arms' figures."""
    keeper = admin(request).learning.trials
    return [
        await keeper.report(found)
        for found in await keeper.store.listing(playbook_id=playbook_id, limit=20)
    ]


async def _trends(request: Request, playbook_id: str) -> tuple[str, str]:
    """Daily success rate and mean resolution time over the last TREND_DAYS days."""
    deps = admin(request)
    today = deps.auth.clock.now()
    since = today - timedelta(days=TREND_DAYS - 1)
    trend = await deps.records.views.daily_trend(playbook_id, since)
    by_day = {row.day: row for row in trend}
    days = [isoformat(since + timedelta(days=i))[:10] for i in range(TREND_DAYS)]
    success = [
        (day, by_day[day].ok / by_day[day].n * 100 if day in by_day else None) for day in days
    ]
    mean = [(day, by_day[day].mean_s if day in by_day else None) for day in days]
    return line_chart(success, "% resolved", 100.0), line_chart(mean, "s to resolve")


async def rollback(request: Request) -> Response:
    checked = await changing(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    playbook_id = request.path_params["playbook_id"]
    try:
        await admin(request).learning.rollback(
            playbook_id, form.get("version", ""), session.user, form.get("reason", "")
        )
    except SupervisorError as exc:
        return await playbook_page(request, str(exc), 400)
    return see_other(f"/playbooks/{playbook_id}")


async def rollbacks(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    found = await admin(request).learning.store.rollbacks(request.query_params.get("playbook"))
    return render(request, "rollbacks.html", session=session, rollbacks=found)


async def rollback_page(request: Request) -> Response:
    """A rollback's investigation report."""
    session = await viewer(request)
    if session is None:
        return to_login()
    found = await admin(request).learning.store.rollback(request.path_params["rollback_id"])
    if found is None:
        return not_found(request, session, f"No rollback {request.path_params['rollback_id']}")
    return render(
        request,
        "rollback.html",
        session=session,
        rb=found,
        report=found["report"],
        words=rollback_lines(found),
    )
