"""A change the analysis considers, with what it rests on (shared by the modules that
propose changes; ``analysis.py`` judges them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graylogic_supervisor.learning.changes import Change


@dataclass
class Candidate:
    change: Change
    summary: str
    evidence: dict[str, Any]
    # The findings it answers (e.g. "bottleneck check_broker"), shown with its verdict.
    findings: list[str] = field(default_factory=list)
