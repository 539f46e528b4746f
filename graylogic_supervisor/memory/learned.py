"""A learned fix, run as a tracked execution of its own kind.

It is a two-step playbook built from what fixed similar failures before: the
fix, then the same health verification a playbook would end with. It is
stored as an inactive playbook version (so its executions are recorded like
any other, with the fix's own id), and never selected as a component's
playbook.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pydantic import ValidationError

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.playbooks.model import Playbook

LEARNED_VERSION = "1.0.0"
FIX_TIMEOUT_S = 60.0
VERIFY_TIMEOUT_S = 30.0


def learned_playbook_id(component: str, fix_action: str, fix_target: str | None) -> str:
    digest = hashlib.sha256(f"{component}|{fix_action}|{fix_target}".encode()).hexdigest()
    return f"PLAY-LEARNED-{digest[:8].upper()}-001"


def learned_playbook(
    component: str,
    error_id: str,
    fix_action: str,
    fix_target: str | None,
    *,
    actions: Mapping[str, ActionSpec],
) -> Playbook | None:
    """The learned fix as a playbook, or None when the fix cannot run unattended here.

    It cannot when the action is unknown to this supervisor, needs a target it
    was not given, or needs parameters (a person's fix recorded without them).
    """
    spec = actions.get(fix_action)
    if spec is None or (spec.needs_target and not fix_target):
        return None
    try:
        spec.params_model.model_validate({})
    except ValidationError:
        return None
    target = f" {fix_target}" if fix_target else ""
    return Playbook.model_validate(
        {
            "id": learned_playbook_id(component, fix_action, fix_target),
            "name": f"Learned fix: {fix_action}{target} for {component}",
            "version": LEARNED_VERSION,
            "description": "Built by the failure memory from fixes that worked before.",
            "trigger": {"component": component, "error_ids": [error_id]},
            "limits": {"max_attempts": 1, "cooldown_seconds": 0},
            "steps": [
                {
                    "id": "learned_fix",
                    "name": f"{fix_action}{target}",
                    "action": fix_action,
                    "target": fix_target,
                    "timeout_seconds": FIX_TIMEOUT_S,
                    "on_success": "verify",
                    "on_failure": "escalate",
                },
                {
                    "id": "verify",
                    "name": f"Verify {component}",
                    "action": "wait_for_health",
                    "target": component,
                    "timeout_seconds": VERIFY_TIMEOUT_S,
                    "on_success": "done",
                    "on_failure": "escalate",
                },
            ],
        }
    )
