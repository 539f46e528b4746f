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
import re._parser as regex_parser  # type: ignore[import-not-found]  # no stub; stable in 3.11+
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, Protocol

import simpleeval  # type: ignore[import-untyped]  # the library ships no type information
from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from graylogic_supervisor.engine.action import FailureInfo
from graylogic_supervisor.errors import SupervisorError

MAX_EXPRESSION_LENGTH = 500
MAX_DEPTH = 32  # nesting levels: far below Python's recursion limit, far above any real condition
MAX_RESULT_LENGTH = 10_000  # characters of a result string, or items of a result list
MAX_INT_BITS = 4_096  # size of the result of an integer power
MAX_ROUND_DIGITS = 20
# Python's regular expressions backtrack and cannot be interrupted, so a pattern is held to
# what is fast on any text: no repetition inside a repetition, no alternation inside one,
# no backreference (each of which can take exponential time), at most two variable-length
# repetitions, and text of at most MAX_MATCH_TEXT characters (two `.*` cost its cube).
MAX_MATCH_TEXT = 1_000
MAX_REGEX_REPEATS = 2

StepOutcome = Literal["success", "failure", "timeout", "error", "skipped"]

ROOTS = ("steps", "failure", "params", "time", "resources")
STEP_FIELDS = frozenset({"outcome", "output", "result", "duration_s", "attempts"})
FIXED_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "failure": frozenset({"component", "error_id", "message"}),
        "time": frozenset({"hour", "minute", "weekday", "iso"}),
        "resources": frozenset({"memory_percent", "disk_percent", "cpu_percent", "load_per_cpu"}),
    }
)


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


class _Problem(Exception):
    """A run-time problem found inside an evaluation; becomes an ``ExpressionError``."""


# --- what expressions see ---------------------------------------------------------------


