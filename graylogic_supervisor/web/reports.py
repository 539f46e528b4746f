"""Reports: one execution, and a week of the site, in JSON and in HTML that prints.

Figures are computed from the store for the period asked, so a report for a
past week reads the same whenever it is printed. The JSON forms go through the API's
guard as every ``/api/v1`` route does (a session or an API token; ids and the query
held to the OpenAPI description).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graylogic_supervisor.store.sessions import Session
from graylogic_supervisor.web.api_guard import reading
from graylogic_supervisor.web.render import admin, not_found, refuse, render, to_login, viewer
from graylogic_supervisor.why import explain


def report_routes() -> list[Route]:
    return [
        Route("/reports/weekly", weekly_page, methods=["GET"]),
        Route("/reports/executions/{execution_id}", execution_page, methods=["GET"]),
        Route("/api/v1/reports/weekly", weekly_json, methods=["GET"]),
        Route("/api/v1/reports/executions/{execution_id}", execution_json, methods=["GET"]),
    ]


def _period(request: Request) -> tuple[datetime, datetime] | None:
    """The seven days ending with ``end`` (a date, default today), in UTC."""
    raw = request.query_params.get("end")
    try:
        last = date.fromisoformat(raw) if raw else admin(request).auth.clock.now().date()
        end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
        return end - timedelta(days=7), end
    except (ValueError, OverflowError):  # not a date, or a week beyond year 1 or 9999
        return None


async def _weekly(request: Request) -> dict[str, Any] | Response:
    period = _period(request)
    if period is None:
        return refuse(400, "end is a date, e.g. 2026-11-29")
    records = admin(request).records
    report = await records.reports.summary(*period)
    # the playbooks' figures count playbook runs; the failure memory's own fixes beside them
    report["learned_fixes"] = [asdict(f) for f in await records.views.learned_fixes(*period)]
    return report


async def weekly_page(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    report = await _weekly(request)
    if isinstance(report, Response):
        return report
    return render(request, "weekly.html", session=session, r=report)


@reading
async def weekly_json(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: end, in: query, schema: {type: string, format: date}}
    responses:
      200: {description: "the seven days ending with end, in figures"}
      400: {description: end is not a date}
      401: {description: not logged in}
    """
    report = await _weekly(request)
    return report if isinstance(report, Response) else JSONResponse(report)


async def _execution(request: Request) -> dict[str, Any] | None:
    deps = admin(request)
    execution_id = request.path_params["execution_id"]
    record = await deps.executions.record(execution_id)
    if record is None:
        return None
    return {"execution": record, "why": await explain(deps.records.views, execution_id) or []}


async def execution_page(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    report = await _execution(request)
    if report is None:
        return not_found(request, session, f"No execution {request.path_params['execution_id']}")
    return render(request, "execution_report.html", session=session, r=report)


@reading
async def execution_json(request: Request, session: Session) -> Response:
    """
    parameters:
      - {name: execution_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: the execution record and its decision record}
      401: {description: not logged in}
      404: {description: no such execution}
    """
    report = await _execution(request)
    return refuse(404, "no such execution") if report is None else JSONResponse(report)
