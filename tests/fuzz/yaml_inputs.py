"""What the YAML fuzz tests share: hostile texts, mutations of shipped files, the property.

Every loader of a YAML file here (playbooks, config, scenarios) promises the
same thing: the file loads, or its own ``SourceError`` names the file and, for
each problem, the line and the field. Nothing else may come out of it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from graylogic_supervisor.errors import SourceError

# Reproducible in CI: the same examples every run, and no flaky deadline on 2 busy cores.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HANG_CPU_S = 5.0
"""CPU seconds this process may spend on one load: far above any real input (the largest
takes milliseconds), and counted in CPU time, not wall time, so a machine busy with other
work cannot make a load look hung; only a loop that does not end spends it."""

# Problems about the file as a whole: there is no field to name.
WHOLE_FILE = (
    "YAML syntax:",
    "YAML nested more than",
    "character #x",
    "cannot read",
    "keys must be strings",
    "a playbook is a YAML mapping",
    "a scenario is a YAML mapping",
    "more than 20000 values",
    "expected a mapping (dictionary) of fields",
)


class Hang(Exception):
    """A load that spent more than ``HANG_CPU_S`` of CPU time."""


@contextlib.contextmanager
def bounded(cpu_seconds: float = HANG_CPU_S) -> Iterator[None]:
    """Turn a hang into a test failure instead of a CI job that never ends.

    The budget is the process's CPU time (``ITIMER_PROF``: user and system time of
    this process), which waiting for a busy machine's cores does not consume.
    """

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {cpu_seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def loads_or_is_located(
    load: Callable[[], object], file: Path, error: type[SourceError], text: str | None
) -> object | None:
    """Run ``load``: the value, or None after checking its ``error`` names file, line, field.

    ``text`` is what was loaded (for the range of lines); None for in-memory
    data, whose problems name fields but have no line.
    """
    try:
        with bounded():
            return load()
    except error as exc:
        assert exc.file == file
        assert exc.problems, "an error with no problem in it"
        assert str(file) in str(exc)
        lines = (text.count("\n") + 1) if text is not None else 0
        for problem in exc.problems:
            assert problem.file == file
            assert problem.message.strip(), problem
            assert "Traceback" not in problem.message
            if text is not None:
                assert problem.line is not None, f"no line: {problem}"
                assert 1 <= problem.line <= lines, f"line {problem.line} of {lines}: {problem}"
                assert f"{file}:{problem.line}" in str(exc)
            if not problem.message.startswith(WHOLE_FILE):
                assert problem.field, f"no field named: {problem}"
        return None


# --- hostile YAML ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e999", "PLAY-X-001", "done", "escalate", "next", "{x}"]),
)

VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

# Pieces that exercise the corners of PyYAML and of our builder.
FRAGMENTS = [
    "a: 1\n",
    "- x\n",
    "  ",
    "\n",
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "&b [*a, *a, *a, *a, *a, *a, *a, *a]\n",
    "<<: *a\n",
    "!!python/object:os.system ",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!float x",
    "!!int 0x",
    "2024-13-45",
    "1" * 5000,
    "1e999",
    ".nan",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    '"\\ud800"',
    "#",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\t",
    "\x00",
    "\ufeff",
    "é∂√😀",
    "id",
    "steps",
    "name",
    "version",
    "on_success",
    "when: ",
    "{steps.x.output",
]

YAML_SOUP = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)

BOMB_LEVELS = 9
BOMB = "a: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, BOMB_LEVELS)
)


def nested(depth: int, kind: str) -> str:
    """``[[[…]]]`` or ``{a: {a: …}}``, ``depth`` levels deep."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return "{a: " * depth + "1" + "}" * depth


SPECIAL_TEXTS = st.one_of(
    st.just(BOMB),
    st.builds(nested, st.sampled_from([10, 63, 65, 200, 3000]), st.sampled_from(["list", "map"])),
    st.just("&a [*a]"),
    st.just("&a {x: *a}"),
)


def yaml_texts() -> st.SearchStrategy[str]:
    """Raw text, fragment soup, dumped random structures and the known bombs."""
    dumped = VALUES.map(lambda value: yaml.safe_dump(value, allow_unicode=True))
    return st.one_of(st.text(max_size=200), YAML_SOUP, dumped, SPECIAL_TEXTS)


# --- mutations of a real file -------------------------------------------------------------


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def nested_list(depth: int) -> list[object]:
    inner: list[object] = []
    for _ in range(depth - 1):
        inner = [inner]
    return inner


WRONG = st.one_of(
    SCALARS,
    VALUES,
    st.just(10**400),
    st.just(-(10**400)),
    st.just(1e308 * 10),
    st.just("x" * 100_000),
    st.just("\u202e\u0000\ud7ff"),
    st.builds(lambda: nested_list(20)),  # fresh each time: mutations change it in place
)


@st.composite
def mutated_data(draw: st.DrawFn, original: Any) -> Any:
    """``original`` with one to three structural mutations at random paths."""
    data = yaml.safe_load(yaml.safe_dump(original))  # a private deep copy
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["replace", "delete", "add", "wrap", "empty"]))
        if not path:
            data = draw(WRONG) if operation == "replace" else data
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if operation == "replace":
            parent[last] = draw(WRONG)
        elif operation == "delete":
            del parent[last]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(WRONG)
        elif operation == "add" and isinstance(parent, list):
            parent.append(draw(WRONG))
        elif operation == "wrap":
            parent[last] = [parent[last]] if draw(st.booleans()) else {"x": parent[last]}
        else:
            parent[last] = draw(st.sampled_from([None, "", [], {}]))
    return data


@st.composite
def mutated_text(draw: st.DrawFn, original: str) -> str:
    """``original`` with lines duplicated (duplicate keys), dropped, swapped or spliced."""
    lines = original.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        operation = draw(st.sampled_from(["duplicate", "drop", "swap", "splice", "indent"]))
        if operation == "duplicate":
            lines.insert(index, lines[index])
        elif operation == "drop":
            del lines[index]
        elif operation == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif operation == "splice":
            line = lines[index]
            cut = draw(st.integers(0, len(line)))
            lines[index] = line[:cut] + draw(st.sampled_from(FRAGMENTS)) + line[cut:]
        else:
            lines[index] = draw(st.sampled_from(["  ", "\t", ""])) + lines[index].lstrip()
    return "".join(lines)


def dumped(data: Any) -> str:
    """YAML for mutated data; unicode kept, sorted as written."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
