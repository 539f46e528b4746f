"""The steps of a drafted playbook (``drafts.py``): the check, the fixes, the alert.

The check fits the component's kind (``check_mqtt`` for the broker,
``check_service`` on a service's or bridge's service, ``check_database``; any
other, or without its service, ``wait_for_health`` on the component); healthy
already, it ends at ``done``. Each fix is followed by a verification of the
component's health; a fix or a verification that fails goes on to the next
fix, the last to an alert, then ``escalate``. The result is validated as a
playbook file is.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.learning.changes import ChangeError, validated
from graylogic_supervisor.playbooks.model import DONE, DRAFT_ID_PREFIX, ESCALATE, Playbook

if TYPE_CHECKING:
    from graylogic_supervisor.config import SupervisorConfig

EVIDENCE_FAILURES = 20  # failure ids listed per fix
FIRST_VERSION = "1.0.0"
CHECK_TIMEOUT_S = 10.0
FIX_TIMEOUT_S = 60.0
VERIFY_TIMEOUT_S = 30.0
VERIFY = "wait_for_health"
ALERT = "alert"
# The check that fits a component's kind, with whether it acts on the service.
KIND_CHECKS: Mapping[str, tuple[str, bool]] = {
    "mqtt": ("check_mqtt", False),
    "service": ("check_service", True),
    "bridge": ("check_service", True),
    "database": ("check_database", False),
}


@dataclass(frozen=True)
class ComponentSite:
    kind: str
    service: str | None = None


@dataclass(frozen=True)
class DraftSite:
    """What the site configures: the targets a fix may name (empty: unknown, any) and
    each component's kind and service (for its health check)."""

    targets: frozenset[str] = frozenset()
    components: Mapping[str, ComponentSite] = field(default_factory=dict)


def draft_site(config: SupervisorConfig) -> DraftSite:
    services = [config.broker.service, *(s.name for s in config.services)]
    components = {
        name: ComponentSite(component.kind, getattr(component, "service", None))
        for name, component in config.components.items()
    }
    return DraftSite(frozenset(services) | frozenset(components), components)


@dataclass
class FixEvidence:
    """One fix (action and target) and how often it worked for one failure."""

    action: str
    target: str | None
    resolutions: int = 0  # failures people resolved with it (merged records count)
    failures: list[str] = field(default_factory=list)
    people: Counter[str] = field(default_factory=Counter)
    patterns: list[str] = field(default_factory=list)
    matched: int = 0  # the memory's learned fix: times tried, times it resolved
    resolved: int = 0
    pattern_failures: int = 0  # the failures its patterns were learned from

    @property
    def successes(self) -> int:
        return self.resolutions + self.resolved

    @property
    def rate(self) -> float:
        """Share of its tries that worked (a person's recorded fix worked, by definition)."""
        tries = self.resolutions + self.matched
        return self.successes / tries if tries else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "resolved_by_people": self.resolutions,
            "fixed_by": dict(self.people.most_common()),
            "failures": self.failures[:EVIDENCE_FAILURES],
            "memory_patterns": self.patterns,
            "learned_fix_tries": self.matched,
            "learned_fix_resolved": self.resolved,
            "successes": self.successes,
            "success_rate": round(self.rate, 4),
        }


def playbook_id_for(error_id: str, component: str) -> str:
    def part(text: str) -> str:
        return re.sub(r"[^A-Z0-9]+", "-", text.upper()).strip("-") or "X"

    rest = error_id.removeprefix("ERR-")
    return f"{DRAFT_ID_PREFIX}{part(component)}-{part(rest)}-001"


