"""YAML with line numbers, so every validation error names file, line and field.

PyYAML's composer gives us nodes with positions; we build plain Python data from
them ourselves, remembering where each path came from, and refuse duplicate keys
(which PyYAML would silently overwrite).

Building is bounded, because these files may come from anyone with write access
to the config directory and a file must never hang or crash the daemon: a file
nested deeper than ``MAX_DEPTH`` (an alias of its own ancestor is infinitely
deep), or larger than ``MAX_NODES`` once its aliases are expanded (a "billion
laughs" file), and any scalar PyYAML cannot construct (a 5,000-digit integer,
the 13th month, a ``!!python`` tag, a ``<<`` merge key) is a located problem.
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
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        problem = f"cannot read: not UTF-8 (byte {exc.start + 1})"
        raise error_type(file, [SourceProblem(file, line, "", problem)]) from exc
    except OSError as exc:
        raise error_type(file, [SourceProblem(file, None, "", f"cannot read: {exc}")]) from exc
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        line = source.count("\n", 0, exc.position) + 1
        problem = f"character #x{exc.character:04x} is not allowed in YAML"
        raise error_type(file, [SourceProblem(file, line, "", problem)]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_type(file, [SourceProblem(file, at, "", f"YAML syntax: {problem}")]) from exc
    except RecursionError as exc:  # PyYAML's composer recurses once per nesting level
        message = f"YAML nested more than {MAX_DEPTH} levels deep"
        raise error_type(file, [SourceProblem(file, 1, "", message)]) from exc
    located = LocatedData(file=file, data=None)
    if node is not None:
        builder = _Builder(located)
        located.data = builder.build(node, ())
        builder.scalars.dispose()
        if builder.problems:
            raise error_type(file, builder.problems)
    return located


MAX_DEPTH = 64  # nesting levels: far beyond any real file, far below Python's recursion limit
MAX_NODES = 20_000  # values once aliases are expanded: a real file has a few hundred
MERGE_TAG = "tag:yaml.org,2002:merge"


class _TooLarge(Exception):
    """The file expands past ``MAX_NODES``: building stops at once."""


class _Builder:
    """Plain data from composed nodes, with the line of every path, within bounds."""

    def __init__(self, out: LocatedData) -> None:
        self.out = out
        self.problems: list[SourceProblem] = []
        self.scalars = yaml.SafeLoader("")
        self.nodes = 0
        self.ancestors: set[int] = set()  # ids of the collection nodes being built

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        try:
            return self._build(node, path)
        except _TooLarge:
            message = f"more than {MAX_NODES} values once aliases are expanded"
            self.problems.append(self._problem(node, path, message))
            return None

    def _problem(self, node: yaml.Node, path: PathKey, message: str) -> SourceProblem:
        return SourceProblem(self.out.file, node.start_mark.line + 1, dotted(path), message)

    def _scalar(self, node: yaml.Node, path: PathKey) -> tuple[bool, Any]:
        """(True, value), or (False, None) with the problem recorded."""
        if node.tag == MERGE_TAG:
            self.problems.append(
                self._problem(node, path, "merge keys ('<<') are not supported; write the fields")
            )
            return False, None
        try:
            return True, self.scalars.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc)
            self.problems.append(self._problem(node, path, f"cannot read this value: {reason}"))
            return False, None

    def _build(self, node: yaml.Node, path: PathKey) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        out = self.out
        out.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)[1]
        if id(node) in self.ancestors:
            self.problems.append(self._problem(node, path, "an alias of its own ancestor"))
            return None
        if len(path) > MAX_DEPTH:
            where = path[:MAX_DEPTH]
            message = f"nested more than {MAX_DEPTH} levels deep"
            self.problems.append(self._problem(node, where, message))
            return None
        self.ancestors.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self._build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.ancestors.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        out, problems = self.out, self.problems
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            readable, key = (
                self._scalar(key_node, path)
                if isinstance(key_node, yaml.ScalarNode)
                else (True, None)
            )
            if not readable:
                continue
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
            result[key] = self._build(value_node, (*path, key))
            out.lines[(*path, key)] = key_node.start_mark.line + 1
        return result


def dotted(path: PathKey) -> str:
    """``steps[2].on_failure`` style, as a reader of the YAML would name the field
    (an empty key, which YAML allows, as ``['']`` so the field is never blank)."""
    text = ""
    for part in path:
        if isinstance(part, int) or part == "":
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
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
MAPPING_ERRORS = ("model_type", "model_attributes_type", "dict_type")


def _kind(value: object) -> str:
    """A YAML reader's name for a value's kind."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


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
        elif error["type"] in MAPPING_ERRORS:  # pydantic names its model class here
            message = f"expected a mapping (dictionary) of fields, got {_kind(error['input'])}"
        problems.append(SourceProblem(located.file, located.line_of(path), dotted(path), message))
    return problems


def validate_located(
    located: LocatedData,
    model: type[M],
    error_type: type[E],
    context: dict[str, Any] | None = None,
    *,
    transform: Callable[[Any], Any] | None = None,
) -> M:
    """Validate located data into ``model`` or raise ``error_type`` with every problem."""
    data = transform(located.data) if transform else located.data
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error_type(located.file, problems_from_validation(located, exc)) from exc
