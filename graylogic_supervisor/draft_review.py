"""A drafted playbook's dry run, as ``recommendations show`` and its page show it.

A draft (``learning/drafts.py``) is judged before anything runs: the real engine
walks it (``engine/dryrun.py``) on the path a person most needs to see, the
component still unhealthy at the check and the first fix working, with nothing
run or written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from graylogic_supervisor.engine.dryrun import dry_run, format_report
from graylogic_supervisor.errors import SupervisorError
from graylogic_supervisor.learning.drafts import NEW_PLAYBOOK


async def draft_dry_run(change: Mapping[str, Any]) -> str | None:
    """The dry run's table for a ``new_playbook`` change (None for any other change); a
    draft that no longer validates here says why instead."""
    if change.get("type") != NEW_PLAYBOOK:
        return None
    data = change["playbook"]
    steps = data.get("steps") or [{}]
    first = steps[0].get("id")
    outcomes = {first: "failure"} if first else {}
    with tempfile.TemporaryDirectory(prefix="graylogic-draft-") as scratch:
        file = Path(scratch) / f"{data.get('id', 'draft')}.yaml"
        file.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
        try:
            report = await dry_run(file, outcomes, None)
        except (SupervisorError, ValueError) as exc:
            return f"the draft cannot be walked here: {exc}"
    return format_report(report)
