"""Small server-rendered SVG drawings: a line chart and a playbook's step graph.

Markup is built from numbers and escaped text only, so nothing a user typed can
become markup; the page needs no script and no external asset.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from graylogic_supervisor.playbooks.model import DONE, ESCALATE, Playbook

WIDTH, HEIGHT, PAD = 600, 160, 32


def line_chart(
    points: Sequence[tuple[str, float | None]], unit: str, maximum: float | None = None
) -> str:
    """Daily values (label, value or None for a day without data) as a polyline."""
    values = [v for _, v in points if v is not None]
    if not values:
        return '<p class="muted">No executions in this period.</p>'
    top = maximum if maximum is not None else max(values) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(points) - 1, 1)

    def y(value: float) -> float:
        return HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD)

    dots, line = [], []
    for index, (label, value) in enumerate(points):
        if value is None:
            continue
        x = PAD + index * step
        line.append(f"{x:.1f},{y(value):.1f}")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="3"><title>{escape(label)}:'
            f" {value:.3g} {escape(unit)}</title></circle>"
        )
    first, last = escape(points[0][0]), escape(points[-1][0])
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img"'
        f' aria-label="{escape(unit)} per day">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"'
        ' stroke="#8c959f"/>'
        f'<text x="{PAD}" y="{PAD - 8}" font-size="11">{top:.3g} {escape(unit)}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{last}</text>'
        f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{" ".join(line)}"/>'
        f'<g fill="#0969da">{"".join(dots)}</g></svg>'
    )


def step_graph(playbook: Playbook) -> str:
    """Steps top to bottom in file order, success edges on the right (green), failure
    edges on the left (red), ``done`` and ``escalate`` at the bottom."""
    nodes = [step.id for step in playbook.steps] + [DONE, ESCALATE]
    row = {name: index for index, name in enumerate(nodes)}
    box_w, box_h, gap, left = 220, 30, 22, 170
    height = len(nodes) * (box_h + gap) + gap
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>"
    ]

    def top(name: str) -> int:
        return gap + row[name] * (box_h + gap)

    for step in playbook.steps:
        for field, colour, side in (("on_success", "#1a7f37", 1), ("on_failure", "#b42318", -1)):
            target = playbook.resolve_transition(step, getattr(step, field))
            if target not in row:
                continue
            start_y, end_y = top(step.id) + box_h / 2, top(target) + box_h / 2
            x = left + box_w if side > 0 else left
            bend = x + side * (24 + 10 * abs(row[target] - row[step.id]))
            parts.append(
                f'<path d="M{x},{start_y} C{bend},{start_y} {bend},{end_y} {x},{end_y}"'
                f' fill="none" stroke="{colour}" stroke-width="1.6" marker-end="url(#arrow)">'
                f"<title>{escape(step.id)} {field.removeprefix('on_')} → {escape(target)}"
                "</title></path>"
            )
    for name in nodes:
        terminal = name in (DONE, ESCALATE)
        label = name if terminal else f"{name}: {playbook.step(name).action}"
        fill = "#dafbe1" if name == DONE else "#ffebe9" if name == ESCALATE else "#f6f8fa"
        parts.append(
            f'<rect x="{left}" y="{top(name)}" width="{box_w}" height="{box_h}" rx="5"'
            f' fill="{fill}" stroke="#57606a"/>'
            f'<text x="{left + box_w / 2}" y="{top(name) + 19}" font-size="12"'
            f' text-anchor="middle">{escape(label[:34])}</text>'
        )
    return (
        f'<svg class="drawing" viewBox="0 0 {left * 2 + box_w} {height}" width="100%" role="img"'
        f' aria-label="steps and transitions of {escape(playbook.id)}">{"".join(parts)}</svg>'
    )


def timeline(rows: Sequence[dict[str, object]]) -> str:
    """A Gantt-like view: one bar per recorded attempt, offset from the first start."""
    spans = [r for r in rows if isinstance(r.get("offset_s"), float)]
    if not spans:
        return '<p class="muted">No steps recorded.</p>'
    end = max(float(r["offset_s"]) + float(r["duration_s"] or 0.0) for r in spans) or 1.0  # type: ignore[arg-type]
    label_w, bar_w, row_h = 190, 380, 22
    colours = {
        "success": "#2da44e",
        "failure": "#cf222e",
        "timeout": "#bc4c00",
        "error": "#8250df",
        "skipped": "#8c959f",
        "running": "#0969da",
        "interrupted": "#9a6700",
    }
    parts = []
    for index, r in enumerate(spans):
        y = 8 + index * row_h
        x = label_w + float(r["offset_s"]) / end * bar_w  # type: ignore[arg-type]
        width = max(2.0, float(r["duration_s"] or 0.0) / end * bar_w)  # type: ignore[arg-type]
        outcome = str(r["outcome"])
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{escape(str(r["label"])[:28])}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{row_h - 6}"'
            f' fill="{colours.get(outcome, "#57606a")}"><title>{escape(str(r["label"]))}:'
            f" {escape(outcome)}, {float(r['duration_s'] or 0.0):.3f} s</title></rect>"  # type: ignore[arg-type]
        )
    height = 16 + len(spans) * row_h
    return (
        f'<svg class="drawing" viewBox="0 0 {label_w + bar_w + 10} {height}" width="100%"'
        f' role="img" aria-label="timeline of the steps">{"".join(parts)}'
        f'<text x="{label_w + bar_w}" y="{height - 2}" font-size="11" text-anchor="end">'
        f"{end:.2f} s</text></svg>"
    )
