"""The scenario format's page documents every key the loader accepts, and the help finds it."""

from __future__ import annotations

import re
from pathlib import Path

from graylogic_supervisor.sim.scenario import WORDS, Manual, Scenario, ScenarioAction, Site, Trigger

FORMAT = Path(__file__).resolve().parents[1] / "scenarios" / "FORMAT.md"


def documented_keys() -> set[str]:
    return set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", FORMAT.read_text(encoding="utf-8")))


def test_every_key_of_a_scenario_is_documented() -> None:
    keys = documented_keys()
    expected = {
        *Scenario.model_fields,
        *(f"trigger.{k}" for k in Trigger.model_fields),
        *(f"manual.{k}" for k in Manual.model_fields),
        *(f"site.{k}" for k in Site.model_fields),
        *ScenarioAction.model_fields,
        *WORDS,
    } - {"trigger", "manual", "site"}
    assert expected - keys == set()


def test_the_simulate_help_points_at_the_page() -> None:
    from graylogic_supervisor.cli import build_parser

    simulate = next(
        action.choices["simulate"]
        for action in build_parser()._actions
        if getattr(action, "choices", None) and "simulate" in action.choices
    )
    assert "tests/scenarios/FORMAT.md" in simulate.format_help().replace("\n", " ")
    assert FORMAT.is_file()
