"""Helpers for tests of YAML sources: where a problem is, as a user reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from graylogic_supervisor.errors import SourceError

Problem = tuple[int | None, str, str]  # (line, field, message)

PLAYBOOK_HEADER = """\
id: PLAY-TEST-RECOVER-001
name: Test recovery
version: 1.0.0
trigger:
  component: mqtt
  error_ids: [ERR-INFRA-MQTT-001]
"""


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the one line of ``path`` that contains ``needle``."""
    lines = [i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return lines[0]


def refusal(path: Path, load: Callable[[Path], object], error: type[SourceError]) -> list[Problem]:
    """The (line, field, message) of every problem ``load`` reports for ``path``."""
    with pytest.raises(error) as caught:
        load(path)
    assert caught.value.file == path
    assert {problem.file for problem in caught.value.problems} == {path}
    return [(problem.line, problem.field, problem.message) for problem in caught.value.problems]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]
