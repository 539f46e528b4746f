"""The dashboard's figures, for the page and for ``GET /api/v1/dashboard``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from starlette.requests import Request

from graylogic_supervisor.web.render import admin


async def dashboard_data(request: Request) -> dict[str, Any]:
    """What the dashboard shows; the page and ``GET /api/v1/dashboard`` share it."""
    deps = admin(request)
    web = request.app.state.deps
    return {
        "overall": web.health.overall().value,
        "components": {
            name: {
                "health": state.health.value,
                "error_id": state.error_id or "",
                "detail": state.detail or "",
            }
            for name, state in sorted(web.health.snapshot().items())
        },
        "recovering": sorted(web.recovering()),
        "safe_mode": _flat(await deps.controls.safe_mode()),
        "termination": _flat(deps.termination()),
        "escalations": [dict(row) for row in await deps.escalations.open_unacknowledged()],
        "pending_recommendations": await deps.learning.pending_count(),
        "executions": [dict(row) for row in await deps.executions.recent(10)],
    }


def _flat(record: Any) -> dict[str, Any]:
    """A flat dataclass as a dict: ``asdict``'s deep copy costs ten times as much, per page."""
    return {field.name: getattr(record, field.name) for field in fields(record)}
