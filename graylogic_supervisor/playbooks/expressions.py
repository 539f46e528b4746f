"""The expression language of playbooks: ``when:``, ``success_when:`` and ``{…}`` placeholders.

We evaluate with simpleeval rather than cel-python: its Python-like syntax
(``and``, ``not``, ``in``, ``x if c else y``) is what installers already half
know, and it is one small pure-Python module with a sandbox that has been
attacked and patched for a decade, where CEL would bring its own syntax, a
parser dependency and a type system our plain YAML data does not need.

simpleeval alone is a permissive sandbox, so we narrow it: every expression is
parsed and checked once, when its playbook loads, against an allow-list of
syntax, of the five context roots and of our functions. A typo is then a load
error with a column, never a surprise in the middle of a recovery. At run time,
fields are read only from read-only records built from plain data (never with
``getattr``), and every problem (missing step, missing key, wrong type, division
by zero, a number or string too large) comes out as ``ExpressionError`` naming
the expression, so a bad expression fails its step and never the runner.
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

import simpleeval  # type: ignore[import-untyped]  # the library ships no type information
from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.playbooks.expression_context import (
    FIXED_FIELDS,
    ROOTS,
    STEP_FIELDS,
    EvaluationProblem,
    ExpressionContext,
    Record,
    unwrap,
    wrap,
)
from graylogic_supervisor.playbooks.regexguard import MAX_MATCH_TEXT, safe_regex

_C = TypeVar("_C")

MAX_EXPRESSION_LENGTH = 500
MAX_DEPTH = 32  # nesting levels: far below Python's recursion limit, far above any real condition
MAX_RESULT_LENGTH = 10_000  # characters of a result string, or items of a result list
MAX_INT_BITS = 4_096  # size of the result of an integer power
MAX_ROUND_DIGITS = 20


class ExpressionError(SupervisorError):
    """An expression that does not compile, or that failed while evaluating.

    ``position`` is the 0-based character offset in ``text`` where the problem
    is, when we know it.
    """

    def __init__(self, text: str, message: str, position: int | None = None) -> None:
        self.text = text
        self.message = message
        self.position = position
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"{message} in {text!r}{where}")


# --- functions and operators ------------------------------------------------------------


def _text(value: object, function: str) -> str:
    if not isinstance(value, str):
        raise EvaluationProblem(f"{function}() needs text, got {type(unwrap(value)).__name__}")
    return value


def _lower(value: object) -> str:
    return _text(value, "lower").lower()


def _upper(value: object) -> str:
    return _text(value, "upper").upper()


def _startswith(value: object, prefix: object) -> bool:
    return _text(value, "startswith").startswith(_text(prefix, "startswith"))


def _endswith(value: object, suffix: object) -> bool:
    return _text(value, "endswith").endswith(_text(suffix, "endswith"))


def _contains(container: object, item: object) -> bool:
    if isinstance(container, str):
        return _text(item, "contains") in container
    if isinstance(container, list | tuple | Record):
        return item in container
    raise EvaluationProblem(
        f"contains() needs text, a list or a record, got {type(container).__name__}"
    )


def _length(value: object) -> int:
    if isinstance(value, str | list | tuple | Record):
        return len(value)
    raise EvaluationProblem(f"len() needs text, a list or a record, got {type(value).__name__}")


def _round(value: object, digits: object = None) -> object:
    if digits is None:
        return round(value)  # type: ignore[call-overload]  # a wrong type is a TypeError we report
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        # round(5, -10**7) takes seconds: the digits are bounded.
        raise EvaluationProblem(f"round() takes a whole number of digits up to {MAX_ROUND_DIGITS}")
    return round(value, digits)  # type: ignore[call-overload]


def _matches(patterns: Mapping[str, re.Pattern[str]], value: object, pattern: object) -> bool:
    """``re.search``; literal patterns were checked at load, others are checked here."""
    text, pattern_text = _text(value, "matches"), _text(pattern, "matches")
    if len(text) > MAX_MATCH_TEXT:
        raise EvaluationProblem(
            f"matches() reads at most {MAX_MATCH_TEXT} characters, got {len(text)}"
        )
    compiled = patterns.get(pattern_text)
    if compiled is None:
        compiled = safe_regex(pattern_text, EvaluationProblem)
    return compiled.search(text) is not None


@dataclass(frozen=True)
class _Function:
    impl: Callable[..., object]
    min_args: int
    max_args: int


FUNCTIONS: Mapping[str, _Function] = MappingProxyType(
    {
        "lower": _Function(_lower, 1, 1),
        "upper": _Function(_upper, 1, 1),
        "startswith": _Function(_startswith, 2, 2),
        "endswith": _Function(_endswith, 2, 2),
        "contains": _Function(_contains, 2, 2),
        "matches": _Function(_matches, 2, 2),  # bound to the expression's patterns when run
        "len": _Function(_length, 1, 1),
        "str": _Function(str, 1, 1),
        "int": _Function(int, 1, 1),
        "float": _Function(float, 1, 1),
        "min": _Function(min, 1, 20),
        "max": _Function(max, 1, 20),
        "abs": _Function(abs, 1, 1),
        "round": _Function(_round, 1, 2),
    }
)


def _power(base: Any, exponent: Any) -> Any:
    """``**`` without the multi-megabyte integers simpleeval's MAX_POWER still allows."""
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent * max(abs(base).bit_length(), 1) > MAX_INT_BITS
    ):
        raise EvaluationProblem(f"{base} ** {exponent} is too large")
    result = base**exponent
    if isinstance(result, complex):
        raise EvaluationProblem(f"{base} ** {exponent} has no real result")
    return result


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):  # printf-style formatting: "%999999999d" % 1 would eat memory
        raise EvaluationProblem("'%' formatting of text is not allowed; use str() and +")
    return left % right


