"""The expression language fuzzed with hypothesis: random expressions on random contexts.

Compiling gives a ``CompiledExpression`` or an ``ExpressionError`` with a column
inside the text; evaluating gives plain data or an ``ExpressionError``; nothing
else comes out, and nothing runs for long (the guards against huge powers,
repetition, formatting and backtracking regular expressions are each pinned
below). tests/engine/test_expressions.py holds a seeded loop over a fixed
context; this one varies the context and reaches every operator and function.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.playbooks.expression_context import (
    ExpressionContext,
    StepRecord,
    expression_context,
)
from graylogic_supervisor.playbooks.expressions import (
    FUNCTIONS,
    ExpressionError,
    compile_expression,
)
from graylogic_supervisor.playbooks.regexguard import MAX_MATCH_TEXT
from graylogic_supervisor.playbooks.templates import compile_template
from tests.fuzz.yaml_inputs import FUZZ, bounded

PLAIN = (str, int, float, bool, list, tuple, dict, type(None))
STEP_IDS = ["probe", "restart", "check_port"]

# --- contexts -------------------------------------------------------------------------------

SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**200, max_value=2**300),
    st.floats(),
    st.text(max_size=30),
    st.just("a" * 2_000 + "!"),  # long text for the regular expressions to chew on
)
DATA = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["port", "up", "n", "", "_x", "services"]), inner, max_size=3
        )
    ),
    max_leaves=10,
)


class Figures:
    def __init__(self, value: float) -> None:
        self.memory_percent = self.disk_percent = self.cpu_percent = self.load_per_cpu = value


@st.composite
def contexts(draw: st.DrawFn) -> ExpressionContext:
    steps = {
        step_id: StepRecord(
            outcome=draw(st.sampled_from(["success", "failure", "timeout", "error", "skipped"])),
            output=draw(st.dictionaries(st.sampled_from(["port", "up", "n", "services"]), DATA)),
            result=draw(st.text(max_size=20)),
            duration_s=draw(st.floats(allow_nan=False)),
            attempts=draw(st.integers(0, 5)),
        )
        for step_id in draw(st.lists(st.sampled_from(STEP_IDS), unique=True))
    }
    resources = draw(st.one_of(st.none(), st.floats(0, 100).map(Figures)))
    return expression_context(
        failure=FailureInfo(
            "f-1",
            draw(st.text(max_size=10)),
            "ERR-X-Y-001",
            draw(SCALAR.filter(lambda v: isinstance(v, str))),
        ),
        steps=steps,
        params=draw(st.dictionaries(st.sampled_from(["service", "pattern", "n", "tags"]), DATA)),
        now=draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))),
        resources=resources,
    )


# --- expressions from the language's grammar -----------------------------------------------

NAMES = [
    *[f"steps.{s}.{f}" for s in STEP_IDS for f in ("outcome", "result", "duration_s", "attempts")],
    *[f"steps.{s}.output.{k}" for s in STEP_IDS for k in ("port", "up", "services")],
    *["steps['probe']", "steps.nope.outcome", "failure.message", "failure.component"],
    *["failure.error_id", "params.service", "params.pattern", "params.n", "params.tags"],
    *["time.hour", "time.minute", "time.weekday", "time.iso", "resources.cpu_percent"],
    *["resources.load_per_cpu", "steps", "params", "failure", "nope", "__import__", "x._y"],
]
LITERALS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["10**400", "9" * 300, "2", "-1", "0", "1e308", "0.5", "True", "None"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=12).map(repr),
    st.sampled_from(["'(a+)+$'", "'.*.*x'", "'(a|ab)*c'", "'(x)\\\\1'", "'['", "'%999999999d'"]),
)
BINARY = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "in", "not in"]
BINARY += ["and", "or", "is", "is not", "&", "|", "<<", "@"]


def expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from([*FUNCTIONS, "eval", "getattr"]),
            st.lists(inner, max_size=3),
        )
        return st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(BINARY), inner),
            st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["not ", "-", "+", "~"]), inner),
            call,
            st.builds(lambda a, c, b: f"({a} if {c} else {b})", inner, inner, inner),
            st.builds(lambda a, k: f"{a}[{k}]", inner, inner),
            st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
            st.builds(lambda a: f"{a}.lower()", inner),
        )

    atoms = st.one_of(st.sampled_from(NAMES), LITERALS)
    return st.recursive(atoms, extend, max_leaves=12)


RAW = st.one_of(
    st.text(max_size=80), st.text(alphabet="()[]{}'\"+-*/%<>=!.,:\\ \n\tab1_", max_size=60)
)
ANY_TEXT = st.one_of(expressions(), expressions(), RAW)


def compiled_or_located(text: str) -> Any:
    """The compiled expression, or None after checking the error's column is in the text."""
    try:
        return compile_expression(text)
    except ExpressionError as exc:
        assert exc.text == text
        assert exc.message.strip()
        assert exc.position is None or 0 <= exc.position <= len(text), exc
        return None


