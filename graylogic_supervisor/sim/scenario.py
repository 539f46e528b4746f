"""The scenario file (``tests/scenarios/FORMAT.md``): causes, how actions behave, a technician.

Loaded like every other YAML file here: each problem names the file, line and
field. ``outcome`` is a word, or a mapping from cause (or ``default``) to a
word or to probabilities of words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graylogic_supervisor.errors import SourceError, SourceProblem
from graylogic_supervisor.yamlsource import PathKey, dotted, load_located, validate_located

WORDS = ("success", "failure", "fix", "health")
DEFAULT = "default"
TOLERANCE = 1e-6


class ScenarioError(SourceError):
    """A scenario file that cannot be simulated."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError("max is below min")
        return self


Distribution = dict[str, float]
OutcomeSpec = str | Distribution


def _check_spec(spec: object) -> OutcomeSpec:
    """Runs before pydantic's own checks (a ``before`` validator), so it checks types too."""
    if isinstance(spec, str):
        if spec not in WORDS:
            raise ValueError(f"unknown outcome word {spec!r} (one of {', '.join(WORDS)})")
        return spec
    if not isinstance(spec, dict):
        raise ValueError("an outcome is a word, or a mapping of words to probabilities")
    for word, chance in spec.items():
        if word not in WORDS:
            raise ValueError(f"unknown outcome word {word!r} (one of {', '.join(WORDS)})")
        if isinstance(chance, bool) or not isinstance(chance, int | float):
            raise ValueError(f"probability of {word!r} must be a number")
        if not 0 <= chance <= 1:
            raise ValueError(f"probability of {word!r} must be between 0 and 1")
    if not math.isclose(sum(spec.values()), 1.0, abs_tol=TOLERANCE):
        raise ValueError(f"probabilities sum to {sum(spec.values()):g}, not 1")
    return spec


Duration = float | Range


class ScenarioAction(_Model):
    duration_s: Duration | dict[str, Duration] = Field(
        description="seconds, or {min, max} drawn uniformly; or either per cause (and default)",
        union_mode="left_to_right",  # {min, max} is a range, any other mapping is per cause
    )
    outcome: OutcomeSpec | dict[str, OutcomeSpec]

    @field_validator("duration_s")
    @classmethod
    def _not_negative(cls, value: Duration | dict[str, Duration]) -> Duration | dict[str, Duration]:
        for duration in value.values() if isinstance(value, dict) else [value]:
            if isinstance(duration, float | int) and duration < 0:
                raise ValueError("a duration cannot be negative")
        return value

    @field_validator("outcome", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _check_spec(value)
        if isinstance(value, dict) and value and all(k in WORDS for k in value):
            return _check_spec(value)  # one distribution for every cause
        if isinstance(value, dict):
            return {key: _check_spec(spec) for key, spec in value.items()}
        raise ValueError("a word, or a mapping of cause (or default) to a word or probabilities")

    def spec_for(self, cause: str) -> OutcomeSpec | None:
        if isinstance(self.outcome, str) or all(k in WORDS for k in self.outcome):
            return self.outcome  # type: ignore[return-value]  # a single spec for all
        by_cause: dict[str, OutcomeSpec] = self.outcome  # type: ignore[assignment]
        return by_cause.get(cause, by_cause.get(DEFAULT))

    def can_fix(self, cause: str) -> bool:
        spec = self.spec_for(cause)
        return spec == "fix" or (isinstance(spec, dict) and spec.get("fix", 0) > 0)

    def verifies(self, causes: list[str]) -> bool:
        """Its outcome is ``health`` under every cause: it observes health, nothing else."""
        return all(self.spec_for(c) in ("health", {"health": 1}) for c in causes)

    def duration_for(self, cause: str) -> Duration:
        if isinstance(self.duration_s, dict):
            return self.duration_s.get(cause, self.duration_s.get(DEFAULT, 0.0))
        return self.duration_s

    def mean_duration(self, cause: str) -> float:
        duration = self.duration_for(cause)
        if isinstance(duration, Range):
            return (duration.min + duration.max) / 2
        return float(duration)

    def draw_duration(self, cause: str, rng: random.Random) -> float:
        duration = self.duration_for(cause)
        if isinstance(duration, Range):
            return rng.uniform(duration.min, duration.max)
        return float(duration)

    def draw_outcome(self, cause: str, rng: random.Random) -> str:
        spec = self.spec_for(cause)
        assert spec is not None  # checked at load
        if isinstance(spec, str):
            return spec
        return draw(spec, rng)


class Trigger(_Model):
    component: str = Field(min_length=1)
    error_id: str = Field(min_length=1)


class Manual(_Model):
    resolve_s: float = Field(ge=0)
    fix_actions: dict[str, str] = {}


class Site(_Model):
    """How often the fault happens on the site: incidents arrive at random (a Poisson
    process) at this mean rate, instead of one every 600 s."""

    incidents_per_week: float = Field(gt=0)


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    playbook_file: Path | None = None
    playbook: str | None = None
    trigger: Trigger
    causes: dict[str, float] = Field(min_length=1)
    actions: dict[str, ScenarioAction] = Field(min_length=1)
    manual: Manual
    site: Site | None = None
    # No playbook covers the trigger: each incident goes to the technician until the
    # analysis drafts a playbook from the technicians' fixes and it is approved.
    uncovered: bool = False

    def fix_action_for(self, cause: str) -> str | None:
        """The technician's fix: ``manual.fix_actions``, else the first action that can fix."""
        if cause in self.manual.fix_actions:
            return self.manual.fix_actions[cause]
        for name, action in self.actions.items():
            if action.can_fix(cause):
                return name
        return None

    def draw_cause(self, rng: random.Random) -> str:
        return draw(self.causes, rng)


def draw(distribution: Mapping[str, float], rng: random.Random) -> str:
    """One key, with the probabilities given (in file order, so a seed replays)."""
    point = rng.random()
    total = 0.0
    last = ""
    for key, chance in distribution.items():
        total += chance
        last = key
        if point < total:
            return key
    return last  # rounding left a sliver at the top


def load_scenario(file: Path, playbooks_dir: Path | None = None) -> Scenario:
    """A validated scenario whose ``playbook_file`` names the playbook under test:
    relative to the scenario, or found by ``playbook`` id in ``playbooks_dir``."""
    located = load_located(file, ScenarioError)
    if not isinstance(located.data, dict):
        raise ScenarioError(file, [SourceProblem(file, 1, "", "a scenario is a YAML mapping")])
    scenario = validate_located(located, Scenario, ScenarioError)
    problems = [
        SourceProblem(file, located.line_of(where), dotted(where), message)
        for where, message in _cross_problems(scenario)
    ]
    if problems:
        raise ScenarioError(file, problems)
    if scenario.uncovered:
        return scenario
    if scenario.playbook_file is not None:
        return scenario.model_copy(
            update={"playbook_file": (file.parent / scenario.playbook_file).resolve()}
        )
    assert scenario.playbook is not None
    found = _playbook_file(scenario.playbook, playbooks_dir)
    if found is None:
        where = f"in {playbooks_dir}" if playbooks_dir else "(no playbooks directory given)"
        problem = SourceProblem(
            file,
            located.line_of(("playbook",)),
            "playbook",
            f"no playbook {scenario.playbook} {where}",
        )
        raise ScenarioError(file, [problem])
    return scenario.model_copy(update={"playbook_file": found})


def _playbook_file(playbook_id: str, directory: Path | None) -> Path | None:
    """The file in ``directory`` that declares ``id: playbook_id`` (validated later)."""
    if directory is None or not directory.is_dir():
        return None
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError, yaml.YAMLError):
            continue  # a broken file is not the one we look for; the loader reports it
        if isinstance(data, dict) and data.get("id") == playbook_id:
            return path.resolve()
    return None


