"""``graylogic-supervisor why ID``: why the supervisor did what it did, from the records.

For an execution, a failure or an incident: the failure, the memory's decision
record (what it matched, with what scores, what it chose and what it set
aside), every viability evaluation of the incident, and the executions.
"""

from __future__ import annotations

from typing import Any

from graylogic_supervisor.domain.outcomes import MANUAL_INTERVENTION
from graylogic_supervisor.store.records import ExecutionRecord
from graylogic_supervisor.store.views import RecordViews


async def explain(views: RecordViews, identifier: str) -> list[str] | None:
    """Readable lines, or None when the id is not an execution, failure or incident."""
    failure_id, incident_id = await views.failure_and_incident(identifier)
    if failure_id is None:
        return None
    lines: list[str] = []
    failure = await views.failure(failure_id)
    if failure is not None:
        lines.append(
            f"failure {failure.id} at {failure.detected_at}: {failure.component}"
            f" {failure.error_id} ({failure.severity}): {failure.message}"
        )
    remembered = await views.memory_record(failure_id)
    if remembered is not None:
        lines.append(f"memory: {remembered.outcome}")
        resolution = remembered.record.get("resolution")
        if resolution:
            fix = " ".join(p for p in (resolution["fix_action"], resolution.get("fix_target")) if p)
            fix = fix or "manual"  # a fix no action can repeat
            lines.append(
                f"  fixed by {resolution['fixed_by']}: {resolution['what_fixed_it']} ({fix})"
            )
    for note in reversed(await views.notes(failure_id, 20)):
        if note.action == "memory.decision":
            lines += _decision(note.detail)
        elif note.action == "memory.outcome":
            detail = note.detail
            worked = "worked" if detail["succeeded"] else "did not work"
            lines.append(f"learned fix {detail['fix']} {worked} ({detail['execution_id']})")
    if incident_id is not None:
        for evaluation in await views.evaluations(incident_id):
            verdict = "allowed" if evaluation.allowed else "denied"
            lines.append(
                f"policy at {evaluation.evaluated_at}: {verdict} ({evaluation.reason})"
                f" {evaluation.detail}"
            )
    for execution in await views.executions_of_failure(failure_id):
        lines.append(
            f"execution {execution.id} ({execution.kind}) {execution.playbook_id}"
            f" {execution.playbook_version}: {execution.status}{_by(execution)}"
            f" — {execution.detail}"
        )
    return lines


def _by(execution: ExecutionRecord) -> str:
    """Who resolved it and, for a technician's fix (``manual_intervention``), what it was."""
    if not execution.resolved_by:
        return ""
    if execution.resolved_by == MANUAL_INTERVENTION and execution.what_fixed_it:
        return f" by {execution.resolved_by} ({execution.what_fixed_it})"
    return f" by {execution.resolved_by}"


def _decision(record: dict[str, Any]) -> list[str]:
    lines = [f"memory decision: {record['why']}"]
    if record.get("chosen"):
        lines.append(f"  chosen: {record['chosen']}; set aside: {record.get('set_aside')}")
    evidence = record.get("evidence")
    if evidence:
        lines.append(
            f"  evidence: {evidence['source']} {evidence.get('pattern_id') or ''} fit"
            f" {evidence['fit']}, {evidence['successes']} successes of {evidence['sample_size']}"
            f" (estimate {evidence['success_rate_estimate']})" + _history(evidence, record)
        )
    for match in record.get("matched", []):
        features = ", ".join(f"{k} {v}" for k, v in match["features"].items())
        lines.append(f"  matched {match['failure_id']} score {match['score']}: {features}")
    return lines


def _history(evidence: dict[str, Any], record: dict[str, Any]) -> str:
    """The alike failures behind the fix against the history asked for (decisions recorded
    before issue 17 carry neither)."""
    if "history" not in evidence or "min_history" not in record:
        return ""
    return f", history {evidence['history']} of {record['min_history']} alike failures"
