"""Text with ``{expression}`` placeholders: step targets and string parameters.

Every placeholder is compiled when its playbook loads, like a condition, so a
typo in ``{failure.component}`` is a load error with its column.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from graylogic_supervisor.playbooks.expression_context import ExpressionContext
from graylogic_supervisor.playbooks.expressions import (
    MAX_RESULT_LENGTH,
    CompiledExpression,
    ExpressionError,
    compile_expression,
    compiled_schema,
)


class CompiledTemplate:
    """Text with ``{expression}`` placeholders, every one checked at load.

    ``{{`` and ``}}`` stand for literal braces. A placeholder renders as
    ``str()`` of its value; ``None`` is refused, because an empty service name
    or address is a bug, not a value.
    """

    __slots__ = ("_parts", "roots", "step_refs", "text")

    def __init__(self, text: str, parts: tuple[str | tuple[int, CompiledExpression], ...]) -> None:
        self.text = text
        self._parts = parts
        expressions = [part[1] for part in parts if isinstance(part, tuple)]
        self.roots: frozenset[str] = frozenset().union(*(e.roots for e in expressions))
        self.step_refs: frozenset[str] = frozenset().union(*(e.step_refs for e in expressions))

    @property
    def is_static(self) -> bool:
        """No placeholders: the runner can use ``render`` without building a context."""
        return not any(isinstance(part, tuple) for part in self._parts)

    def __bool__(self) -> bool:
        """Empty like its text, so ``if not step.target`` keeps meaning "no target"."""
        return bool(self.text)

    def render(self, context: ExpressionContext) -> str:
        pieces: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            start, expression = part
            try:
                value = expression.evaluate(context)
            except ExpressionError as exc:
                message = f"placeholder {{{expression.text}}}: {exc.message}"
                raise ExpressionError(self.text, message, start) from exc
            if value is None:
                message = f"placeholder {{{expression.text}}} is None"
                raise ExpressionError(self.text, message, start)
            pieces.append(str(value))
        rendered = "".join(pieces)
        if len(rendered) > MAX_RESULT_LENGTH:
            message = f"result is {len(rendered)} characters; the limit is {MAX_RESULT_LENGTH}"
            raise ExpressionError(self.text, message)
        return rendered

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompiledTemplate) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.text!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return compiled_schema(cls, compile_template)


def compile_template(template: str) -> CompiledTemplate:
    """Split ``template`` into text and compiled placeholders; raises ``ExpressionError``."""
    parts: list[str | tuple[int, CompiledExpression]] = []
    literal: list[str] = []
    index, end = 0, len(template)
    while index < end:
        char = template[index]
        if char in "{}" and template[index + 1 : index + 2] == char:
            literal.append(char)
            index += 2
        elif char == "}":
            raise ExpressionError(template, "single '}' (write '}}' for a brace)", index)
        elif char == "{":
            close = _placeholder_end(template, index)
            try:
                expression = compile_expression(template[index + 1 : close])
            except ExpressionError as exc:
                position = None if exc.position is None else index + 1 + exc.position
                raise ExpressionError(
                    template, f"placeholder {{{exc.text}}}: {exc.message}", position
                ) from None
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((index, expression))
            index = close + 1
        else:
            literal.append(char)
            index += 1
    if literal:
        parts.append("".join(literal))
    return CompiledTemplate(template, tuple(parts))


def _placeholder_end(template: str, start: int) -> int:
    """Index of the ``}`` closing the placeholder at ``start``; braces in quotes don't count."""
    quote: str | None = None
    index = start + 1
    while index < len(template):
        char = template[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "}":
            if index == start + 1:
                raise ExpressionError(template, "empty placeholder '{}'", start)
            return index
        elif char == "{":
            raise ExpressionError(template, "'{' inside a placeholder", index)
        index += 1
    raise ExpressionError(template, "placeholder is not closed with '}'", start)


def substitute(template: str, context: ExpressionContext) -> str:
    """Compile and render at once: for one-off text; playbooks compile at load."""
    return compile_template(template).render(context)
