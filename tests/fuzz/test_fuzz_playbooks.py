"""The playbook loader fuzzed: any text or data either loads or is a located PlaybookError.

Hostile YAML (random text, fragment soup, alias bombs, deep nesting), random
structures, and mutations of the shipped playbooks, as text and as data. The
property is in ``yaml_inputs.loads_or_is_located``; each bug the fuzzing found
keeps a regression test of its own below.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.playbooks.loader import load_playbook, validate_playbook_data
from graylogic_supervisor.yamlsource import MAX_NODES
from tests.fuzz.yaml_inputs import (
    BOMB,
    FUZZ,
    VALUES,
    dumped,
    loads_or_is_located,
    mutated_data,
    mutated_text,
    nested,
    yaml_texts,
)

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "playbooks").glob("*.yaml"))
FILE = Path("/site/playbooks/fuzzed.yaml")
ACTIONS: dict[str, ActionSpec] = builtin_specs()
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in SHIPPED}
DATA = {name: yaml.safe_load(text) for name, text in TEXTS.items()}


def load_text(text: str) -> object | None:
    return loads_or_is_located(
        lambda: load_playbook(FILE, ACTIONS, text), FILE, PlaybookError, text
    )


def test_the_shipped_playbooks_are_what_is_mutated() -> None:
    assert len(SHIPPED) >= 3
    for text in TEXTS.values():
        assert load_text(text) is not None


@FUZZ
@given(text=yaml_texts())
def test_any_text_loads_or_names_file_line_and_field(text: str) -> None:
    load_text(text)


@FUZZ
@given(data=st.sampled_from(sorted(DATA)).flatmap(lambda name: mutated_data(DATA[name])))
def test_a_mutated_shipped_playbook_loads_or_names_file_line_and_field(data: Any) -> None:
    load_text(dumped(data))


@FUZZ
@given(text=st.sampled_from(sorted(TEXTS)).flatmap(lambda name: mutated_text(TEXTS[name])))
def test_an_edited_shipped_playbook_text_loads_or_names_file_line_and_field(text: str) -> None:
    load_text(text)


@FUZZ
@given(
    data=st.one_of(
        st.dictionaries(st.text(max_size=10), VALUES, max_size=6),
        st.sampled_from(sorted(DATA)).flatmap(lambda name: mutated_data(DATA[name])),
    )
)
def test_proposed_playbook_data_is_valid_or_names_the_field(data: Any) -> None:
    """A version built in memory (a learning proposal) takes the same checks, without lines."""
    if not isinstance(data, dict):
        return
    loads_or_is_located(
        lambda: validate_playbook_data(FILE, data, ACTIONS), FILE, PlaybookError, None
    )


# --- regressions: each was an exception other than PlaybookError before the fix -----------


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PlaybookError) as caught:
        load_playbook(FILE, ACTIONS, text)
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_bug_alias_bomb_is_refused_at_once_instead_of_expanding_a_billion_values() -> None:
    began = time.monotonic()
    [(line, field, message)] = problems(BOMB)
    assert (line, field) == (1, "")
    assert message == f"more than {MAX_NODES} values once aliases are expanded"
    assert time.monotonic() - began < 5  # it used to run for hours: a hang guard, not a figure


@pytest.mark.parametrize("text", ["&a [*a]", "top: &a {x: *a}"])
def test_bug_alias_of_its_own_ancestor_is_refused_not_a_recursion_error(text: str) -> None:
    [(line, field, message)] = problems(text)
    assert line == 1
    assert field in ("[0]", "top.x")
    assert message == "an alias of its own ancestor"


@pytest.mark.parametrize("kind", ["list", "map"])
def test_bug_deep_nesting_is_refused_not_a_recursion_error(kind: str) -> None:
    for depth in (65, 3000):
        [(line, _, message)] = problems("top: " + nested(depth, kind))
        assert line == 1
        assert "nested more than 64 levels deep" in message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1" * 5000, "Exceeds the limit (4300 digits)"),
        ("2024-13-45", "month must be in 1..12"),
        ("!!python/object:os.system x", "could not determine a constructor"),
    ],
)
def test_bug_a_value_pyyaml_cannot_construct_is_located(value: str, reason: str) -> None:
    text = TEXTS["mqtt-recover.yaml"].replace("name: MQTT broker recovery", f"name: {value}")
    [(line, field, message)] = problems(text)
    assert field == "name"
    assert line == text.splitlines().index(f"name: {value}") + 1
    assert message.startswith("cannot read this value:") and reason in message


def test_bug_a_merge_key_is_refused_with_its_line() -> None:
    text = "defaults: &d {timeout_seconds: 5}\nlimits:\n  <<: *d\n"
    [(line, field, message)] = problems(text)
    assert (line, field) == (3, "limits")
    assert "merge keys ('<<') are not supported" in message


def test_bug_a_nul_character_names_its_line() -> None:
    [(line, field, message)] = problems("id: PLAY-X-001\nname: a\x00b\n")
    assert (line, field) == (2, "")
    assert message == "character #x0000 is not allowed in YAML"


def test_bug_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"id: PLAY-X-001\nname: caf\xe9\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, ACTIONS)
    [problem] = caught.value.problems
    assert problem.line == 2
    assert problem.message == "cannot read: not UTF-8 (byte 25)"
