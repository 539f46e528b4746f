"""``graylogic-supervisor why ID``: why the supervisor did what it did, from the records.

For an execution, a failure or an incident: the failure, the memory's decision
record (what it matched, with what scores, what it chose and what it set
aside), every viability evaluation of the incident, and the executions.

For a recommendation (rec-…): its evidence and figures, its confidence, the
analysis that made it (and that analysis's verdict on it), its decision and who
decided. For a rollback (rollback-…): the version, the comparison's figures, the
trigger, and who or what rolled it back (``learning/reasons.py``).
"""

from __future__ import annotations

from typing import Any

from graylogic_supervisor.domain.outcomes import MANUAL_INTERVENTION
from graylogic_supervisor.learning.reasons import candidate_line, figure_line, rollback_lines
from graylogic_supervisor.store.analyses import AnalysisRepository
from graylogic_supervisor.store.learning import LearningRepository, StoredRecommendation
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


async def explain_learning(
    store: LearningRepository, analyses: AnalysisRepository, identifier: str
) -> list[str] | None:
    """Readable lines for a recommendation or a rollback, or None when it is neither."""
    if identifier.startswith("rollback-"):
        rollback = await store.rollback(identifier)
        return None if rollback is None else rollback_lines(rollback)
    if not identifier.startswith("rec-"):
        return None
    rec = await store.get(identifier)
    if rec is None:
        return None
    lines = _recommendation(rec)
    analysis_id = await analyses.of_recommendation(rec.id)
    analysis = None if analysis_id is None else await analyses.get(analysis_id)
    if analysis is None:
        lines.append("made by an analysis no longer kept (or before analyses were linked)")
    else:
        lines.append(
            f"made by analysis {analysis['id']} ({analysis['trigger']}) at"
            f" {analysis['finished_at']}"
        )
        lines += _verdict_of(rec, analysis["report"])
    lines += _decision_of(rec)
    return lines


def _recommendation(rec: StoredRecommendation) -> list[str]:
    times = rec.expected_impact.get("resolution_time_s", {})
    success = rec.expected_impact.get("success_rate", {})
    lines = [
        f"recommendation {rec.id} for {rec.playbook_id} {rec.base_version} ({rec.type},"
        f" priority {rec.priority}{', as a trial' if rec.trial else ''}): {rec.summary}",
        f"  confidence {rec.confidence:.2f} from {rec.sample_size} executions;"
        f" {rec.expected_impact.get('method', '')}",
    ]
    if times:
        lines.append(
            f"  expected resolution time {times['current']} s -> {times['proposed']} s;"
            f" success rate {success.get('current')} -> {success.get('proposed')}"
        )
    pattern = rec.evidence.get("pattern")
    if pattern:
        lines.append(f"  evidence: {pattern['description']} ({pattern['occurrences']} times)")
    finding = rec.evidence.get("finding")
    if finding:
        lines.append(f"  answers the finding: {finding['description']}")
    executions = rec.evidence.get("execution_ids") or []
    if executions:
        lines.append(
            f"  executions behind it: {', '.join(executions[-5:])}"
            + (f" and {len(executions) - 5} more" if len(executions) > 5 else "")
        )
    earlier = rec.evidence.get("earlier_rejection")
    if earlier:
        lines.append(f"  rejected before by {earlier['by']}: {earlier['reason']}")
    return lines


def _verdict_of(rec: StoredRecommendation, report: dict[str, Any]) -> list[str]:
    """The analysis's own entry for this change: its verdict in words and its figures."""
    for playbook in report.get("playbooks", []):
        if playbook["playbook_id"] != rec.playbook_id:
            continue
        for entry in playbook.get("considered", []):
            # a change modified at approval is stored as approved; the summary stays
            if entry["change"] == rec.change or rec.summary.startswith(entry["summary"]):
                lines = [f"  its verdict: {candidate_line(entry)}"]
                if entry["change"] != rec.change:
                    lines.append(
                        f"  approved with a modified change: {rec.change}"
                        f" (the analysis judged {entry['change']})"
                    )
                if entry.get("figures"):
                    lines.append(f"  figures: {figure_line(entry['figures'])}")
                return lines
    return []


def _decision_of(rec: StoredRecommendation) -> list[str]:
    if rec.decided_at is None:
        return [
            f"decision: {rec.status}, waiting for an admin or system owner until {rec.expires_at}"
        ]
    line = f"decision: {rec.status} by {rec.decided_by} at {rec.decided_at}"
    if rec.decision_reason:
        line += f": {rec.decision_reason}"
    if rec.new_version:
        line += f" (version {rec.new_version})"
    lines = [line]
    check = rec.prediction_check
    if check:
        realised = check.get("resolution_time_s", {})
        lines.append(
            f"  predicted and realised by {check.get('version')}: resolution time change"
            f" {realised.get('predicted_change')} s predicted, {realised.get('realised_change')} s"
            " realised"
        )
    return lines
