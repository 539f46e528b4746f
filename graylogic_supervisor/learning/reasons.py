"""The learning's decisions in words: an analysis's findings and its verdict on every
candidate, a rollback's investigation, a recommendation's story. One place, so the
analyses page, ``analyze show``, the rollback page and ``why`` say the same thing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FINDING_TITLES = {
    "bottlenecks": "Bottlenecks",
    "low_success_steps": "Low-success steps",
    "never_help": "Steps that never help",
    "skip_conditions": "Skip conditions",
    "missing_fixes": "Missing fixes",
    "timeouts": "Timeouts",
    "paths": "Paths",
}


def finding_lines(name: str, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per item of the finding ``name`` (unknown kinds as their fields)."""
    return [_finding(name, item) for item in items]


def _finding(name: str, item: Mapping[str, Any]) -> str:
    if name == "bottlenecks":
        return (
            f"{item['step']} takes {item['share_of_step_time']:.0%} of the step time"
            f" (success rate {item['success_rate']:.0%})"
        )
    if name == "low_success_steps":
        return (
            f"{item['step']} succeeds {item['success_rate']:.0%} of the time over"
            f" {item['executions']} executions"
        )
    if name == "never_help":
        always = f", always {item['always']}" if item.get("always") else ""
        return f"{item['step']} never fixed the failure in {item['executions']} executions{always}"
    if name == "skip_conditions":
        return f"{item['step']} never succeeded after {item['after']} ({item['runs']} runs)"
    if name == "missing_fixes":
        return (
            f"technicians fixed {item['escalations_it_fixed']} escalations with {item['action']},"
            " which the playbook does not run"
        )
    if name == "timeouts":
        return f"{item['step']} timed out {item['timeouts']} times in {item['attempts']} attempts"
    if name == "paths":
        return (
            f"{' -> '.join(item['path'])}: {item['frequency']:.0%} of executions"
            f" ({item['executions']}), {item['success_rate']:.0%} resolved"
        )
    return ", ".join(f"{k} {v}" for k, v in item.items())


def figure_line(figures: Mapping[str, Any]) -> str:
    """A candidate's figures: what replay expected, and the gate it met or missed."""
    if not figures or "current_time_s" not in figures:
        if figures.get("removes_a_verification"):
            return "removes or bypasses a last health verification: never allowed"
        return "not replayed"
    before, after = figures["current_success_rate"], figures["proposed_success_rate"]
    text = (
        f"expected time {figures['current_time_s']:.1f} s -> {figures['proposed_time_s']:.1f} s;"
        f" resolved {before:.0%} -> {after:.0%};"
        f" confidence {figures['confidence']:.2f} (threshold {figures['confidence_threshold']:g})"
        f" over {figures['executions']} executions"
    )
    if figures.get("guessed_share"):
        text += f"; {figures['guessed_share']:.0%} of it rests on what no execution recorded"
    if "trial_confidence" in figures:
        text += (
            f"; as a trial: pays off if it fixes {figures['break_even_fix_chance']:.0%} where"
            f" untried (confidence {figures['trial_confidence']:.2f})"
        )
    return text


def candidate_line(considered: Mapping[str, Any]) -> str:
    """``summary: verdict`` (a report from before in_words carries the verdict only)."""
    words = considered.get("in_words") or considered["verdict"]
    return f"{considered['summary']}: {words}"


def analysis_lines(analysis: Mapping[str, Any]) -> list[str]:
    """Everything an analysis decided, for a terminal."""
    report = analysis["report"]
    lines = [
        f"analysis {analysis['id']} ({analysis['trigger']}) {analysis['started_at']} to"
        f" {analysis['finished_at']}: {analysis['recommendations']} new recommendations"
    ]
    if report.get("recommendations"):
        lines.append(f"  recommendations: {', '.join(report['recommendations'])}")
    for playbook in report.get("playbooks", []):
        lines.append(
            f"{playbook['playbook_id']} {playbook['version']}: {playbook['executions']}"
            f" executions ({playbook['new_executions']} in the window)"
        )
        if playbook.get("note"):
            lines.append(f"  {playbook['note']}")
        for name, items in playbook.get("findings", {}).items():
            if items:
                lines.append(f"  {FINDING_TITLES.get(name, name)}:")
                lines += [f"    {line}" for line in finding_lines(name, items)]
        considered = playbook.get("considered", [])
        lines.append(f"  {len(considered)} candidates considered:")
        for entry in considered:
            mark = "+" if entry.get("accepted", entry["verdict"] == "recommended") else "-"
            lines.append(f"    {mark} {candidate_line(entry)}")
            if entry.get("findings"):
                lines.append(f"      answers: {'; '.join(entry['findings'])}")
            if entry.get("figures"):
                lines.append(f"      {figure_line(entry['figures'])}")
        for held in playbook.get("held_back", []):
            lines.append(f"  held back by an earlier rejection: {held['summary']}")
    return lines


def rollback_lines(rollback: Mapping[str, Any]) -> list[str]:
    """A rollback's investigation report as sentences: what, who, on which figures."""
    report = rollback["report"]
    who = "the supervisor's automatic rule" if rollback["by"] == "supervisor" else rollback["by"]
    lines = [
        f"{rollback['playbook_id']} {rollback['from_version']} was rolled back to"
        f" {rollback['to_version']} at {rollback['at']} by {who}: {rollback['reason']}"
    ]
    baseline = report.get("baseline")
    if baseline:
        lines.append(f"It was compared with {baseline['version']}: {baseline['why']}.")
    stats = report.get("statistics") or {}
    success = stats.get("success_rate")
    if success:
        verdict = "worse beyond the margin" if success["rollback"] else "not shown worse"
        lines.append(
            f"Success rate {success['previous_success_rate']:.1%} of"
            f" {success['previous_executions']} before, {success['new_success_rate']:.1%} of"
            f" {success['new_executions']} after (z = {success['z']}, critical"
            f" {success['critical_z']}): {verdict}."
        )
    timing = stats.get("resolution_time")
    if timing:
        verdict = "slower beyond the margin" if timing["rollback"] else "not shown slower"
        lines.append(
            f"Mean resolution time {timing['previous_mean_s']} s over"
            f" {timing['previous_executions']} before, {timing['new_mean_s']} s over"
            f" {timing['new_executions']} after (t = {timing['t']}, critical"
            f" {timing['critical_t']}): {verdict}."
        )
    if report.get("manual"):
        lines.append("A person asked for it; the tests above are what the figures said then.")
    elif stats.get("rolled_back_on"):
        lines.append(f"The trigger: the {' and the '.join(stats['rolled_back_on'])} test.")
    for version in report.get("versions", []):
        approved = f", approved by {version['approved_by']}" if version.get("approved_by") else ""
        made = f" from {version['recommendation_id']}" if version.get("recommendation_id") else ""
        lines.append(
            f"Version {version['version']} was made by {version['created_by']}{made}{approved}"
            f" ({version['executions']} executions): {version['reason']}"
        )
    for change in report.get("changes", []):
        lines.append(f"Its change: {change['description']}")
    unresolved = report.get("unresolved_executions") or []
    if unresolved:
        lines.append(f"{len(unresolved)} executions of {rollback['from_version']} did not resolve.")
    rejected = report.get("rejected_recommendations") or []
    if rejected:
        lines.append(
            f"Remembered as rejected (not proposed again until the evidence triples):"
            f" {', '.join(rejected)}."
        )
    return lines
