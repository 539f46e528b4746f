"""The scenario loader fuzzed: a scenario loads or is a ScenarioError naming file, line, field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from graylogic_supervisor.sim.scenario import ScenarioError, load_scenario
from tests.fuzz.yaml_inputs import FUZZ, dumped, loads_or_is_located, mutated_data, mutated_text

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
SEEDS = {
    path.name: path.read_text(encoding="utf-8")
    for path in sorted((REPO / "tests" / "scenarios").glob("*.yaml"))
    if "causes:" in path.read_text(encoding="utf-8")
}


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("scenario-fuzz")


def load(directory: Path, text: str) -> object | None:
    file = directory / "scenario.yaml"
    file.write_text(text, encoding="utf-8")
    return loads_or_is_located(lambda: load_scenario(file, PLAYBOOKS), file, ScenarioError, text)


def test_the_scenarios_that_are_mutated_load(directory: Path) -> None:
    assert len(SEEDS) >= 5
    for name, text in SEEDS.items():
        if "playbook_file" not in text:  # those name a file beside the original
            assert load(directory, text) is not None, name


@FUZZ
@given(data=st.data())
def test_a_mutated_scenario_loads_or_names_file_line_and_field(
    directory: Path, data: st.DataObject
) -> None:
    seed = SEEDS[data.draw(st.sampled_from(sorted(SEEDS)))]
    original: Any = yaml.safe_load(seed)
    text = data.draw(st.one_of(mutated_text(seed), mutated_data(original).map(dumped)))
    load(directory, text)


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"default": [1, 2]}, "an outcome is a word, or a mapping of words to probabilities"),
        ({"default": {"success": "half"}}, "probability of 'success' must be a number"),
        ({"success": {"a": 1}}, "probability of 'success' must be a number"),
    ],
)
def test_bug_an_outcome_of_the_wrong_type_is_located_not_a_type_error(
    directory: Path, outcome: Any, message: str
) -> None:
    data = yaml.safe_load(SEEDS["mqtt-mixed-causes.yaml"])
    action = next(iter(data["actions"]))
    data["actions"][action]["outcome"] = outcome
    file = directory / "wrong-type.yaml"
    file.write_text(dumped(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file, PLAYBOOKS)
    [problem] = caught.value.problems
    assert problem.field == f"actions.{action}.outcome"
    assert problem.line is not None and problem.line > 1
    assert message in problem.message


def test_bug_a_broken_playbook_beside_does_not_stop_the_search_by_id(tmp_path: Path) -> None:
    """Looking a playbook up by id reads every file; one nested too deeply used to crash it."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "a-broken.yaml").write_text("x: " + "[" * 3000 + "]" * 3000 + "\n")
    (playbooks / "b-huge-number.yaml").write_text("x: " + "1" * 5000 + "\n")
    (playbooks / "mqtt.yaml").write_text((PLAYBOOKS / "mqtt-recover.yaml").read_text())
    file = tmp_path / "scenario.yaml"
    file.write_text(SEEDS["mqtt-by-id.yaml"])
    scenario = load_scenario(file, playbooks)
    assert scenario.playbook_file == (playbooks / "mqtt.yaml").resolve()
