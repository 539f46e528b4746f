"""A person's resolution, checked against this site's actions (plugins too) and targets,
and kept when the failure is already resolved unless replaced on purpose."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.memory import FailureRecord, Resolution
from graylogic_supervisor.engine.action import NoParams
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.memory.fixes import (
    FixCatalog,
    ResolutionRefused,
    configured_targets,
    record_resolution,
)
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.memory import MemoryRepository
from tests.memory.test_service import context

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PLUGIN = ActionSpec("reset_knx_router", ActionKind.FIX, NoParams, True)
CATALOG = FixCatalog(
    {**builtin_specs(), PLUGIN.name: PLUGIN},
    configured_targets(["mosquitto", "knxd"], ["mqtt", "knx"]),
)


def by(who: str, action: str | None, target: str | None = None) -> Resolution:
    return Resolution(
        resolved_at=NOW, fixed_by=who, what_fixed_it="did it", fix_action=action, fix_target=target
    )


@pytest.mark.parametrize(
    ("action", "target", "problem"),
    [
        ("restart_service", "knxd", None),
        ("reset_knx_router", "knx", None),  # a plugin's fix action
        ("manual", None, None),
        (None, "the SD card", None),  # a manual fix names what it likes
        ("reset_knx_routr", "knx", "did you mean 'reset_knx_router'?"),
        ("wait_for_health", "knx", "'wait_for_health' is a verify action and cannot be"),
        ("reset_knx_router", None, "'reset_knx_router' needs a target (configured: knx, knxd,"),
        ("restart_service", "knx-d", "unknown target 'knx-d'; did you mean 'knxd'?"),
        ("reboot_everything", None, "unknown fix action 'reboot_everything' (fix actions here:"),
    ],
)
def test_the_catalog_names_what_is_wrong(
    action: str | None, target: str | None, problem: str | None
) -> None:
    found = CATALOG.problem(action, target)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


async def test_a_manual_fix_is_stored_without_an_action_and_a_resolved_one_is_kept(
    db: Database,
) -> None:
    repository = MemoryRepository(db)
    await repository.save(FailureRecord(context=context(1)), NOW)

    stored = await record_resolution(
        repository, CATALOG, "fail-1", by("erin", "manual", "sd card"), now=NOW, force=False
    )
    assert (stored.fix_action, stored.fix_target) == (None, "sd card")
    record = await repository.get("fail-1")
    assert record is not None and record.resolution == stored and not record.resolved

    with pytest.raises(ResolutionRefused) as refused:
        await record_resolution(
            repository,
            CATALOG,
            "fail-1",
            by("ada", "restart_service", "knxd"),
            now=NOW,
            force=False,
        )
    assert refused.value.kind == "already_resolved"
    assert refused.value.message == (
        "fail-1 was already resolved by erin at 2026-12-01T00:00:00.000Z (manual: did it);"
        " it is kept unless replaced on purpose"
    )
    await record_resolution(
        repository, CATALOG, "fail-1", by("ada", "restart_service", "knxd"), now=NOW, force=True
    )
    record = await repository.get("fail-1")
    assert record is not None and record.resolved and record.resolution.fixed_by == "ada"

    with pytest.raises(ResolutionRefused) as unknown:
        await record_resolution(
            repository, CATALOG, "fail-9", by("ada", "manual"), now=NOW, force=False
        )
    assert unknown.value.kind == "unknown_failure"


def test_a_fix_that_needs_parameters_is_noted_as_not_repeatable() -> None:
    assert CATALOG.note("restart_service") is None
    assert CATALOG.note("playbook") == (
        "'playbook' needs parameters (playbook): recorded, but the memory cannot repeat it"
        " unattended"
    )
    assert CATALOG.note(None) is None
