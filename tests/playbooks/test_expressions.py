"""The playbook expression language: what compiles, what it evaluates to, what it refuses."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.playbooks.expression_context import (
    ExpressionContext,
    StepRecord,
    expression_context,
)
from graylogic_supervisor.playbooks.expressions import (
    MAX_EXPRESSION_LENGTH,
    MAX_RESULT_LENGTH,
    CompiledExpression,
    ExpressionError,
    compile_expression,
)
from graylogic_supervisor.playbooks.templates import CompiledTemplate, compile_template, substitute


@dataclass(frozen=True)
class Figures:
    memory_percent: float = 41.5
    disk_percent: float = 72.0
    cpu_percent: float = 12.5
    load_per_cpu: float = 0.75


FAILURE = FailureInfo("fail-1", "mqtt_broker", "MQTT-CONN-001", "Broker refused: port 1883 closed")
NOW = datetime(2026, 11, 26, 3, 15, 42)  # a Thursday


def make_context(resources: Figures | None = None) -> ExpressionContext:
    steps = {
        "check_port": StepRecord(
            outcome="success",
            output={
                "port": 1883,
                "host": "127.0.0.1",
                "open": True,
                "latency_ms": 2.5,
                "missing": None,
                "services": [{"name": "bridge", "up": False}, {"name": "core", "up": True}],
                "nested": {"deeper": {"value": "x"}},
                "items": "a key that is also a dict method",
                "odd-key": 7,
            },
            result="port 1883 open",
            duration_s=0.25,
            attempts=2,
        ),
        "restart": StepRecord("failure", {}, "exit status 1", 3.0, 1),
    }
    return expression_context(
        failure=FAILURE,
        steps=steps,
        params={"service": "mosquitto", "max_latency_ms": 200, "tags": ["a", "b"]},
        now=NOW,
        resources=resources if resources is not None else Figures(),
    )


CONTEXT = make_context()


def value(text: str, context: ExpressionContext = CONTEXT) -> object:
    return compile_expression(text).evaluate(context)


def compile_error(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    return caught.value


def runtime_error(text: str, context: ExpressionContext = CONTEXT) -> ExpressionError:
    compiled = compile_expression(text)
    with pytest.raises(ExpressionError) as caught:
        compiled.evaluate(context)
    return caught.value


# --- operators ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2", 3),
        ("'ab' + 'cd'", "abcd"),
        ("7 - 10", -3),
        ("6 * 7", 42),
        ("'ab' * 2", "abab"),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-(3)", -3),
        ("+3", 3),
        ("1 == 1", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2", True),
        ("2 >= 3", False),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("True and False", False),
        ("False or True", True),
        ("not False", True),
        ("0 or 'fallback'", "fallback"),
        ("'a' in ['a', 'b']", True),
        ("'c' not in ('a', 'b')", True),
        ("'fused' in 'refused'", True),
        ("'yes' if 2 > 1 else 'no'", "yes"),
        ("None is None", True),
        ("1 is not None", True),
    ],
)
def test_operator(text: str, expected: object) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_and_or_short_circuit_so_a_guard_protects_a_missing_step() -> None:
    assert value("'probe' in steps and steps.probe.outcome == 'success'") is False
    assert value("'probe' not in steps or steps.probe.outcome == 'success'") is True


# --- functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lower('MQTT')", "mqtt"),
        ("upper(failure.component)", "MQTT_BROKER"),
        ("startswith(failure.error_id, 'MQTT-')", True),
        ("endswith(failure.error_id, '-002')", False),
        ("contains(failure.message, 'refused')", True),
        ("contains(params.tags, 'b')", True),
        ("contains(steps.check_port.output, 'port')", True),
        ("len('abc')", 3),
        ("len(params.tags)", 2),
        ("len(steps)", 2),
        ("str(1883)", "1883"),
        ("int('42')", 42),
        ("int(3.9)", 3),
        ("float('2.5')", 2.5),
        ("min(3, 1, 2)", 1),
        ("max([3, 9, 2])", 9),
        ("abs(-4)", 4),
        ("round(2.567, 2)", 2.57),
        ("round(2.7)", 3),
        ("matches(failure.message, 'port \\\\d+ closed')", True),
        ("matches(failure.message, r'^Broker')", True),
        ("matches(failure.message, '^port')", False),
        ("matches(failure.message, params.service)", False),
    ],
)
def test_function(text: str, expected: object) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_a_regex_from_the_context_is_compiled_when_used() -> None:
    context = expression_context(
        failure=FAILURE, steps={}, params={"pattern": r"port \d+"}, now=NOW
    )
    assert value("matches(failure.message, params.pattern)", context) is True


def test_a_bad_regex_from_the_context_is_an_evaluation_error() -> None:
    context = expression_context(failure=FAILURE, steps={}, params={"pattern": "("}, now=NOW)
    error = runtime_error("matches(failure.message, params.pattern)", context)
    assert "bad regular expression '('" in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lower(1)", "lower() needs text, got int"),
        ("startswith(failure.component, 1)", "startswith() needs text, got int"),
        ("len(5)", "len() needs text, a list or a record, got int"),
        ("contains(5, 1)", "contains() needs text, a list or a record, got int"),
        ("int('port')", "invalid literal for int()"),
        ("round(1.5, 10 ** 6)", "round() takes a whole number of digits up to 20"),
        ("min([])", "empty"),
    ],
)
def test_a_function_given_the_wrong_value_is_an_evaluation_error(text: str, message: str) -> None:
    assert message in runtime_error(text).message


# --- the context ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps.check_port.outcome", "success"),
        ("steps.check_port.result", "port 1883 open"),
        ("steps.check_port.duration_s", 0.25),
        ("steps.check_port.attempts", 2),
        ("steps.check_port.output.port", 1883),
        ("steps.check_port.output.nested.deeper.value", "x"),
        ("steps.check_port.output.services[1].name", "core"),
        ("steps.check_port.output['odd-key']", 7),
        ("steps['check_port'].output.port", 1883),
        ("steps.check_port.output.items", "a key that is also a dict method"),
        ("steps.check_port.output.missing is None", True),
        ("steps.restart.outcome == 'failure'", True),
        ("failure.component", "mqtt_broker"),
        ("failure.error_id", "MQTT-CONN-001"),
        ("failure.message[0:6]", "Broker"),
        ("params.service", "mosquitto"),
        ("params.tags[0]", "a"),
        ("time.hour", 3),
        ("time.minute", 15),
        ("time.weekday", 3),
        ("time.iso", "2026-11-26T03:15:42"),
        ("resources.memory_percent", 41.5),
        ("resources.disk_percent", 72.0),
        ("resources.cpu_percent", 12.5),
        ("resources.load_per_cpu", 0.75),
        ("'check_port' in steps", True),
        ("'port' in steps.check_port.output", True),
    ],
)
def test_dotted_access_reads_the_context(text: str, expected: object) -> None:
    assert value(text) == expected


def test_a_record_evaluates_to_its_plain_mapping() -> None:
    assert value("steps.check_port.output.nested") == {"deeper": {"value": "x"}}
    assert value("str(steps.check_port.output.nested)") == "{'deeper': {'value': 'x'}}"
    steps = value("steps")
    assert isinstance(steps, dict)
    assert steps["restart"] == {
        "outcome": "failure",
        "output": {},
        "result": "exit status 1",
        "duration_s": 3.0,
        "attempts": 1,
    }


def test_compiled_expression_knows_its_roots_and_step_references() -> None:
    compiled = compile_expression("steps.a.outcome == 'success' and steps['b'].attempts > 1")
    assert compiled.step_refs == {"a", "b"}
    assert compiled.roots == {"steps"}
    assert compile_expression("resources.cpu_percent > 90").roots == {"resources"}
    assert compile_expression("'a' in steps").step_refs == frozenset()


# --- test(): conditions ---------------------------------------------------------------


def test_a_condition_is_true_or_false() -> None:
    assert compile_expression("steps.check_port.output.open").test(CONTEXT) is True
    assert compile_expression("time.hour >= 6").test(CONTEXT) is False


def test_a_condition_that_is_not_a_bool_is_an_error_not_truthiness() -> None:
    compiled = compile_expression("steps.check_port.result")
    with pytest.raises(ExpressionError, match="must be true or false, got str"):
        compiled.test(CONTEXT)


# --- compile-time errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        (
            "stpes.check_port.outcome == 'success'",
            "unknown name 'stpes' (known: steps, failure, params, time, resources)",
            0,
        ),
        ("lowercase(failure.component)", "unknown function 'lowercase' (known: lower,", 0),
        ("failure.component ==", "syntax error: the expression ends too early", 20),
        ("time.hour < 6 and", "syntax error: the expression ends too early", 17),
        ("lower(failure.component", "syntax error: '(' was never closed", 5),
        ("steps.a.outcome = 'success'", "'=' assigns; compare with '=='", 16),
        ("'unterminated", "syntax error: unterminated string literal", 0),
        ("1 2", "syntax error: invalid syntax", 2),
        ("", "expression is empty", None),
        ("   ", "expression is empty", None),
        ("failure.compnent", "unknown field 'compnent' of failure (known: component,", 0),
        ("time.hours", "unknown field 'hours' of time (known: hour, iso, minute, weekday)", 0),
        ("resources.ram", "unknown field 'ram' of resources", 0),
        ("steps.a.outptu", "unknown field 'outptu' of steps.a (known: attempts,", 0),
        ("steps.a.result.text", "steps.a.result has no fields", 0),
        ("failure.component.name", "failure.component has no fields", 0),
        ("matches(failure.message, '(')", "bad regular expression '('", 25),
        ("matches(failure.message, '\\d')", "invalid escape sequence", 25),
        ("lower()", "lower() takes 1 argument, got 0", 0),
        ("min()", "min() takes 1 to 20 arguments, got 0", 0),
        ("round(1.5, ndigits=1)", "round() takes no keyword arguments", 0),
        ("steps.a.outcome is 'success'", "'is' only compares with None", 0),
        ("1 & 2", "bitwise operator '&' is not allowed", 0),
        ("~1", "bitwise operator '~' is not allowed", 0),
        ("1 << 2", "bitwise operator '<<' is not allowed", 0),
        ("'é' + stpes", "unknown name 'stpes'", 6),
        ("failure.component.lower()", "only functions can be called", 0),
        ("b'bytes'", "bytes literals are not allowed", 0),
        ("-" * 40 + "1", "nested more than 32 levels deep", 33),
    ],
)
def test_compile_error_says_what_and_where(text: str, message: str, position: int | None) -> None:
    error = compile_error(text)
    assert message in error.message
    assert error.position == position
    assert error.text == text
    assert repr(text) in str(error)


def test_an_overlong_expression_is_refused() -> None:
    text = "1 + " * (MAX_EXPRESSION_LENGTH // 4) + "1"
    error = compile_error(text)
    assert error.message == f"expression is {len(text)} characters long; the limit is 500"
    compile_expression("1" * MAX_EXPRESSION_LENGTH)


def test_a_multi_line_expression_keeps_its_columns() -> None:
    assert value("\n  steps.check_port.attempts ==\n  2\n") is True
    assert compile_error("  time.hour <\n  stpes").position == 16


def test_expression_error_is_a_supervisor_error() -> None:
    assert issubclass(ExpressionError, SupervisorError)


# --- sandbox escapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd').read()",
        "eval('1')",
        "exec('x = 1')",
        "getattr(failure, 'component')",
        "type(failure)",
        "globals()",
        "compile('1', 'x', 'eval')",
        "().__class__.__bases__[0].__subclasses__()",
        "failure.__class__",
        "steps.__dict__",
        "failure.component.__class__",
        "steps.check_port._data",
        "''.join(['a'])",
        "params.get('service')",
        "str.mro()",
        "str(1).format(1)",
        "lambda: 1",
        "(lambda: 1)()",
        "[c for c in 'abc']",
        "{c for c in 'abc'}",
        "{c: 1 for c in 'abc'}",
        "list(c for c in 'abc')",
        "(x := 1)",
        "x = 1",
        "import os",
        "f'{failure.component}'",
        "{'a': 1}",
        "[*params.tags]",
        "await failure",
        "lower.__globals__",
        "lower",
        "True.real",
        "min.__self__",
        "params[params.service][lambda: 1]",
        "params[lower('a')][__import__('os')]",
        "params.tags[0][[c for c in 'ab']]",
        "steps[params.x].output[open('f')]",
    ],
)
def test_sandbox_escape_is_refused_at_compile_time(text: str) -> None:
    compile_error(text)


def test_private_keys_are_plain_missing_data_at_run_time() -> None:
    error = runtime_error("steps.check_port.output['__class__']")
    assert "has no field '__class__'" in error.message
    assert "step '_data' has not run" in runtime_error("steps['_data']").message
    assert "params has no field 'func_globals'" in runtime_error("params.func_globals").message


def test_fields_of_a_plain_value_are_refused_at_run_time_without_getattr() -> None:
    error = runtime_error("params.service.upper")
    assert error.message == "params.service is str, which has no field 'upper'"
    error = runtime_error("steps.check_port.output.port.real")
    assert "is int, which has no field 'real'" in error.message


# --- run-time errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps.probe.outcome == 'success'", "step 'probe' has not run (run so far: check_port,"),
        (
            "steps.check_port.output.prot",
            "steps.check_port.output has no field 'prot' (it has: host, items,",
        ),
        ("steps.check_port.output.nested.deeper.other", "steps.check_port.output.nested.deeper"),
        ("steps.check_port.output.services[5]", "list index out of range"),
        ("params.missing", "params has no field 'missing' (it has: max_latency_ms, service,"),
        ("steps[1]", "read with text keys"),
        ("failure.component + 1", 'can only concatenate str (not "int") to str'),
        ("failure.component < 1", "'<' not supported"),
        ("1 / 0", "division by zero"),
        ("1 // (steps.check_port.attempts - 2)", "division by zero"),
        ("5 % 0", "division by zero"),
        ("2 ** 100000", "is too large"),
        ("(-8) ** 0.5", "has no real result"),
        ("10.0 ** 400", "a number is too large"),
        ("float(10 ** 400)", "a number is too large"),
        ("'%s' % failure.component", "'%' formatting of text is not allowed"),
        ("'x' * 200000", "Sorry"),
        ("'x' * (2 * params.max_latency_ms * 100)", f"the limit is {MAX_RESULT_LENGTH}"),
        ("int('9' * 5000)", "digits"),
    ],
)
def test_runtime_problem_is_an_expression_error_naming_the_expression(
    text: str, message: str
) -> None:
    error = runtime_error(text)
    assert message in error.message
    assert error.text == text
    assert repr(text) in str(error)


def test_resources_not_measured_is_an_evaluation_error() -> None:
    context = expression_context(failure=FAILURE, steps={}, params={}, now=NOW)
    error = runtime_error("resources.cpu_percent > 90", context)
    assert error.message == "resource figures are not measured in this run"


def test_no_step_has_run_yet() -> None:
    context = expression_context(failure=FAILURE, steps={}, params={}, now=NOW)
    assert "(run so far: none)" in runtime_error("steps.a.outcome", context).message


# --- templates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("svc-{failure.component}", "svc-mqtt_broker"),
        ("{steps.check_port.output.host}:{steps.check_port.output.port}", "127.0.0.1:1883"),
        ("{{literal}} and {params.service}", "{literal} and mosquitto"),
        ("}}{{", "}{"),
        ("{{{params.service}}}", "{mosquitto}"),
        ("{upper(params.service)}", "MOSQUITTO"),
        ("{matches(failure.message, 'port \\\\d{4}')}", "True"),
        ("{'}' + params.service}", "}mosquitto"),
        ('{"a\\"}" + params.service}', 'a"}mosquitto'),
        ("{steps.check_port.duration_s * 4}", "1.0"),
    ],
)
def test_substitute(template: str, expected: str) -> None:
    assert substitute(template, CONTEXT) == expected
    assert compile_template(template).render(CONTEXT) == expected


@pytest.mark.parametrize(
    ("template", "message", "position"),
    [
        ("svc-{stpes}", "placeholder {stpes}: unknown name 'stpes'", 5),
        ("a {failure.component", "placeholder is not closed", 2),
        ("a } b", "single '}'", 2),
        ("a {} b", "empty placeholder", 2),
        ("{failure.{component}}", "'{' inside a placeholder", 9),
        ("x {failure.component ==}", "placeholder {failure.component ==}: syntax error", 23),
    ],
)
def test_a_template_is_checked_at_compile_time(template: str, message: str, position: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(template)
    assert message in caught.value.message
    assert caught.value.position == position
    assert caught.value.text == template


def test_a_template_error_at_run_time_names_the_placeholder() -> None:
    template = compile_template("port {steps.check_port.output.prot}")
    with pytest.raises(ExpressionError) as caught:
        template.render(CONTEXT)
    assert caught.value.text == "port {steps.check_port.output.prot}"
    assert caught.value.position == 5
    assert "placeholder {steps.check_port.output.prot}: steps.check_port.output has no" in str(
        caught.value
    )


def test_a_none_placeholder_is_refused() -> None:
    with pytest.raises(ExpressionError, match="is None"):
        substitute("{steps.check_port.output.missing}", CONTEXT)


def test_a_template_knows_whether_it_has_placeholders_and_what_it_reads() -> None:
    assert compile_template("mosquitto").is_static
    assert compile_template("mosquitto") and not compile_template("")
    assert compile_template("{{not a placeholder}}").is_static
    template = compile_template("{steps.probe.output.host}:{failure.component}")
    assert not template.is_static
    assert template.step_refs == {"probe"}
    assert template.roots == {"steps", "failure"}


# --- pydantic fields ------------------------------------------------------------------


class Guarded(BaseModel):
    when: CompiledExpression | None = None
    target: CompiledTemplate | None = None


def test_a_model_field_compiles_at_validation_and_serialises_as_text() -> None:
    model = Guarded.model_validate({"when": "time.hour < 6", "target": "svc-{failure.component}"})
    assert isinstance(model.when, CompiledExpression)
    assert model.when.test(CONTEXT) is True
    assert model.target is not None and model.target.render(CONTEXT) == "svc-mqtt_broker"
    assert model.model_dump() == {"when": "time.hour < 6", "target": "svc-{failure.component}"}
    assert Guarded.model_validate(model.model_dump()) == model


def test_a_model_field_reports_the_expression_error() -> None:
    with pytest.raises(ValidationError) as caught:
        Guarded.model_validate({"when": "stpes.a.outcome", "target": 5})
    errors = {error["loc"][0]: error["msg"] for error in caught.value.errors()}
    assert errors["when"].startswith("unknown name 'stpes' (known: steps,")
    assert errors["target"] == "expected text (quote it in YAML)"


# --- fuzz -----------------------------------------------------------------------------

LEAVES = [
    *["steps.check_port.output.port", "steps.check_port.outcome", "steps.restart.result"],
    *["steps.check_port.output.services[0].up", "steps.probe.outcome", "steps", "params"],
    *["steps.check_port.output.nested", "failure.component", "failure.message", "time.hour"],
    *["params.tags", "params.max_latency_ms", "resources.cpu_percent", "params.nope"],
    *["0", "1", "-1", "2.5", "99999", "'a'", "''", "'('", "None", "True", "[1, 'a']"],
]
BINARY = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">=", "and", "or", "in"]
CALLS = ["lower", "upper", "len", "str", "int", "float", "abs", "round", "min", "max"]
CALLS2 = ["startswith", "endswith", "contains", "matches", "round", "min", "max"]


def _random_expression(rng: random.Random, depth: int = 0) -> str:
    """A mostly well-formed expression, so that the fuzz reaches the evaluator too."""
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(LEAVES)
    if roll < 0.6:
        left, right = _random_expression(rng, depth + 1), _random_expression(rng, depth + 1)
        return f"({left} {rng.choice(BINARY)} {right})"
    if roll < 0.75:
        return f"{rng.choice(CALLS)}({_random_expression(rng, depth + 1)})"
    if roll < 0.85:
        args = f"{_random_expression(rng, depth + 1)}, {_random_expression(rng, depth + 1)}"
        return f"{rng.choice(CALLS2)}({args})"
    if roll < 0.92:
        return f"not {_random_expression(rng, depth + 1)}"
    key = rng.choice(["0", "-1", "1:3", "'port'", "'__class__'"])
    return f"{_random_expression(rng, depth + 1)}[{key}]"


def _mutate(rng: random.Random, text: str) -> str:
    if not text or rng.random() < 0.5:
        return text
    index = rng.randrange(len(text))
    return text[:index] + rng.choice(string.printable) + text[index + 1 :]


def _fuzz_inputs(count: int) -> list[str]:
    rng = random.Random(20261126)
    alphabet = string.printable + "é\x00"
    texts = []
    for index in range(count):
        if index % 2:
            texts.append("".join(rng.choices(alphabet, k=rng.randint(0, 40))))
        else:
            texts.append(_mutate(rng, _random_expression(rng)))
    return texts


def test_fuzz_compile_and_evaluate_only_ever_raise_expression_error() -> None:
    compiled_count = evaluated_count = 0
    for text in _fuzz_inputs(4000):
        try:
            compiled = compile_expression(text)
        except ExpressionError:
            continue
        compiled_count += 1
        result: Any
        try:
            result = compiled.evaluate(CONTEXT)
        except ExpressionError:
            continue
        evaluated_count += 1
        assert result is None or isinstance(result, str | int | float | list | tuple | dict)
    assert compiled_count > 800  # the generated half really reaches the evaluator
    assert evaluated_count > 200


def test_fuzz_templates_only_ever_raise_expression_error() -> None:
    for text in _fuzz_inputs(1000):
        try:
            compile_template("{" + text + "}").render(CONTEXT)
            compile_template(text).render(CONTEXT)
        except ExpressionError:
            continue
