"""An example site action: ask the site's own watchdog to power-cycle a device.

Many controllers have a small watchdog (a relay board, a PoE switch script) that
acts on a request file. This action writes that request, atomically, into a
directory the site configures, and nothing else: the supervisor never gets a
shell or a command line. Its settings come from the supervisor's config::

    actions:
      plugins:
        request_reset:
          directory: /run/site-watchdog/requests
          devices: [knx-router, zigbee-stick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult
from graylogic_supervisor.engine.plugins import SiteContext


class ResetParams(ActionParams):  # ActionParams: unknown keys are errors, values frozen
    device: str = Field(pattern=r"^[a-z0-9-]{1,40}$", description="a device the watchdog knows")


class RequestReset:
    name: ClassVar[str] = "request_reset"
    kind: ClassVar[ActionKind] = ActionKind.FIX
    params_model: ClassVar[type[BaseModel]] = ResetParams
    needs_target: ClassVar[bool] = False

    def __init__(self, site: SiteContext) -> None:
        # Raising here leaves this action out (the daemon logs why and runs on).
        self._directory = Path(site.settings["directory"])
        self._devices = frozenset(site.settings.get("devices", []))

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, ResetParams)
        if params.device not in self._devices:
            known = ", ".join(sorted(self._devices)) or "none"
            return StepResult.failed(f"the watchdog knows no device {params.device} ({known})")
        request = self._directory / f"{params.device}.reset"
        try:  # small and local: written in place, no need for a thread
            with tempfile.NamedTemporaryFile(
                "w", dir=self._directory, delete=False, suffix=".tmp"
            ) as out:
                out.write(f"{ctx.clock.now().isoformat()} {ctx.execution_id}\n")
            Path(out.name).replace(request)
        except OSError as exc:
            return StepResult.failed(f"cannot write {request}: {exc.strerror or exc}")
        return StepResult.ok(f"reset of {params.device} requested", request=str(request))
