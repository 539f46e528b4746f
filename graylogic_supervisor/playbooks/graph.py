"""Checks on a playbook's step graph that a field-by-field model cannot make."""

from __future__ import annotations

from graylogic_supervisor.playbooks.model import NEXT, TERMINALS, Playbook
from graylogic_supervisor.yamlsource import PathKey


def graph_problems(playbook: Playbook) -> list[tuple[PathKey, str]]:
    """Duplicate ids, dangling transitions, unreachable steps and unbounded loops."""
    problems: list[tuple[PathKey, str]] = []
    seen: set[str] = set()
    for index, step in enumerate(playbook.steps):
        if step.id in seen:
            problems.append((("steps", index, "id"), f"duplicate step id {step.id!r}"))
        seen.add(step.id)
    if problems:
        return problems

    if playbook.uses_needs:
        return needs_problems(playbook)

    ids = {step.id for step in playbook.steps}
    last = len(playbook.steps) - 1
    edges: dict[str, list[str]] = {}
    for index, step in enumerate(playbook.steps):
        edges[step.id] = []
        for field in ("on_success", "on_failure"):
            target = getattr(step, field)
            if target == NEXT:
                if index == last:
                    problems.append(
                        (("steps", index, field), "'next' on the last step leads nowhere")
                    )
                    continue
                target = playbook.steps[index + 1].id
            elif target not in ids and target not in TERMINALS:
                problems.append((("steps", index, field), f"transition to unknown step {target!r}"))
                continue
            if target in ids:
                edges[step.id].append(target)
    if problems:
        return problems

    reachable = _reachable(playbook.steps[0].id, edges)
    for index, step in enumerate(playbook.steps):
        if step.id not in reachable:
            problems.append((("steps", index, "id"), f"step {step.id!r} can never be reached"))

    index_of = {step.id: i for i, step in enumerate(playbook.steps)}
    for cycle in _cycles(edges):
        if not any(playbook.step(step_id).max_visits for step_id in cycle):
            first = min(cycle, key=index_of.__getitem__)
            loop = " -> ".join([*sorted(cycle, key=index_of.__getitem__), first])
            problems.append(
                (
                    ("steps", index_of[first]),
                    f"loop with no bound ({loop}): set max_visits on one of its steps",
                )
            )
    return problems


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for target in edges[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _cycles(edges: dict[str, list[str]]) -> list[set[str]]:
    """Strongly connected components that contain a cycle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                found.append(component)

    for node in edges:
        if node not in index:
            visit(node)
    return found


def needs_problems(playbook: Playbook) -> list[tuple[PathKey, str]]:
    """A playbook ordered by ``needs``: known steps, no cycle, and no transitions of its own."""
    problems: list[tuple[PathKey, str]] = []
    ids = {step.id for step in playbook.steps}
    index_of = {step.id: i for i, step in enumerate(playbook.steps)}
    for index, step in enumerate(playbook.steps):
        for position, need in enumerate(step.needs):
            if need not in ids:
                problems.append((("steps", index, "needs", position), f"unknown step {need!r}"))
        if (step.on_success, step.on_failure) != (NEXT, "escalate") or step.max_visits:
            problems.append(
                (
                    ("steps", index),
                    "a playbook ordered by needs has no transitions: drop on_success,"
                    " on_failure and max_visits",
                )
            )
    if problems:
        return problems
    edges = {step.id: list(step.needs) for step in playbook.steps}
    for cycle in _cycles(edges):
        first = min(cycle, key=index_of.__getitem__)
        loop = " -> ".join([*sorted(cycle, key=index_of.__getitem__), first])
        problems.append((("steps", index_of[first], "needs"), f"needs form a cycle ({loop})"))
    return problems
