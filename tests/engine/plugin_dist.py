"""A real installed distribution of action plugins, made in a temporary directory.

``install(site, name, module_source, entry_points)`` writes ``<module>.py`` and a
``<name>-1.0.dist-info`` with METADATA and entry_points.txt, exactly what pip
leaves in site-packages; putting ``site`` on ``sys.path`` (or ``PYTHONPATH`` of a
child process) makes ``importlib.metadata`` find it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

GROUP = "graylogic_supervisor.actions"

TOUCH_MARKER = '''\
"""A site's own action: writes a marker file named by its settings."""

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult


class MarkerParams(ActionParams):
    word: str = Field(min_length=1)


class TouchMarker:
    name: ClassVar[str] = "touch_marker"
    kind: ClassVar[ActionKind] = ActionKind.FIX
    params_model: ClassVar[type[BaseModel]] = MarkerParams
    needs_target: ClassVar[bool] = True

    def __init__(self, site) -> None:
        self._marker = Path(site.settings["marker"])

    async def run(self, ctx: StepContext) -> StepResult:
        with self._marker.open("a") as out:
            out.write(f"{ctx.params.word} {ctx.target} {ctx.failure.error_id}\\n")
        return StepResult.ok(f"marked {ctx.target}", marker=str(self._marker))
'''


def install(site: Path, name: str, module: str, source: str, entries: dict[str, str]) -> Path:
    """Install distribution ``name`` (module ``module``) with ``entries`` (name -> object)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{entry} = {target}" for entry, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}\n")
    (info / "RECORD").write_text("")
    return info


def playbook(action: str, *, then: str = "done") -> str:
    """A playbook for the MQTT broker whose first step is ``action``."""
    return textwrap.dedent(
        f"""\
        id: PLAY-MQTT-RECOVER-001
        name: MQTT broker recovery with a site action
        version: 1.0.0
        trigger:
          component: mqtt
          error_ids: [ERR-INFRA-MQTT-001]
        limits: {{max_attempts: 3, cooldown_seconds: 60, timeout_seconds: 120}}
        steps:
          - id: mark
            name: The site's own action
            action: {action}
            target: mosquitto
            params: {{word: hello}}
            timeout_seconds: 5
            on_success: restart
            on_failure: escalate
          - id: restart
            name: Restart broker
            action: restart_service
            target: mosquitto
            timeout_seconds: 30
            on_success: {then}
            on_failure: escalate
        """
    )
