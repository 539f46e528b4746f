"""A site's own actions, from installed packages (DESIGN.md contract 2).

A distribution declares an entry point in the group ``graylogic_supervisor.actions``
whose name is the action's name and whose object is an action class: the same
class variables as a built-in (``name``, ``kind``, ``params_model`` with
``extra="forbid"``, ``needs_target``), an ``async def run(self, ctx)`` and a
constructor taking one ``SiteContext``. README, "Site actions", has an example.

Every caller takes its actions from here: ``action_specs()`` for validation (the
CLI, learning, the dry run) and ``action_registry()`` for the daemon. A plugin
that cannot be used (import error, missing or wrong class variable, a name
taken, a constructor that raises) is left out with a ``PluginProblem`` naming
its distribution and entry point, logged once; the others and the built-ins
stay. A playbook that uses a missing action then fails validation naming it.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graylogic_supervisor.config import SupervisorConfig
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.engine.action import Action, ActionRegistry, spec_of
from graylogic_supervisor.engine.builtins import BUILTIN_ACTION_TYPES, bounded_specs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "graylogic_supervisor.actions"
ACTION_NAME = r"^[a-z][a-z0-9_]{0,63}$"


@dataclass(frozen=True)
class SiteContext:
    """What a plugin action is built with: no clock (each step brings one), no store.

    ``settings`` is the action's own mapping from the config's
    ``actions.plugins.<name>`` (empty when there is none); the plugin validates it.
    """

    site: str
    state_dir: Path
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginProblem:
    """Why one entry point is not used; the supervisor runs without it."""

    distribution: str
    entry_point: str
    reason: str

    def __str__(self) -> str:
        return (
            f"action plugin {self.entry_point!r} (distribution {self.distribution}, group"
            f" {ENTRY_POINT_GROUP}) left out: {self.reason}"
        )


@dataclass(frozen=True)
class ActionPlugins:
    """The usable plugin action classes by name, and the problems of the others."""

    types: Mapping[str, type[Action]]
    problems: tuple[PluginProblem, ...] = ()
    distributions: Mapping[str, str] = field(default_factory=dict)

    def build(self, site: Mapping[str, SiteContext]) -> tuple[list[Action], list[PluginProblem]]:
        """An instance of each, built with its own ``SiteContext``; a constructor that
        raises leaves its action out (a problem), not the daemon."""
        built: list[Action] = []
        problems: list[PluginProblem] = []
        for name, action_type in self.types.items():
            try:
                built.append(action_type(site[name]))  # type: ignore[call-arg]
            except Exception as exc:
                problems.append(
                    PluginProblem(
                        self.distributions.get(name, "?"),
                        name,
                        f"its constructor raised {type(exc).__name__}: {exc}",
                    )
                )
        return built, problems


def _distribution(entry: EntryPoint) -> str:
    dist = entry.dist
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def action_type_problem(entry_name: str, loaded: object) -> str | None:
    """Why ``loaded`` is not a usable action class for ``entry_name``, or None."""
    if not inspect.isclass(loaded):
        return f"it names {type(loaded).__name__} {loaded!r}, not an action class"
    missing = [
        attribute
        for attribute in ("name", "kind", "params_model", "needs_target", "run")
        if not hasattr(loaded, attribute)
    ]
    if missing:
        return f"class {loaded.__qualname__} lacks {', '.join(missing)}"
    name, kind, params = (getattr(loaded, a) for a in ("name", "kind", "params_model"))
    needs_target, run = getattr(loaded, "needs_target"), getattr(loaded, "run")  # noqa: B009
    if not isinstance(name, str) or not re.match(ACTION_NAME, name):
        return f"its name {name!r} must match {ACTION_NAME}"
    if name != entry_name:
        return f"its name {name!r} differs from the entry point's name {entry_name!r}"
    if not isinstance(kind, ActionKind):
        return f"its kind {kind!r} is not an ActionKind ({', '.join(k.value for k in ActionKind)})"
    if not (inspect.isclass(params) and issubclass(params, BaseModel)):
        return f"its params_model {params!r} is not a pydantic model"
    if params.model_config.get("extra") != "forbid":
        return "its params_model must forbid unknown keys (extra='forbid'; subclass ActionParams)"
    if not isinstance(needs_target, bool):
        return f"its needs_target {needs_target!r} is not a bool"
    if not inspect.iscoroutinefunction(run):
        return "its run is not an async method"
    return None


def discover_plugins(entries: Iterable[EntryPoint] | None = None) -> ActionPlugins:
    """The plugins installed in this environment (or ``entries``), each checked.

    A name taken by a built-in leaves the plugin out; a name two plugins claim
    leaves both out (which one wins would depend on the path's order).
    """
    if entries is None:
        entries = entry_points(group=ENTRY_POINT_GROUP)
    builtins = {action.name for action in BUILTIN_ACTION_TYPES}
    problems: list[PluginProblem] = []
    usable: list[tuple[EntryPoint, type[Action]]] = []
    for entry in entries:
        where = _distribution(entry)
        if entry.name in builtins:
            problems.append(PluginProblem(where, entry.name, "a built-in action has this name"))
            continue
        try:
            loaded = entry.load()
        except Exception as exc:
            problems.append(
                PluginProblem(where, entry.name, f"import failed: {type(exc).__name__}: {exc}")
            )
            continue
        reason = action_type_problem(entry.name, loaded)
        if reason is not None:
            problems.append(PluginProblem(where, entry.name, reason))
            continue
        usable.append((entry, loaded))
    claims = Counter(entry.name for entry, _ in usable)
    types: dict[str, type[Action]] = {}
    distributions: dict[str, str] = {}
    for entry, loaded in usable:
        where = _distribution(entry)
        if claims[entry.name] > 1:
            problems.append(
                PluginProblem(where, entry.name, "another installed plugin claims the same name")
            )
            continue
        types[entry.name] = loaded
        distributions[entry.name] = where
    return ActionPlugins(types, tuple(problems), distributions)


def action_specs(
    config: SupervisorConfig | None = None, plugins: ActionPlugins | None = None
) -> dict[str, ActionSpec]:
    """Every action a playbook may use here: the built-ins and the usable plugins.

    What validation needs, without any live collaborator; each plugin problem is
    logged (a command line with no logging set up shows it on stderr). With the
    ``config``, the webhooks, site databases and clean-up directories a playbook
    names are checked against it too (``bounded_specs``).
    """
    if plugins is None:
        plugins = discover_plugins()
    for problem in plugins.problems:
        logger.warning("%s", problem)
    specs = {spec.name: spec for spec in map(spec_of, BUILTIN_ACTION_TYPES)}
    specs.update({name: spec_of(action) for name, action in plugins.types.items()})
    if config is None:
        return specs
    return bounded_specs(specs, config.actions, config.escalation.webhooks)


def add_plugins(
    registry: ActionRegistry,
    site: SiteContext,
    settings: Mapping[str, Mapping[str, Any]],
    plugins: ActionPlugins | None = None,
) -> list[str]:
    """Register the usable plugins into the daemon's ``registry``; returns their names.

    Every problem is logged at ERROR and the daemon goes on without that plugin
    (do no harm: one broken plugin must not stop supervision).
    """
    if plugins is None:
        plugins = discover_plugins()
    contexts = {
        name: SiteContext(site.site, site.state_dir, dict(settings.get(name, {})))
        for name in plugins.types
    }
    built, problems = plugins.build(contexts)
    for problem in (*plugins.problems, *problems):
        logger.error("%s", problem)
    for action in built:
        registry.register(action)
        logger.info(
            "action plugin %s loaded from %s", action.name, plugins.distributions[action.name]
        )
    unused = sorted(set(settings) - set(plugins.types))
    if unused:
        logger.warning("actions.plugins names no loaded plugin: %s", ", ".join(unused))
    return [action.name for action in built]
