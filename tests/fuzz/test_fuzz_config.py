"""The config loader fuzzed: any file either loads or is a ConfigError naming file, line, field.

Mutations of ``config/supervisor.yaml`` as shipped and of the config the
daemon tests write, as data and as text, and hostile YAML. The catalog goes
through the same YAML layer and is fuzzed alongside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from graylogic_supervisor.catalog import load_catalog
from graylogic_supervisor.config import load_config
from graylogic_supervisor.errors import CatalogError, ConfigError
from tests.daemon_process import write_config
from tests.fuzz.yaml_inputs import (
    FUZZ,
    dumped,
    loads_or_is_located,
    mutated_data,
    mutated_text,
    yaml_texts,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config" / "supervisor.yaml").read_text(encoding="utf-8")
CATALOG = (REPO / "config" / "catalog.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One directory for every example: the loader only reads the file it is given."""
    yield tmp_path_factory.mktemp("config-fuzz")


def daemon_config(directory: Path) -> str:
    return write_config(directory / "seed", 1884).read_text()


def load(directory: Path, text: str) -> object | None:
    file = directory / "supervisor.yaml"
    file.write_text(text, encoding="utf-8")
    return loads_or_is_located(lambda: load_config(file), file, ConfigError, text)


def test_the_configs_that_are_mutated_load(directory: Path) -> None:
    (directory / "seed").mkdir(exist_ok=True)
    assert load(directory, SHIPPED) is not None
    assert load(directory, daemon_config(directory)) is not None


@FUZZ
@given(text=yaml_texts())
def test_any_text_loads_or_names_file_line_and_field(directory: Path, text: str) -> None:
    load(directory, text)


@FUZZ
@given(data=st.data())
def test_a_mutated_config_loads_or_names_file_line_and_field(
    directory: Path, data: st.DataObject
) -> None:
    (directory / "seed").mkdir(exist_ok=True)
    seed = data.draw(st.sampled_from([SHIPPED, daemon_config(directory)]))
    original: Any = yaml.safe_load(seed)
    load(directory, dumped(data.draw(mutated_data(original))))


@FUZZ
@given(text=mutated_text(SHIPPED))
def test_an_edited_shipped_config_loads_or_names_file_line_and_field(
    directory: Path, text: str
) -> None:
    load(directory, text)


@FUZZ
@given(text=st.one_of(mutated_text(CATALOG), mutated_data(yaml.safe_load(CATALOG)).map(dumped)))
def test_a_mutated_catalog_loads_or_names_file_line_and_field(directory: Path, text: str) -> None:
    file = directory / "catalog.yaml"
    file.write_text(text, encoding="utf-8")
    loads_or_is_located(lambda: load_catalog(file), file, CatalogError, text)


# --- regressions ----------------------------------------------------------------------------


def refusal(directory: Path, text: str) -> list[tuple[int | None, str, str]]:
    file = directory / "supervisor.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    return [(p.line, p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("log_level: INFO\nstate_dir: ~nosuchuser/state\n", "state_dir"),
        ("log_level: INFO\ncatalog: ~nosuchuser/catalog.yaml\n", "catalog"),
        ("log_level: INFO\nplaybooks: {directory: ~nosuchuser/p}\n", "playbooks.directory"),
    ],
)
def test_bug_a_path_of_an_unknown_user_is_refused_not_a_runtime_error(
    directory: Path, text: str, field: str
) -> None:
    [(line, named, message)] = refusal(directory, text)
    assert (line, named) == (2, field)
    assert "cannot expand '~nosuchuser': no such user" in message


@pytest.mark.parametrize("field", ["state_dir", "catalog", "database"])
def test_bug_a_path_with_a_nul_character_is_refused_not_a_value_error(
    directory: Path, field: str
) -> None:
    [(line, named, message)] = refusal(directory, f'site: {{name: x}}\n{field}: "a\\0b"\n')
    assert (line, named) == (2, field)
    assert "a path cannot contain a NUL character" in message


@pytest.mark.parametrize("text", ["- mqtt\n", "just words\n", "42\n"])
def test_bug_a_config_that_is_not_a_mapping_says_so(directory: Path, text: str) -> None:
    [(line, field, message)] = refusal(directory, text)
    assert (line, field) == (1, "")
    assert message.startswith("expected a mapping (dictionary) of fields, got ")