def _cross_problems(scenario: Scenario) -> list[tuple[PathKey, str]]:
    problems: list[tuple[PathKey, str]] = []
    if scenario.uncovered:
        for where in ("playbook_file", "playbook"):
            if getattr(scenario, where) is not None:
                problems.append(((where,), "an uncovered scenario names no playbook"))
    elif (scenario.playbook_file is None) == (scenario.playbook is None):
        where = "playbook_file" if scenario.playbook_file is not None else "playbook"
        problems.append(((where,), "give either playbook_file or playbook"))
    total = sum(scenario.causes.values())
    for cause, chance in scenario.causes.items():
        if not 0 <= chance <= 1:
            problems.append((("causes", cause), "a probability is between 0 and 1"))
    if not math.isclose(total, 1.0, abs_tol=TOLERANCE):
        problems.append((("causes",), f"the causes' probabilities sum to {total:g}, not 1"))
    for name, action in scenario.actions.items():
        if isinstance(action.duration_s, dict):
            problems += _by_cause_problems(
                scenario, ("actions", name, "duration_s"), action.duration_s
            )
        if isinstance(action.outcome, dict) and not all(k in WORDS for k in action.outcome):
            for key in action.outcome:
                if key != DEFAULT and key not in scenario.causes:
                    problems.append((("actions", name, "outcome", key), f"unknown cause {key!r}"))
            if DEFAULT not in action.outcome:
                missing = [c for c in scenario.causes if c not in action.outcome]
                if missing:
                    problems.append(
                        (
                            ("actions", name, "outcome"),
                            f"no outcome for {', '.join(missing)} and no default",
                        )
                    )
    for cause, fix in scenario.manual.fix_actions.items():
        if cause not in scenario.causes:
            problems.append((("manual", "fix_actions", cause), f"unknown cause {cause!r}"))
        if fix not in scenario.actions:
            problems.append(
                (("manual", "fix_actions", cause), f"{fix!r} is not one of the actions")
            )
    return problems


def _by_cause_problems(
    scenario: Scenario, where: PathKey, by_cause: Mapping[str, object]
) -> list[tuple[PathKey, str]]:
    """A per-cause mapping names known causes, and covers every cause or has a default."""
    problems: list[tuple[PathKey, str]] = [
        ((*where, key), f"unknown cause {key!r}")
        for key in by_cause
        if key != DEFAULT and key not in scenario.causes
    ]
    missing = [c for c in scenario.causes if c not in by_cause]
    if DEFAULT not in by_cause and missing:
        problems.append((where, f"no value for {', '.join(missing)} and no default"))
    return problems