_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
# No bitwise operators: `a > 1 & b < 2` parses, and never means what an installer meant.
_OPERATORS: Mapping[type[ast.AST], Callable[..., Any]] = MappingProxyType(
    {
        ast.Add: simpleeval.safe_add,  # length-capped for text and lists
        ast.Sub: operator.sub,
        ast.Mult: simpleeval.safe_mult,  # length-capped for text and lists
        ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv,
        ast.Mod: _modulo,
        ast.Pow: _power,
        ast.Not: operator.not_,
        ast.USub: operator.neg,
        ast.UAdd: operator.pos,
        **{op: simpleeval.DEFAULT_OPERATORS[op] for op in _COMPARISONS},
        ast.Is: operator.is_,  # only ever `x is None`: the checker refuses anything else
        ast.IsNot: operator.is_not,
    }
)
_SYMBOLS: Mapping[type[ast.AST], str] = MappingProxyType(
    {
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Invert: "~",
    }
)
_FORBIDDEN: Mapping[type[ast.AST], str] = MappingProxyType(
    {
        ast.Lambda: "lambda",
        ast.NamedExpr: "assignment (:=)",
        ast.ListComp: "comprehensions",
        ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions",
        ast.GeneratorExp: "comprehensions",
        ast.JoinedStr: "f-strings (use str() and +, or a {…} template)",
        ast.Dict: "dict literals",
        ast.Set: "set literals",
        ast.Starred: "unpacking (*)",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.YieldFrom: "yield",
    }
)


# --- compiling ----------------------------------------------------------------------------