class Record:
    """A read-only view of a mapping whose keys read as fields: ``steps.check_port.output.port``.

    Only the data's keys are reachable: there are no public methods for an
    expression to find, and a missing key is a ``_Problem`` that names the path
    and the keys that do exist.
    """

    __slots__ = ("_absent", "_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str, absent: str | None = None) -> None:
        self._data = data
        self._path = path
        self._absent = absent  # message for a missing key: {name} and {known} are filled in

    def field(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            known = sorted(str(key) for key in self._data)
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") or "none"
            if self._absent is not None:
                raise _Problem(self._absent.format(name=repr(name), known=listed)) from None
            raise _Problem(f"{self._path} has no field {name!r} (it has: {listed})") from None
        return _wrap(value, f"{self._path}.{name}")

    @property
    def data(self) -> Mapping[str, Any]:
        return self._data

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == other

    __hash__ = None  # type: ignore[assignment]  # like the mapping it wraps

    def __repr__(self) -> str:
        return repr(dict(self._data))


def _wrap(value: Any, path: str) -> Any:
    return Record(value, path) if isinstance(value, Mapping) else value


def _unwrap(value: Any) -> Any:
    return value.data if isinstance(value, Record) else value


@dataclass(frozen=True)
class StepRecord:
    """What an earlier step came to, as expressions see it under ``steps.<id>``."""

    outcome: StepOutcome
    output: Mapping[str, Any]
    result: str
    duration_s: float
    attempts: int


class ResourceFigures(Protocol):
    """The host's load when the context is built (``memory.model.Resources`` fits)."""

    @property
    def memory_percent(self) -> float: ...
    @property
    def disk_percent(self) -> float: ...
    @property
    def cpu_percent(self) -> float: ...
    @property
    def load_per_cpu(self) -> float: ...


@dataclass(frozen=True)
class ExpressionContext:
    """The five roots an expression may name, already wrapped as records."""

    roots: Mapping[str, Record]


def expression_context(
    *,
    failure: FailureInfo,
    steps: Mapping[str, StepRecord],
    params: Mapping[str, Any],
    now: datetime,
    resources: ResourceFigures | None = None,
) -> ExpressionContext:
    """Build what expressions see from plain data the runner already holds.

    ``now`` is read as given: pass local time (``clock.now().astimezone()``),
    because installers write ``time.hour < 6`` by the wall clock. Without
    ``resources`` any ``resources.…`` fails at run time, so the runner can skip
    measuring when ``CompiledExpression.roots`` does not name it.
    """
    step_data = {
        step_id: {field.name: getattr(record, field.name) for field in fields(record)}
        for step_id, record in steps.items()
    }
    figures = {}
    if resources is not None:
        figures = {name: getattr(resources, name) for name in FIXED_FIELDS["resources"]}
    time_data = {
        "hour": now.hour,
        "minute": now.minute,
        "weekday": now.weekday(),
        "iso": now.isoformat(),
    }
    roots = {
        "steps": Record(step_data, "steps", "step {name} has not run (run so far: {known})"),
        "failure": Record(
            {name: getattr(failure, name) for name in FIXED_FIELDS["failure"]}, "failure"
        ),
        "params": Record(params, "params"),
        "time": Record(time_data, "time"),
        "resources": Record(
            figures,
            "resources",
            None if resources is not None else "resource figures are not measured in this run",
        ),
    }
    return ExpressionContext(MappingProxyType(roots))


# --- functions and operators ------------------------------------------------------------


def _text(value: object, function: str) -> str:
    if not isinstance(value, str):
        raise _Problem(f"{function}() needs text, got {type(_unwrap(value)).__name__}")
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
    raise _Problem(f"contains() needs text, a list or a record, got {type(container).__name__}")


def _length(value: object) -> int:
    if isinstance(value, str | list | tuple | Record):
        return len(value)
    raise _Problem(f"len() needs text, a list or a record, got {type(value).__name__}")


def _round(value: object, digits: object = None) -> object:
    if digits is None:
        return round(value)  # type: ignore[call-overload]  # a wrong type is a TypeError we report
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        # round(5, -10**7) takes seconds: the digits are bounded.
        raise _Problem(f"round() takes a whole number of digits up to {MAX_ROUND_DIGITS}")
    return round(value, digits)  # type: ignore[call-overload]


def _matches(patterns: Mapping[str, re.Pattern[str]], value: object, pattern: object) -> bool:
    """``re.search``; literal patterns were checked at load, others are checked here."""
    text, pattern_text = _text(value, "matches"), _text(pattern, "matches")
    if len(text) > MAX_MATCH_TEXT:
        raise _Problem(f"matches() reads at most {MAX_MATCH_TEXT} characters, got {len(text)}")
    compiled = patterns.get(pattern_text)
    if compiled is None:
        compiled = safe_regex(pattern_text, _Problem)
    return compiled.search(text) is not None


def safe_regex(pattern: str, error: Callable[[str], Exception]) -> re.Pattern[str]:
    """``pattern`` compiled, or ``error(reason)`` if it is bad or could backtrack for ages."""
    try:
        compiled = re.compile(pattern)
        reason = _slow_regex(regex_parser.parse(pattern), inside_repeat=False, repeats=[0])
    except (re.error, RecursionError, OverflowError) as exc:
        raise error(f"bad regular expression {pattern!r}: {exc}") from None
    if reason is not None:
        raise error(f"regular expression {pattern!r} {reason}")
    return compiled


def _slow_regex(items: Any, inside_repeat: bool, repeats: list[int]) -> str | None:
    """Why the parsed pattern could take more than polynomial time on short text, or None."""
    for op, value in items:
        name = str(op)
        found: str | None = None
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = value
            if low != high:
                if inside_repeat:
                    return "repeats a repetition (can take exponential time)"
                repeats[0] += 1
                if repeats[0] > MAX_REGEX_REPEATS:
                    return f"has more than {MAX_REGEX_REPEATS} variable-length repetitions"
            found = _slow_regex(body, inside_repeat or high > 1, repeats)
        elif name == "BRANCH":
            if inside_repeat:
                return "repeats an alternation (can take exponential time)"
            for branch in value[1]:
                found = found or _slow_regex(branch, inside_repeat, repeats)
        elif name == "SUBPATTERN":
            found = _slow_regex(value[3], inside_repeat, repeats)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _slow_regex(value[1], inside_repeat, repeats)
        elif name == "ATOMIC_GROUP":
            found = _slow_regex(value, inside_repeat, repeats)
        elif name.startswith("GROUPREF"):
            return "uses a backreference (can take exponential time)"
        if found is not None:
            return found
    return None


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
        raise _Problem(f"{base} ** {exponent} is too large")
    result = base**exponent
    if isinstance(result, complex):
        raise _Problem(f"{base} ** {exponent} has no real result")
    return result


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):  # printf-style formatting: "%999999999d" % 1 would eat memory
        raise _Problem("'%' formatting of text is not allowed; use str() and +")
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
            raise _Problem(f"{ast.unparse(node.value)} is {kind}, which has no field {node.attr!r}")
        return value.field(node.attr)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(container, Record):
            if not isinstance(key, str):
                raise _Problem(f"{ast.unparse(node.value)} is read with text keys, not {key!r}")
            return container.field(key)
        return _wrap(container[key], f"{ast.unparse(node.value)}[{key!r}]")


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
            _Problem,
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
        return _unwrap(value)

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
        return _pydantic_schema(cls, compile_expression)


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


# --- templates ----------------------------------------------------------------------------


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
        return _pydantic_schema(cls, compile_template)


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


def _pydantic_schema(
    cls: type[CompiledExpression | CompiledTemplate],
    compile_text: Callable[[str], CompiledExpression | CompiledTemplate],
) -> core_schema.CoreSchema:
    """Validate from a string at the model boundary, so a playbook field is compiled once."""

    def validate(value: object) -> CompiledExpression | CompiledTemplate:
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
