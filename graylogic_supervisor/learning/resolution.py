"""What one execution cost until its failure was fixed: the figure rollback and the
prediction checks compare between versions.

An execution that resolved the failure (the component healthy after) cost its
duration. One that did not cost its duration plus the technician's time: the
failure memory's record of when a person resolved that failure, or, while no
person has recorded it, ``learning.manual_resolve_s``. This is the figure the
replay predicts (its expected resolution time counts the technician's time where
the playbook gives up), so a prediction and its realisation are in the same unit.
"""

from __future__ import annotations

from datetime import datetime

from graylogic_supervisor.store.learning import LearningRepository, ResolutionFacts


def technician_time_s(resolved_at: str | None, completed_at: str | None) -> float | None:
    """From the end of the execution to the person's recorded resolution, if recorded."""
    if not resolved_at or not completed_at:
        return None
    taken = datetime.fromisoformat(resolved_at) - datetime.fromisoformat(completed_at)
    return max(taken.total_seconds(), 0.0)


def resolution_time_s(facts: ResolutionFacts, manual_s: float) -> float:
    """One execution's cost until its failure was fixed."""
    duration = float(facts.duration_seconds or 0.0)
    if facts.success:
        return duration
    recorded = None
    if facts.memory_outcome == "resolved_by_human":
        recorded = technician_time_s(facts.memory_resolved_at, facts.completed_at)
    return duration + (manual_s if recorded is None else recorded)


async def recent_times(
    store: LearningRepository, playbook_id: str, version: str, *, limit: int, manual_s: float
) -> tuple[float, ...]:
    """The resolution times of the version's ``limit`` most recent counted executions."""
    facts = await store.resolution_facts(playbook_id, version, limit)
    return tuple(resolution_time_s(one, manual_s) for one in facts)