class _Checker:
    """Walks a parsed expression once, refusing anything outside the allow-list."""

    def __init__(self, text: str, body: str, lead: int) -> None:
        self.text, self.body, self.lead = text, body, lead
        self.roots: set[str] = set()
        self.step_refs: set[str] = set()
        self.patterns: dict[str, re.Pattern[str]] = {}

    def position(self, node: ast.AST) -> int | None:
        column = getattr(node, "col_offset", None)  # in UTF-8 bytes of the one line we parsed
        if column is None:
            return None
        return self.lead + len(self.body.encode()[:column].decode(errors="ignore"))

    def error(self, message: str, node: ast.AST) -> ExpressionError:
        return ExpressionError(self.text, message, self.position(node))

    def check(self, node: ast.AST, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise self.error(f"expression is nested more than {MAX_DEPTH} levels deep", node)
        deeper = depth + 1
        if isinstance(node, ast.Constant):
            if not (node.value is None or isinstance(node.value, str | int | float)):
                raise self.error(f"{type(node.value).__name__} literals are not allowed", node)
        elif isinstance(node, ast.Name):
            if node.id not in ROOTS:
                raise self.error(f"unknown name {node.id!r} (known: {', '.join(ROOTS)})", node)
            self.roots.add(node.id)
        elif isinstance(node, ast.Attribute | ast.Subscript):
            self.check_access(node, depth)
        elif isinstance(node, ast.Call):
            self.check_call(node, depth)
        elif isinstance(node, ast.UnaryOp | ast.BinOp) and type(node.op) in _SYMBOLS:
            symbol = _SYMBOLS[type(node.op)]
            raise self.error(f"bitwise operator '{symbol}' is not allowed (use and, or, not)", node)
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.Is | ast.IsNot) and not (
                    isinstance(right, ast.Constant) and right.value is None
                ):
                    raise self.error("'is' only compares with None; use == or !=", node)
            for operand in (node.left, *node.comparators):
                self.check(operand, deeper)
        elif isinstance(node, ast.BoolOp | ast.UnaryOp | ast.BinOp | ast.IfExp | ast.Slice):
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.boolop | ast.unaryop | ast.operator):
                    self.check(child, deeper)
        elif isinstance(node, ast.List | ast.Tuple):
            for child in node.elts:
                self.check(child, deeper)
        else:
            what = _FORBIDDEN.get(type(node), type(node).__name__)
            raise self.error(f"not allowed in expressions: {what}", node)

    def check_access(self, node: ast.Attribute | ast.Subscript, depth: int) -> None:
        chain: list[ast.Attribute | ast.Subscript] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute | ast.Subscript):
            chain.append(base)
            base = base.value
        chain.reverse()
        if depth + len(chain) > MAX_DEPTH:
            raise self.error(f"expression is nested more than {MAX_DEPTH} levels deep", node)
        for link in chain:
            if isinstance(link, ast.Attribute) and link.attr.startswith("_"):
                raise self.error(f"field {link.attr!r} is not allowed (leading '_')", link)
        if not isinstance(base, ast.Name) and any(isinstance(x, ast.Attribute) for x in chain):
            raise self.error(f"fields are read only from {', '.join(ROOTS)}", node)
        self.check(base, depth + len(chain))
        for link in chain:
            if isinstance(link, ast.Subscript):
                self.check(link.slice, depth + len(chain))
        path: list[str] = []  # the leading fields named literally, checked against the known ones
        for link in chain:
            if isinstance(link, ast.Attribute):
                path.append(link.attr)
            elif isinstance(link.slice, ast.Constant) and isinstance(link.slice.value, str):
                path.append(link.slice.value)
            else:
                break
        if isinstance(base, ast.Name):
            self.check_path(base.id, path, node)

    def check_path(self, root: str, path: list[str], node: ast.AST) -> None:
        """Fields we know at load: those of failure, time, resources and of a step."""
        if root == "steps" and path:
            self.step_refs.add(path[0])
            if len(path) > 1 and path[1] not in STEP_FIELDS:
                known = ", ".join(sorted(STEP_FIELDS))
                raise self.error(
                    f"unknown field {path[1]!r} of steps.{path[0]} (known: {known})", node
                )
            if len(path) > 2 and path[1] != "output":
                raise self.error(f"steps.{path[0]}.{path[1]} has no fields", node)
        elif root in FIXED_FIELDS and path:
            fields = FIXED_FIELDS[root]
            if path[0] not in fields:
                known = ", ".join(sorted(fields))
                raise self.error(f"unknown field {path[0]!r} of {root} (known: {known})", node)
            if len(path) > 1:
                raise self.error(f"{root}.{path[0]} has no fields", node)

    def check_call(self, node: ast.Call, depth: int) -> None:
        if not isinstance(node.func, ast.Name):
            raise self.error("only functions can be called: lower(x), not x.lower()", node)
        name = node.func.id
        function = FUNCTIONS.get(name)
        if function is None:
            raise self.error(f"unknown function {name!r} (known: {', '.join(FUNCTIONS)})", node)
        if node.keywords:
            raise self.error(f"{name}() takes no keyword arguments", node)
        count = len(node.args)
        if not function.min_args <= count <= function.max_args:
            wanted = (
                str(function.min_args)
                if function.min_args == function.max_args
                else f"{function.min_args} to {function.max_args}"
            )
            plural = "" if wanted == "1" else "s"
            raise self.error(f"{name}() takes {wanted} argument{plural}, got {count}", node)
        for arg in node.args:
            self.check(arg, depth + 1)
        if name == "matches":
            pattern = node.args[1]
            if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
                self.patterns[pattern.value] = safe_regex(
                    pattern.value, lambda reason: self.error(reason, pattern)
                )


def _syntax_message(exc: SyntaxError, body: str, offset: int) -> str:
    if offset == len(body) and exc.msg == "invalid syntax":
        return "syntax error: the expression ends too early"
    if body[offset : offset + 1] == "=" and body[offset - 1 : offset] not in ("=", "!", "<", ">"):
        return "syntax error: '=' assigns; compare with '=='"
    if "escape sequence" in exc.msg:
        return f"syntax error: {exc.msg}; double the backslash or use a raw string r'...'"
    return f"syntax error: {exc.msg}"


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval is untyped
    """simpleeval with fields read from records only, never through ``getattr``.

    The library documents extension by overriding ``_eval_*`` handlers.
    """

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        value = self._eval(node.value)
        if not isinstance(value, Record):
            kind = type(value).__name__
            raise EvaluationProblem(
                f"{ast.unparse(node.value)} is {kind}, which has no field {node.attr!r}"
            )
        return value.field(node.attr)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(container, Record):
            if not isinstance(key, str):
                raise EvaluationProblem(
                    f"{ast.unparse(node.value)} is read with text keys, not {key!r}"
                )
            return container.field(key)
        return wrap(container[key], f"{ast.unparse(node.value)}[{key!r}]")