def _step_id(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return (cleaned if cleaned[:1].isalpha() else f"s_{cleaned}")[:60]


def why_unusable(fix: FixEvidence, specs: Mapping[str, ActionSpec], site: DraftSite) -> str | None:
    """Why ``fix`` cannot go into a draft here, or None."""
    spec = specs.get(fix.action)
    if spec is None:
        return f"no action {fix.action!r} here any more"
    if spec.kind is not ActionKind.FIX:
        return f"{fix.action!r} is a {spec.kind.value} action, not a fix"
    if spec.needs_target and not fix.target:
        return f"{fix.action!r} needs a target and none was recorded"
    if fix.target and site.targets and fix.target not in site.targets:
        return f"target {fix.target!r} is not configured here"
    required = [n for n, f in spec.params_model.model_fields.items() if f.is_required()]
    if required:
        return f"{fix.action!r} needs parameters ({', '.join(required)}) nobody recorded"
    return None


def _check_step(
    component: str, specs: Mapping[str, ActionSpec], site: DraftSite
) -> dict[str, Any] | None:
    """The component's health check as fits its kind; its health otherwise."""
    known = site.components.get(component)
    if known is not None and known.kind in KIND_CHECKS:
        action, on_service = KIND_CHECKS[known.kind]
        if action in specs and (not on_service or known.service):
            step: dict[str, Any] = {"id": "check", "name": f"Check {component}", "action": action}
            if on_service:
                step["target"] = known.service
            return step
    if VERIFY in specs:
        return {
            "id": "check",
            "name": f"Check {component}'s health",
            "action": VERIFY,
            "target": component,
        }
    return None


def _verification(
    component: str, check: dict[str, Any], index: int, specs: Mapping[str, ActionSpec]
) -> dict[str, Any]:
    """The component's health after a fix: ``wait_for_health`` where there is one, else
    the check again."""
    action: str = VERIFY if VERIFY in specs else check["action"]
    target: str | None = component if VERIFY in specs else check.get("target")
    step: dict[str, Any] = {
        "id": f"verify_{index}",
        "name": f"Verify {component} is healthy",
        "action": action,
        "timeout_seconds": VERIFY_TIMEOUT_S,
    }
    if target is not None:
        step["target"] = target
    return step


def draft_playbook(
    error_id: str,
    component: str,
    fixes: Sequence[FixEvidence],
    *,
    specs: Mapping[str, ActionSpec],
    site: DraftSite,
) -> Playbook:
    """The drafted playbook, validated as a file; raises ``ChangeError``."""
    check = _check_step(component, specs, site)
    if check is None:
        raise ChangeError(f"no action here can check {component}'s health")
    check["timeout_seconds"] = CHECK_TIMEOUT_S
    check["on_success"] = DONE
    last_exit = "notify" if ALERT in specs else ESCALATE
    ids: list[str] = []
    for index, fix in enumerate(fixes, start=1):
        step_id = _step_id(f"{fix.action}_{fix.target}" if fix.target else fix.action)
        ids.append(step_id if step_id not in ids else f"{step_id}_{index}")
    check["on_failure"] = ids[0]
    steps: list[dict[str, Any]] = [check]
    for index, (step_id, fix) in enumerate(zip(ids, fixes, strict=True), start=1):
        following = ids[index] if index < len(ids) else last_exit  # a fix that did not help
        fix_step: dict[str, Any] = {
            "id": step_id,
            "name": f"{fix.action} {fix.target or ''}".strip() + f" (fixed it {fix.successes}x)",
            "action": fix.action,
            "timeout_seconds": FIX_TIMEOUT_S,
            "on_success": DONE,
            "on_failure": following,
        }
        if fix.target:
            fix_step["target"] = fix.target
        steps.append(fix_step)
        verify = _verification(component, check, index, specs)
        verify["on_success"] = DONE
        verify["on_failure"] = following
        fix_step["on_success"] = verify["id"]
        steps.append(verify)
    if ALERT in specs:
        steps.append(
            {
                "id": "notify",
                "name": "Alert: the drafted fixes did not help",
                "action": ALERT,
                "params": {
                    "message": f"{error_id} on {component}: the drafted fixes did not help",
                    "severity": "high",
                },
                "timeout_seconds": CHECK_TIMEOUT_S,
                "on_success": ESCALATE,
                "on_failure": ESCALATE,
            }
        )
    data = {
        "id": playbook_id_for(error_id, component),
        "name": f"Draft recovery of {component} ({error_id})",
        "version": FIRST_VERSION,
        "description": (
            f"Drafted by the learning from technicians' fixes of {error_id} on {component};"
            " approved by a person."
        ),
        "trigger": {"component": component, "error_ids": [error_id]},
        "steps": steps,
    }
    return validated(data, specs)
