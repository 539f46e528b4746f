from __future__ import annotations

import pytest

from graylogic_supervisor.domain.actions import ActionSpec
from graylogic_supervisor.engine.builtins import builtin_specs


@pytest.fixture(scope="module")
def actions() -> dict[str, ActionSpec]:
    return builtin_specs()