class CompiledExpression:
    """An expression checked at load; evaluate it as often as needed.

    ``roots`` names the context roots it reads (the runner measures resources
    only when needed); ``step_refs`` the step ids it names literally (the
    loader checks they exist). In a pydantic model a field of this type is
    compiled from a string and serialised back to it.
    """

    __slots__ = ("_node", "_patterns", "roots", "step_refs", "text")

    def __init__(self, text: str, node: ast.expr, checker: _Checker) -> None:
        self.text = text
        self._node = node
        self._patterns: Mapping[str, re.Pattern[str]] = MappingProxyType(checker.patterns)
        self.roots = frozenset(checker.roots)
        self.step_refs = frozenset(checker.step_refs)

    def evaluate(self, context: ExpressionContext) -> object:
        """The value, as plain data; any problem is an ``ExpressionError``."""
        # A fresh dict each time: simpleeval adds its own entries to the one it is given.
        functions: dict[str, object] = {name: f.impl for name, f in FUNCTIONS.items()}
        functions["matches"] = partial(_matches, self._patterns)
        evaluator = _Evaluator(
            operators=dict(_OPERATORS), functions=functions, names=dict(context.roots)
        )
        try:
            value = evaluator.eval(self.text, previously_parsed=self._node)  # allow: sandboxed
        except ZeroDivisionError:
            raise ExpressionError(self.text, "division by zero") from None
        except OverflowError:
            raise ExpressionError(self.text, "a number is too large") from None
        except (
            EvaluationProblem,
            simpleeval.InvalidExpression,
            ArithmeticError,
            LookupError,
            TypeError,
            ValueError,
            RecursionError,
        ) as exc:
            raise ExpressionError(self.text, str(exc) or type(exc).__name__) from exc
        if isinstance(value, str | list | tuple) and len(value) > MAX_RESULT_LENGTH:
            raise ExpressionError(
                self.text, f"result has {len(value)} items; the limit is {MAX_RESULT_LENGTH}"
            )
        return unwrap(value)

    def test(self, context: ExpressionContext) -> bool:
        """A condition's verdict. Only ``true`` or ``false`` count.

        Truthiness is refused on purpose: ``when: steps.probe.result`` is true for
        any non-empty text, so a forgotten comparison would always hold.
        """
        value = self.evaluate(context)
        if not isinstance(value, bool):
            raise ExpressionError(
                self.text,
                f"a condition must be true or false, got {type(value).__name__} {value!r}"
                " (compare it, e.g. with == or >)",
            )
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompiledExpression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return compiled_schema(cls, compile_expression)


def compile_expression(text: str) -> CompiledExpression:
    """Parse and check ``text`` once, at load; raises ``ExpressionError`` with a column."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            text, f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    # One line, character for character, so YAML block scalars work and columns stay true.
    flat = text.replace("\r", " ").replace("\n", " ")
    body = flat.strip()
    lead = len(flat) - len(flat.lstrip())
    if not body:
        raise ExpressionError(text, "expression is empty")
    try:
        # Deterministic whatever the process's warning filters: what Python only warns
        # about (an invalid escape such as "\d") is an error here, as it will be in Python.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        # CPython reports an offset of 0 when the input ends in the middle of an expression.
        offset = len(body) if exc.offset == 0 else min(max((exc.offset or 1) - 1, 0), len(body))
        position = lead + offset if exc.offset is not None else None
        raise ExpressionError(text, _syntax_message(exc, body, offset), position) from None
    except ValueError as exc:  # null bytes, on Python before 3.12
        raise ExpressionError(text, f"syntax error: {exc}") from None
    checker = _Checker(text, body, lead)
    checker.check(tree.body)
    return CompiledExpression(text, tree.body, checker)


def compiled_schema(cls: type[_C], compile_text: Callable[[str], _C]) -> core_schema.CoreSchema:
    """Validate from a string at the model boundary, so a playbook field is compiled once."""

    def validate(value: object) -> _C:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("expression_type", "expected text (quote it in YAML)")
        try:
            return compile_text(value)
        except ExpressionError as exc:
            raise PydanticCustomError("expression", "{reason}", {"reason": str(exc)}) from exc

    return core_schema.no_info_plain_validator_function(
        validate,
        json_schema_input_schema=core_schema.str_schema(),
        serialization=core_schema.plain_serializer_function_ser_schema(lambda value: value.text),
    )
