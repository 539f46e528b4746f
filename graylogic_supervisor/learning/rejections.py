"""A rejected change stays rejected until its evidence has grown.

A change is known by its key: the playbook and the change itself, not the
version it was proposed for, so the same removal proposed again on the next
version is the same change. A person's rejection, and a rollback away from a
version a recommendation made, are remembered with the playbook's counted
executions at the time. The analysis proposes that change again only once the
playbook has ``GROWTH`` times as many counted executions (three times the
evidence the person or the rollback judged); when it does, the earlier rejection
(who, when, why, the executions then) goes into the recommendation's evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from graylogic_supervisor.store.rejections import Rejection

GROWTH = 3


def change_key(playbook_id: str, change: Mapping[str, Any]) -> str:
    text = json.dumps([playbook_id, change], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def holds_back(rejection: Rejection | None, executions_now: int) -> bool:
    """True while the evidence has not grown ``GROWTH``-fold since the rejection."""
    return rejection is not None and executions_now < GROWTH * max(rejection.executions, 1)


def earlier_rejection(rejection: Rejection, executions_now: int) -> dict[str, Any]:
    """What a recommendation proposed again shows beside it."""
    return {**rejection.as_dict(), "executions_now": executions_now, "growth_needed": GROWTH}
