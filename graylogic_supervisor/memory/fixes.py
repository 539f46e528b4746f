"""A technician's resolution, checked before the memory learns from it.

The one place ``memory resolve``, the failure page and the API record what
fixed a failure. The fix action must be one this site can run (built-in or
plugin) that changes something (kind ``fix``), and its target a configured
service or component, or the memory would learn a fix nothing can repeat and
learning would pass over it silently. A near typo gets a "did you mean".

A fix no action can repeat (a replaced SD card, a re-seated cable) is still
recorded: give no fix action, or ``manual``. It is stored with no
``fix_action``, so the memory shows it and counts the failure resolved by a
person, but never proposes it as an automatic fix.

A failure already resolved, by the supervisor or a person, is replaced only
with ``force``: the check and the write are one transaction in the store.

The same transaction writes the resolution onto the failure's executions that
no step resolved (``resolved_by: manual_intervention``, ``what_fixed_it``): the
execution page, its JSON and ``why`` then say what fixed it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.memory import Resolution
from graylogic_supervisor.store.memory import AlreadyResolvedError, MemoryRepository

MANUAL = "manual"

Refusal = Literal["invalid", "unknown_failure", "already_resolved"]


class ResolutionRefused(Exception):
    """Why a resolution was not recorded; ``kind`` maps to an exit code or HTTP status."""

    def __init__(self, kind: Refusal, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class FixCatalog:
    """What a fix may name here: the registry's actions, and the configured targets.

    An empty ``targets`` means they are not known (a tool without the config):
    any target is then accepted.
    """

    actions: Mapping[str, ActionSpec]
    targets: frozenset[str] = frozenset()

    def problem(self, action: str | None, target: str | None) -> str | None:
        """Why (``action``, ``target``) cannot be a recorded fix, or None."""
        if action is None or action == MANUAL:
            return None
        fixes = sorted(name for name, spec in self.actions.items() if spec.kind == ActionKind.FIX)
        spec = self.actions.get(action)
        if spec is None:
            return (
                f"unknown fix action {action!r}{_suggest(action, fixes)} (fix actions here:"
                f" {', '.join(fixes)}; or {MANUAL!r} for a fix no action can repeat)"
            )
        if spec.kind != ActionKind.FIX:
            return (
                f"{action!r} is a {spec.kind.value} action and cannot be what fixed it"
                f" (fix actions here: {', '.join(fixes)}; or {MANUAL!r})"
            )
        known = ", ".join(sorted(self.targets)) or "none configured"
        if spec.needs_target and not target:
            return f"{action!r} needs a target (configured: {known})"
        if target and self.targets and target not in self.targets:
            return (
                f"unknown target {target!r}{_suggest(target, self.targets)}"
                f" (configured services and components: {known})"
            )
        return None

    def note(self, action: str | None) -> str | None:
        """What a person should know of a valid fix the memory cannot repeat by itself."""
        spec = self.actions.get(action) if action else None
        if spec is None:
            return None
        required = [n for n, f in spec.params_model.model_fields.items() if f.is_required()]
        if not required:
            return None
        return (
            f"{action!r} needs parameters ({', '.join(required)}): recorded, but the memory"
            " cannot repeat it unattended"
        )


async def record_resolution(
    repository: MemoryRepository,
    catalog: FixCatalog,
    failure_id: str,
    resolution: Resolution,
    *,
    now: datetime,
    force: bool,
) -> Resolution:
    """Check and write a person's resolution; returns what was stored.

    Raises ``ResolutionRefused``: ``invalid`` (action or target), ``unknown_failure``,
    ``already_resolved`` (without ``force``; the message says who resolved it and how).
    """
    action = resolution.fix_action.strip() if resolution.fix_action else None
    target = resolution.fix_target.strip() if resolution.fix_target else None
    problem = catalog.problem(action or None, target or None)
    if problem is not None:
        raise ResolutionRefused("invalid", problem)
    stored = resolution.model_copy(
        update={
            "fix_action": None if action in (None, "", MANUAL) else action,
            "fix_target": target or None,
        }
    )
    try:
        found = await repository.resolve(failure_id, stored, now, replace=force, by_hand=True)
    except AlreadyResolvedError as exc:
        earlier = exc.resolution
        how = earlier.fix_action or MANUAL
        raise ResolutionRefused(
            "already_resolved",
            f"{failure_id} was already resolved by {earlier.fixed_by} at"
            f" {isoformat(earlier.resolved_at)} ({how}: {earlier.what_fixed_it}); it is kept"
            " unless replaced on purpose",
        ) from exc
    if not found:
        raise ResolutionRefused("unknown_failure", f"the memory has no failure {failure_id}")
    return stored


def configured_targets(services: Iterable[str], components: Iterable[str]) -> frozenset[str]:
    """The names a fix may act on: the supervised services and the configured components."""
    return frozenset(services) | frozenset(components)
