"""Load playbook files: parse, validate the model, then check the step graph.

Everything a file gets wrong is reported at once, each problem with its line
and field. One bad playbook is reported and skipped; the others load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.errors import PlaybookError, SourceProblem
from graylogic_supervisor.playbooks.expressions import ExpressionError
from graylogic_supervisor.playbooks.graph import graph_problems
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.playbooks.templates import compile_template
from graylogic_supervisor.yamlsource import (
    LocatedData,
    PathKey,
    dotted,
    load_located,
    problems_from_validation,
    validate_located,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPlaybook:
    playbook: Playbook
    file: Path
    source: str
    id_line: int | None


def load_playbook(
    file: Path, actions: Mapping[str, ActionSpec], text: str | None = None
) -> LoadedPlaybook:
    """Load one playbook file or raise ``PlaybookError`` naming every problem."""
    located = load_located(file, PlaybookError, text)
    if not isinstance(located.data, dict):
        raise PlaybookError(file, [SourceProblem(file, 1, "", "a playbook is a YAML mapping")])
    playbook = validate_located(located, Playbook, PlaybookError)
    problems = playbook_problems(located, playbook, actions)
    if problems:
        raise PlaybookError(file, problems)
    source = text if text is not None else file.read_text(encoding="utf-8")
    return LoadedPlaybook(playbook, file, source, located.line_of(("id",)))


def validate_playbook_data(
    name: Path, data: Mapping[str, object], actions: Mapping[str, ActionSpec]
) -> Playbook:
    """Playbook data built in memory (a proposed version), checked exactly as a file is,
    without the YAML round trip; problems name fields, not lines."""
    located = LocatedData(name, dict(data))
    playbook = validate_located(located, Playbook, PlaybookError)
    problems = playbook_problems(located, playbook, actions)
    if problems:
        raise PlaybookError(name, problems)
    return playbook


def playbook_problems(
    located: LocatedData, playbook: Playbook, actions: Mapping[str, ActionSpec]
) -> list[SourceProblem]:
    """What a valid model can still get wrong: the graph, the actions, the expressions."""
    problems = [_locate(located, where, message) for where, message in graph_problems(playbook)]
    problems += _action_problems(located, playbook, actions)
    problems += _expression_problems(located, playbook)
    return problems


def load_directory(
    directory: Path, actions: Mapping[str, ActionSpec]
) -> tuple[list[LoadedPlaybook], list[PlaybookError]]:
    """Every ``*.yaml`` in ``directory``: the good ones, and the errors of the bad ones."""
    return load_files(sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]), actions)


def load_files(
    files: Iterable[Path], actions: Mapping[str, ActionSpec]
) -> tuple[list[LoadedPlaybook], list[PlaybookError]]:
    loaded: list[LoadedPlaybook] = []
    errors: list[PlaybookError] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            item = load_playbook(file, actions)
        except PlaybookError as exc:
            errors.append(exc)
            continue
        first = seen.get(item.playbook.id)
        if first is not None:
            errors.append(
                PlaybookError(
                    file,
                    [
                        SourceProblem(
                            file,
                            item.id_line,
                            "id",
                            f"playbook id {item.playbook.id} is also in {first}",
                        )
                    ],
                )
            )
            continue
        seen[item.playbook.id] = file
        loaded.append(item)
    return loaded, errors


def _locate(located: LocatedData, where: PathKey, message: str) -> SourceProblem:
    return SourceProblem(located.file, located.line_of(where), dotted(where), message)


def _action_problems(
    located: LocatedData, playbook: Playbook, actions: Mapping[str, ActionSpec]
) -> list[SourceProblem]:
    problems = []
    for index, step in enumerate(playbook.steps):
        if step.parallel is not None:
            for branch_index, branch in enumerate(step.parallel.branches):
                where = ("steps", index, "parallel", "branches", branch_index)
                problems += _call_problems(
                    located,
                    where,
                    branch.action,
                    branch.target,
                    params=branch.params,
                    actions=actions,
                )
                if branch.compensate is not None:
                    undo = branch.compensate
                    problems += _call_problems(
                        located,
                        (*where, "compensate"),
                        undo.action,
                        undo.target,
                        params=undo.params,
                        actions=actions,
                    )
            continue
        problems += _call_problems(
            located, ("steps", index), step.action, step.target, params=step.params, actions=actions
        )
        if step.compensate is not None:
            undo = step.compensate
            problems += _call_problems(
                located,
                ("steps", index, "compensate"),
                undo.action,
                undo.target,
                params=undo.params,
                actions=actions,
            )
    return problems


def _expression_problems(located: LocatedData, playbook: Playbook) -> list[SourceProblem]:
    """Steps named in conditions must exist; templates in targets and params must compile."""
    known = {step.id for step in playbook.steps}
    problems = []
    for index, step in enumerate(playbook.steps):
        for field in ("when", "success_when"):
            expression = getattr(step, field)
            for name in sorted(expression.step_refs - known) if expression else []:
                problems.append(_locate(located, ("steps", index, field), f"unknown step {name!r}"))
    return problems


def _template_problems(
    located: LocatedData, where: PathKey, target: str | None, params: Mapping[str, object]
) -> list[SourceProblem]:
    texts: list[tuple[PathKey, str]] = [((*where, "target"), target)] if target else []
    texts += [
        ((*where, "params", key), value) for key, value in params.items() if isinstance(value, str)
    ]
    problems = []
    for path, text in texts:
        if "{" not in text and "}" not in text:
            continue
        try:
            compile_template(text)
        except ExpressionError as exc:
            problems.append(_locate(located, path, str(exc)))
    return problems


def _call_problems(
    located: LocatedData,
    where: PathKey,
    action: str,
    target: str | None,
    *,
    params: Mapping[str, object],
    actions: Mapping[str, ActionSpec],
) -> list[SourceProblem]:
    """An action called with a target and params (a step, or a step's compensation)."""
    spec = actions.get(action)
    if spec is None:
        known = ", ".join(sorted(actions))
        return [_locate(located, (*where, "action"), f"unknown action {action!r} (known: {known})")]
    problems = _template_problems(located, where, target, params)
    if spec.needs_target and not target:
        problems.append(_locate(located, (*where, "target"), f"action {action!r} needs a target"))
    templated = {k for k, v in params.items() if isinstance(v, str) and "{" in v}
    try:
        spec.params_model.model_validate(dict(params))
    except ValidationError as caught:
        # a templated value is checked when it is rendered, at run time
        errors = [e for e in caught.errors() if not (e["loc"] and e["loc"][0] in templated)]
        if errors:
            problems += _param_problems(located, where, params, caught, errors=errors)
    return problems


def _param_problems(
    located: LocatedData,
    where: PathKey,
    params: Mapping[str, object],
    exc: ValidationError,
    *,
    errors: list[Any],
) -> list[SourceProblem]:
    depth = len(where) + 1
    params_data = LocatedData(
        located.file,
        dict(params),
        {
            key[depth:]: line
            for key, line in located.lines.items()
            if key[:depth] == (*where, "params")
        },
    )
    problems = []
    for problem in problems_from_validation(params_data, exc, errors):
        field = dotted((*where, "params")) + (f".{problem.field}" if problem.field else "")
        line = problem.line or located.line_of((*where, "params"))
        problems.append(SourceProblem(located.file, line, field, problem.message))
    return problems
