"""Action plugins from a real installed distribution (a dist-info with entry_points.txt).

In process: discovery, every way a plugin can be unusable, and registration.
As a person runs it: ``playbook validate`` in a child process that finds the
distribution on its ``PYTHONPATH``, and the daemon running a playbook with the
plugin's action beside a broken plugin it leaves out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from importlib.metadata import EntryPoint, distributions
from pathlib import Path

import pytest

from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.engine.action import ActionRegistry, StepContext
from graylogic_supervisor.engine.builtins.notify import Log
from graylogic_supervisor.engine.plugins import (
    SiteContext,
    action_specs,
    add_plugins,
    discover_plugins,
)
from tests.clocks import ManualClock
from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, write_config
from tests.engine.plugin_dist import GROUP, TOUCH_MARKER, install, playbook

NOT_AN_ACTION = """\
class Half:
    name = "half_done"
"""

NOT_PYDANTIC = TOUCH_MARKER.replace(
    "params_model: ClassVar[type[BaseModel]] = MarkerParams", "params_model = dict"
)
RAISES_ON_IMPORT = 'raise RuntimeError("the vendor SDK is missing")\n'
RAISES_IN_CONSTRUCTOR = TOUCH_MARKER.replace('site.settings["marker"]', 'site.settings["absent"]')


def entries_in(site: Path) -> list[EntryPoint]:
    return [
        entry
        for dist in distributions(path=[str(site)])
        for entry in dist.entry_points
        if entry.group == GROUP
    ]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site-packages"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def unique(tmp_path: Path) -> str:
    """A module name no other test imported (sys.modules keeps what was imported)."""
    return "plugin_" + str(abs(hash(str(tmp_path))))


def test_a_plugin_is_found_checked_and_runs(site: Path, tmp_path: Path) -> None:
    module = unique(tmp_path)
    install(site, "site-demo", module, TOUCH_MARKER, {"touch_marker": f"{module}:TouchMarker"})
    plugins = discover_plugins(entries_in(site))

    assert plugins.problems == ()
    assert plugins.distributions == {"touch_marker": "site-demo 1.0"}
    specs = action_specs(plugins=plugins)
    assert specs["touch_marker"].needs_target
    assert "restart_service" in specs  # the built-ins stay
    registry = ActionRegistry([Log()])
    marker = tmp_path / "marker.txt"
    names = add_plugins(
        registry,
        SiteContext("site", tmp_path),
        {"touch_marker": {"marker": str(marker)}},
        plugins,
    )
    assert names == ["touch_marker"]
    action = registry.get("touch_marker")
    clock = ManualClock()
    ctx = StepContext(
        "exec-1",
        "PLAY-X-001",
        "mark",
        "mosquitto",
        specs["touch_marker"].params_model.model_validate({"word": "hi"}),
        FailureInfo("fail-1", "mqtt", "ERR-INFRA-MQTT-001", "down"),
        clock,
        clock.monotonic() + 5,
    )
    result = asyncio.run(action.run(ctx))
    assert result.success, result
    assert marker.read_text() == "hi mosquitto ERR-INFRA-MQTT-001\n"


@pytest.mark.parametrize(
    ("entry", "source", "target", "reason"),
    [
        (
            "touch_marker",
            RAISES_ON_IMPORT,
            "TouchMarker",
            "import failed: RuntimeError: the vendor",
        ),
        ("half_done", NOT_AN_ACTION, "Half", "class Half lacks kind, params_model, needs_target"),
        (
            "touch_marker",
            NOT_PYDANTIC,
            "TouchMarker",
            "params_model <class 'dict'> is not a pydantic",
        ),
        ("log", TOUCH_MARKER, "TouchMarker", "a built-in action has this name"),
        ("marker", TOUCH_MARKER, "TouchMarker", "differs from the entry point's name 'marker'"),
        ("touch_marker", TOUCH_MARKER, "MarkerParams", "class MarkerParams lacks name, kind"),
    ],
)
def test_an_unusable_plugin_is_left_out_naming_its_distribution_and_entry_point(
    site: Path, tmp_path: Path, entry: str, source: str, target: str, reason: str
) -> None:
    module = unique(tmp_path)
    install(site, "site-broken", module, source, {entry: f"{module}:{target}"})

    plugins = discover_plugins(entries_in(site))

    assert plugins.types == {}
    [problem] = plugins.problems
    assert (problem.distribution, problem.entry_point) == ("site-broken 1.0", entry)
    assert reason in problem.reason
    assert f"action plugin {entry!r} (distribution site-broken 1.0" in str(problem)
    assert entry not in action_specs(plugins=plugins) or entry == "log"


def test_two_plugins_claiming_one_name_are_both_left_out(site: Path, tmp_path: Path) -> None:
    first, second = unique(tmp_path) + "_a", unique(tmp_path) + "_b"
    install(site, "site-one", first, TOUCH_MARKER, {"touch_marker": f"{first}:TouchMarker"})
    install(site, "site-two", second, TOUCH_MARKER, {"touch_marker": f"{second}:TouchMarker"})

    plugins = discover_plugins(entries_in(site))

    assert plugins.types == {}
    assert sorted(p.distribution for p in plugins.problems) == ["site-one 1.0", "site-two 1.0"]
    assert all("another installed plugin" in p.reason for p in plugins.problems)


def test_a_constructor_that_raises_leaves_the_registry_with_the_rest(
    site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = unique(tmp_path)
    install(
        site, "site-demo", module, RAISES_IN_CONSTRUCTOR, {"touch_marker": f"{module}:TouchMarker"}
    )
    registry = ActionRegistry([Log()])

    with caplog.at_level(logging.ERROR):
        names = add_plugins(
            registry, SiteContext("s", tmp_path), {}, discover_plugins(entries_in(site))
        )

    assert names == []
    assert set(registry.specs()) == {"log"}
    assert "its constructor raised KeyError: 'absent'" in caplog.text
    assert "site-demo 1.0" in caplog.text


def cli(site: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])},
    )


def test_validate_accepts_a_playbook_using_an_installed_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    install(
        site,
        "site-demo",
        "site_demo_actions",
        TOUCH_MARKER,
        {"touch_marker": "site_demo_actions:TouchMarker"},
    )
    book = tmp_path / "book.yaml"
    book.write_text(playbook("touch_marker"))

    result = cli(site, "playbook", "validate", book, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "PLAY-MQTT-RECOVER-001 1.0.0, 2 steps" in result.stdout


def test_validate_names_the_action_a_broken_plugin_should_have_given(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    install(
        site,
        "site-demo",
        "site_demo_broken",
        RAISES_ON_IMPORT,
        {"touch_marker": "site_demo_broken:TouchMarker"},
    )
    book = tmp_path / "book.yaml"
    book.write_text(playbook("touch_marker"))

    result = cli(site, "playbook", "validate", book, cwd=tmp_path)

    assert result.returncode == 1
    assert "unknown action 'touch_marker'" in result.stderr
    assert "action plugin 'touch_marker' (distribution site-demo 1.0" in result.stderr
    assert "import failed: RuntimeError: the vendor SDK is missing" in result.stderr


@pytest.mark.slow
def test_the_daemon_runs_a_plugin_action_and_starts_without_a_broken_one(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    site = tmp_path / "site-packages"
    install(
        site,
        "site-demo",
        "site_demo_actions",
        TOUCH_MARKER,
        {"touch_marker": "site_demo_actions:TouchMarker"},
    )
    install(
        site,
        "site-broken",
        "site_demo_broken",
        RAISES_ON_IMPORT,
        {"broken_thing": "site_demo_broken:X"},
    )
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "mqtt.yaml").write_text(playbook("touch_marker"))
    marker = tmp_path / "marker.txt"
    port = free_port()
    config = write_config(
        tmp_path, port, books, actions={"plugins": {"touch_marker": {"marker": str(marker)}}}
    )
    daemon = Daemon(config, env={"PYTHONPATH": os.pathsep.join([str(REPO), str(site)])}).start()
    daemons.append(daemon)
    daemon.wait_for_log(r"mqtt is healthy")
    assert "action plugin touch_marker loaded from site-demo 1.0" in daemon.log
    assert "action plugin 'broken_thing' (distribution site-broken 1.0" in daemon.log

    os.kill(daemon.broker_pid(), signal.SIGKILL)

    [execution] = daemon.wait_for(
        lambda: daemon.query("SELECT * FROM executions WHERE status != 'running'")
    )
    assert execution["status"] == "resolved", daemon.log
    rows = daemon.query(
        "SELECT step_id, outcome FROM execution_steps WHERE execution_id = ? ORDER BY seq",
        (execution["id"],),
    )
    assert [(r["step_id"], r["outcome"]) for r in rows] == [
        ("mark", "success"),
        ("restart", "success"),
    ]
    assert marker.read_text() == "hello mosquitto ERR-INFRA-MQTT-001\n"
