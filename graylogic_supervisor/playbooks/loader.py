"""Load playbook files: parse, validate the model, then check the step graph.

Everything a file gets wrong is reported at once, each problem with its line
and field. One bad playbook is reported and skipped; the others load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from graylogic_supervisor.engine.action import ActionSpec
from graylogic_supervisor.errors import PlaybookError, SourceProblem
from graylogic_supervisor.playbooks.graph import graph_problems
from graylogic_supervisor.playbooks.model import Playbook
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
    problems = [_locate(located, where, message) for where, message in graph_problems(playbook)]
    problems += _action_problems(located, playbook, actions)
    if problems:
        raise PlaybookError(file, problems)
    source = text if text is not None else file.read_text(encoding="utf-8")
    return LoadedPlaybook(playbook, file, source, located.line_of(("id",)))


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
        spec = actions.get(step.action)
        if spec is None:
            known = ", ".join(sorted(actions))
            problems.append(
                _locate(
                    located,
                    ("steps", index, "action"),
                    f"unknown action {step.action!r} (known: {known})",
                )
            )
            continue
        if spec.needs_target and not step.target:
            problems.append(
                _locate(
                    located, ("steps", index, "target"), f"action {step.action!r} needs a target"
                )
            )
        try:
            spec.params_model.model_validate(step.params)
        except ValidationError as exc:
            params_data = LocatedData(
                located.file,
                step.params,
                {
                    key[3:]: line
                    for key, line in located.lines.items()
                    if key[:3] == ("steps", index, "params")
                },
            )
            for problem in problems_from_validation(params_data, exc):
                field = f"steps[{index}].params" + (f".{problem.field}" if problem.field else "")
                line = problem.line or located.line_of(("steps", index, "params"))
                problems.append(SourceProblem(located.file, line, field, problem.message))
    return problems
