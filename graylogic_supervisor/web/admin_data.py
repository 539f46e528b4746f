"""The dashboard's figures, for the page and for ``GET /api/v1/dashboard``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from starlette.requests import Request

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.health.monitor import Health
from graylogic_supervisor.store.views import HeldRecovery
from graylogic_supervisor.web.render import admin

SITE = "*"  # a maintenance window over every component
WINDOWS = 50  # the newest windows looked at for current and upcoming ones


async def dashboard_data(request: Request) -> dict[str, Any]:
    """What the dashboard shows; the page and ``GET /api/v1/dashboard`` share it."""
    deps = admin(request)
    web = request.app.state.deps
    clock_now = deps.auth.clock.now()
    now = isoformat(clock_now)
    windows = [_flat(w) for w in await deps.controls.planned_windows(clock_now, WINDOWS)]
    current = [w for w in windows if w["starts_at"] <= now]
    recovering = web.recovering()
    held = await deps.records.views.held_recoveries()
    snapshot = sorted(web.health.snapshot().items())
    components = {}
    for name, state in snapshot:
        window = next((w for w in current if w["component"] in (name, SITE)), None)
        components[name] = {
            "health": state.health.value,
            # as on MQTT and /api/v1/system/health: a healthy component has no error
            "error_id": (state.error_id or "") if state.health is Health.UNHEALTHY else "",
            "detail": state.detail or "",
            **_recovery(name, recovering, held.get(name), window),
        }
    unhealthy = {name for name, state in snapshot if state.health is not Health.HEALTHY}
    acknowledged = [
        _flat(e)
        for e in await deps.records.views.escalations("acknowledged", 20)
        if e.component in unhealthy  # a fault that cleared while its daemon was down is over
    ]
    return {
        "overall": web.health.overall().value,
        "components": components,
        "recovering": sorted(recovering),
        "safe_mode": _flat(await deps.controls.safe_mode()),
        "termination": _flat(deps.termination()),
        "escalations": [dict(row) for row in await deps.escalations.open_unacknowledged()],
        "acknowledged": acknowledged,
        "maintenance": {
            "current": current,
            "upcoming": [w for w in windows if w["starts_at"] > now],
        },
        "pending_recommendations": await deps.learning.pending_count(),
        "executions": [dict(row) for row in await deps.executions.recent(10)],
    }


def _recovery(
    name: str,
    recovering: frozenset[str],
    held: HeldRecovery | None,
    window: dict[str, Any] | None,
) -> dict[str, str]:
    """What the supervisor does about a component, truthfully: an installer's window
    (its failures are expected), a recovery held back and why, or one under way."""
    if window is not None:
        scope = "of the whole site " if window["component"] == SITE else ""
        why = f"{scope}until {window['ends_at']}: {window['reason']} ({window['created_by']})"
        return {"state": "maintenance", "why": why}
    if name in recovering and held is not None:
        return {"state": "held", "why": held.detail}
    if name in recovering:
        return {"state": "recovering", "why": ""}
    return {"state": "", "why": ""}


def _flat(record: Any) -> dict[str, Any]:
    """A flat dataclass as a dict: ``asdict``'s deep copy costs ten times as much, per page."""
    flat = {field.name: getattr(record, field.name) for field in fields(record)}
    state = getattr(record, "state", None)
    if isinstance(state, str):
        flat["state"] = state
    return flat