@FUZZ
@given(text=ANY_TEXT)
def test_compiling_anything_compiles_or_names_a_column(text: str) -> None:
    with bounded():
        compiled_or_located(text)


@FUZZ
@given(text=expressions(), context=contexts())
def test_evaluating_on_any_context_gives_plain_data_or_expression_error(
    text: str, context: ExpressionContext
) -> None:
    with bounded():
        compiled = compiled_or_located(text)
        if compiled is None:
            return
        try:
            value = compiled.evaluate(context)
        except ExpressionError as exc:
            assert exc.text == text and exc.message.strip()
            return
        assert isinstance(value, PLAIN), type(value)
        with contextlib.suppress(ExpressionError):
            assert isinstance(compiled.test(context), bool)


@FUZZ
@given(
    text=st.lists(st.one_of(st.text(max_size=8), expressions().map(lambda e: f"{{{e}}}"))).map(
        "".join
    ),
    context=contexts(),
)
def test_templates_render_text_or_raise_expression_error(
    text: str, context: ExpressionContext
) -> None:
    with bounded():
        try:
            template = compile_template(text)
        except ExpressionError as exc:
            assert exc.position is None or 0 <= exc.position <= len(text), exc
            return
        try:
            assert isinstance(template.render(context), str)
        except ExpressionError as exc:
            assert exc.text == text


# --- the guards against a hang: each bounded, each a clear error ----------------------------

CONTEXT = expression_context(
    failure=FailureInfo("f-1", "mqtt", "ERR-INFRA-MQTT-001", "a" * 40 + "!"),
    steps={},
    params={"pattern": "(a+)+$", "long": "a" * (MAX_MATCH_TEXT + 1), "slow": ".*.*.*x"},
    now=datetime(2026, 11, 26, 3, 15),
)


def refused_at_run_time(text: str) -> str:
    began = time.monotonic()
    with bounded(), pytest.raises(ExpressionError) as caught:
        compile_expression(text).evaluate(CONTEXT)
    assert time.monotonic() - began < 2  # each guard answers at once; the hang guard is 5 s
    return caught.value.message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9 ** 9999999", "is too large"),
        ("(2 ** 4000) ** 4000", "is too large"),
        ("'ab' * 10 ** 9", "Sorry, I will not evaluate something that long"),
        ("'%999999999d' % 1", "'%' formatting of text is not allowed"),
        ("round(5, -10 ** 7)", "round() takes a whole number of digits up to 20"),
        ("str(" + " * ".join(["2 ** 2048"] * 8) + ")", "Exceeds the limit (4300 digits)"),
        ("10.0 ** 400", "a number is too large"),
    ],
)
def test_arithmetic_that_would_run_for_ages_is_refused(text: str, reason: str) -> None:
    assert reason in refused_at_run_time(text)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+$", "repeats a repetition (can take exponential time)"),
        ("(a{1,10}){1,10}$", "repeats a repetition (can take exponential time)"),
        ("(a|ab)*c", "repeats an alternation (can take exponential time)"),
        ("(a)\\\\1", "uses a backreference (can take exponential time)"),
        (".*.*.*x", "has more than 2 variable-length repetitions"),
    ],
)
def test_bug_a_backtracking_pattern_is_refused_at_load_instead_of_hanging(
    pattern: str, reason: str
) -> None:
    """Before the fix, ``matches('aaa…a!', '(a+)+$')`` held the event loop for minutes."""
    with pytest.raises(ExpressionError) as caught:
        compile_expression(f"matches(failure.message, '{pattern}')")
    assert reason in caught.value.message
    assert caught.value.position == len("matches(failure.message, ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("matches(failure.message, params.pattern)", "repeats a repetition"),
        ("matches(failure.message, params.slow)", "more than 2 variable-length repetitions"),
        ("matches(params.long, 'a')", f"matches() reads at most {MAX_MATCH_TEXT} characters"),
        ("matches('a' * 5000, '.*.*x')", f"reads at most {MAX_MATCH_TEXT} characters"),
    ],
)
def test_bug_a_backtracking_match_at_run_time_is_an_expression_error(
    text: str, reason: str
) -> None:
    assert reason in refused_at_run_time(text)


def test_the_slowest_pattern_allowed_on_the_longest_text_allowed_still_answers() -> None:
    """Two ``.*`` on MAX_MATCH_TEXT characters: the worst the guard lets through."""
    context = expression_context(
        failure=FailureInfo("f-1", "mqtt", "E", "a" * MAX_MATCH_TEXT),
        steps={},
        params={},
        now=datetime(2026, 11, 26),
    )
    with bounded():
        assert compile_expression("matches(failure.message, '.*.*x')").test(context) is False
