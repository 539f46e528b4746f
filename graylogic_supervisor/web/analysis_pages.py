"""The learning analyses on the admin page: each run, its findings, and every candidate
it considered with its verdict and figures, in words (``learning/reasons.py``).

Nav → Analyses (the runs, newest first) → one analysis: every verdict is two clicks
from any page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylogic_supervisor.learning.reasons import (
    FINDING_TITLES,
    figure_line,
    finding_lines,
)
from graylogic_supervisor.web.render import admin, not_found, render, to_login, viewer

LISTED = 100  # analyses on the list page


def analysis_routes() -> list[Route]:
    return [
        Route("/analyses", analyses, methods=["GET"]),
        Route("/analyses/{analysis_id}", analysis, methods=["GET"]),
    ]


async def analyses(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    runs = await admin(request).learning.analyses.listing(LISTED)
    return render(request, "analyses.html", session=session, runs=runs)


async def analysis(request: Request) -> Response:
    session = await viewer(request)
    if session is None:
        return to_login()
    analysis_id = request.path_params["analysis_id"]
    found = await admin(request).learning.analyses.get(analysis_id)
    if found is None:
        return not_found(request, session, f"No analysis {analysis_id}")
    report = found["report"]
    return render(
        request,
        "analysis.html",
        session=session,
        run=found,
        report=report,
        playbooks=[_shown(p) for p in report.get("playbooks", [])],
    )


def _shown(playbook: dict[str, Any]) -> dict[str, Any]:
    """A playbook's part of the report, with its findings and figures in sentences."""
    findings = [
        (FINDING_TITLES.get(name, name.replace("_", " ")), finding_lines(name, items))
        for name, items in playbook.get("findings", {}).items()
    ]
    considered = [
        {
            **entry,
            "accepted": entry.get("accepted", entry["verdict"] == "recommended"),
            "words": entry.get("in_words") or entry["verdict"],
            "figure_line": figure_line(entry.get("figures") or {}),
        }
        for entry in playbook.get("considered", [])
    ]
    return {**playbook, "finding_lines": findings, "candidates": considered}
