"""The README's example plugin package (examples/site-actions), installed as pip would
from its own pyproject's entry points, validated by the CLI and run; and the example
clean-up playbook."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest

from graylogic_supervisor.engine.action import ActionRegistry
from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.engine.plugins import SiteContext, add_plugins, discover_plugins
from graylogic_supervisor.playbooks.loader import load_playbook
from tests.clocks import ManualClock
from tests.daemon_process import REPO
from tests.engine.plugin_dist import GROUP, install
from tests.engine.step_context import step_context

EXAMPLE = REPO / "examples" / "site-actions"
CLI = (sys.executable, "-m", "graylogic_supervisor")


def install_example(site: Path) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"][GROUP]
    assert entries == {"request_reset": "site_actions_example:RequestReset"}
    install(
        site,
        project["name"],
        "site_actions_example",
        (EXAMPLE / "site_actions_example.py").read_text(),
        entries,
    )


def test_the_example_package_validates_its_playbook_through_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    install_example(site)

    result = subprocess.run(
        [*CLI, "playbook", "validate", str(EXAMPLE / "knx-router-reset.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])},
    )

    assert result.returncode == 0, result.stderr
    assert "PLAY-KNX-RESET-001 1.0.0, 2 steps" in result.stdout


def test_the_example_action_writes_its_request_and_refuses_unknown_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    install_example(site)
    monkeypatch.syspath_prepend(str(site))
    entries = [
        e for d in distributions(path=[str(site)]) for e in d.entry_points if e.group == GROUP
    ]
    plugins = discover_plugins(entries)
    requests = tmp_path / "requests"
    requests.mkdir()
    registry = ActionRegistry()
    settings = {"request_reset": {"directory": str(requests), "devices": ["knx-router"]}}

    assert add_plugins(registry, SiteContext("villa", tmp_path), settings, plugins) == [
        "request_reset"
    ]
    action = registry.get("request_reset")
    params = action.params_model.model_validate
    done = asyncio.run(action.run(step_context(params({"device": "knx-router"}), ManualClock())))
    refused = asyncio.run(action.run(step_context(params({"device": "fridge"}), ManualClock())))

    assert done.success, done
    assert (requests / "knx-router.reset").read_text().endswith(" exec-1\n")
    assert refused.result == "the watchdog knows no device fridge (knx-router)"
    # without its settings the action is left out, and says why
    assert add_plugins(ActionRegistry(), SiteContext("villa", tmp_path), {}, plugins) == []


def test_the_example_cleanup_playbook_validates() -> None:
    loaded = load_playbook(REPO / "examples" / "playbooks" / "disk-cleanup.yaml", builtin_specs())

    assert [step.action for step in loaded.playbook.steps] == [
        "check_disk",
        "clean_up_files",
        "check_disk",
    ]
