"""Where a learned pattern stands: its history against the one asked for, and its own record.

One place for what the CLI (``memory patterns``) and the failure memory page show, so
that both say what ``FailureMemory.decide`` would do with the pattern's fix: wait for
more history, run first (when a failure fits it confidently), or never run first
(flagged for review, or held back after failing its last runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from graylogic_supervisor.config import MemoryConfig
from graylogic_supervisor.memory.learned import learned_playbook_id
from graylogic_supervisor.store.memory import LearnedFixUse, StoredPattern


@dataclass(frozen=True)
class PatternStanding:
    """A pattern's figures as shown: history, runs first, resolutions, and its state."""

    pattern: StoredPattern
    history: int  # alike failures behind it: its members' occurrences
    min_history: int
    learned_playbook_id: str
    fix_use: LearnedFixUse | None  # the learned fix's own record, all evidence together
    state: str  # "waits for history", "may run first", "flagged for review", "held back"
    detail: str

    @property
    def ran_first(self) -> int:
        return self.pattern.times_matched

    @property
    def resolved(self) -> int:
        return self.pattern.times_resolved

    @property
    def success_rate(self) -> float | None:
        return self.pattern.success_rate

    @property
    def last_used(self) -> datetime | None:
        return self.pattern.last_matched


def standing(
    pattern: StoredPattern, uses: Mapping[str, LearnedFixUse], settings: MemoryConfig
) -> PatternStanding:
    """The pattern's standing under ``settings``, its learned fix's record from ``uses``."""
    playbook_id = learned_playbook_id(pattern.component, pattern.fix_action, pattern.fix_target)
    use = uses.get(playbook_id)
    history, needed = pattern.occurrences, settings.learned_fix_min_history
    if pattern.flagged_for_review:
        state, detail = "flagged for review", pattern.flag_reason or ""
    elif use is not None and use.failed_in_a_row >= settings.review_min_matches:
        state = "held back"
        detail = f"failed its last {use.failed_in_a_row} runs ahead of the playbook"
    elif history < needed:
        state = "waits for history"
        detail = f"not enough history ({history} of {needed}): the playbook runs first"
    else:
        state = "may run first"
        detail = f"history {history} of {needed}; runs first when a failure fits it confidently"
    return PatternStanding(
        pattern=pattern,
        history=history,
        min_history=needed,
        learned_playbook_id=playbook_id,
        fix_use=use,
        state=state,
        detail=detail,
    )
