"""What every package may know of an action: its kind and what validation needs of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel


class ActionKind(StrEnum):
    """What an action does, which decides whether its success can be the fix.

    Most fixes succeed whether or not they removed the fault (a restart returns 0);
    only a VERIFY success says the component is healthy, so only a fix followed by one
    is credited with the repair (``runner.py``).
    """

    CHECK = "check"  # observes; never changes the system
    FIX = "fix"  # changes the system to repair it
    NOTIFY = "notify"  # tells people
    VERIFY = "verify"  # observes the failed component's health: succeeds only when healthy


@dataclass(frozen=True)
class ActionSpec:
    """What validation needs to know of an action, without its collaborators."""

    name: str
    kind: ActionKind
    params_model: type[BaseModel]
    needs_target: bool
