"""YAML with line numbers, so every validation error names file, line and field.

PyYAML's composer gives us nodes with positions; we build plain Python data from
them ourselves, remembering where each path came from, and refuse duplicate keys
(which PyYAML would silently overwrite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from graylogic_supervisor.errors import SourceError, SourceProblem

PathKey = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=SourceError)


@dataclass
class LocatedData:
    """Parsed YAML data plus the 1-based line of every path in it."""

    file: Path
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def load_located(file: Path, error_type: type[E], text: str | None = None) -> LocatedData:
    """Read and parse ``file``; a syntax error or duplicate key raises ``error_type``."""
    try:
        source = text if text is not None else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error_type(file, [SourceProblem(file, None, "", f"cannot read: {exc}")]) from exc
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_type(file, [SourceProblem(file, line, "", f"YAML syntax: {problem}")]) from exc
    located = LocatedData(file=file, data=None)
    problems: list[SourceProblem] = []
    scalars = yaml.SafeLoader("")
    located.data = _build(node, (), located, problems, scalars) if node is not None else None
    scalars.dispose()
    if problems:
        raise error_type(file, problems)
    return located


def _build(
    node: yaml.Node,
    path: PathKey,
    out: LocatedData,
    problems: list[SourceProblem],
    scalars: yaml.SafeLoader,
) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = scalars.construct_object(key_node)
            if not isinstance(key, str | int):
                problems.append(
                    SourceProblem(
                        out.file, key_node.start_mark.line + 1, dotted(path), "keys must be strings"
                    )
                )
                continue
            if key in result:
                problems.append(
                    SourceProblem(
                        out.file,
                        key_node.start_mark.line + 1,
                        dotted((*path, key)),
                        "duplicate key",
                    )
                )
                continue
            result[key] = _build(value_node, (*path, key), out, problems, scalars)
            out.lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), out, problems, scalars) for i, item in enumerate(node.value)
        ]
    return scalars.construct_object(node)


def dotted(path: PathKey) -> str:
    """``steps[2].on_failure`` style, as a reader of the YAML would name the field."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _data_path(data: Any, loc: tuple[str | int, ...]) -> PathKey:
    """Keep only the parts of a pydantic ``loc`` that index into the data.

    Discriminated unions add their tag (the member's name) to the location; it is
    not a key in the YAML and is skipped. A missing or unknown field is always the
    last part, and is kept so the message names it.
    """
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(current, dict) and part in current:  # noqa: SIM114 - separate branches keep the index types precise
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif last and isinstance(part, str) and not _is_tag(part):
            path.append(part)
    return tuple(path)


def _is_tag(part: str) -> bool:
    return part.startswith(("function-", "tagged-union")) or "[" in part


UNION_TAG_ERRORS = ("union_tag_invalid", "union_tag_not_found")


def problems_from_validation(
    located: LocatedData, exc: ValidationError, errors: list[Any] | None = None
) -> list[SourceProblem]:
    """Translate pydantic errors (all of ``exc``'s, or the ``errors`` chosen) into problems."""
    problems = []
    for error in exc.errors() if errors is None else errors:
        loc = tuple(error["loc"])
        if error["type"] in UNION_TAG_ERRORS:
            # pydantic locates a bad or missing tag at the union; point at the tag field.
            loc = (*loc, str(error["ctx"]["discriminator"]).strip("'"))
        path = _data_path(located.data, loc)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] in ("missing", "union_tag_not_found"):
            message = "field required"
        problems.append(SourceProblem(located.file, located.line_of(path), dotted(path), message))
    return problems


def validate_located(
    located: LocatedData,
    model: type[M],
    error_type: type[E],
    context: dict[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> M:
    """Validate located data into ``model`` or raise ``error_type`` with every problem."""
    data = transform(located.data) if transform else located.data
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error_type(located.file, problems_from_validation(located, exc)) from exc
