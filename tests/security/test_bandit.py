"""bandit finds nothing in the package with the project's configuration ([tool.bandit] in
pyproject.toml, where each skipped check says why), and that configuration still finds
what it is there to find. pip-audit needs the network and runs in scripts/security-audit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "pyproject.toml"


def bandit(*targets: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", str(CONFIG), "-f", "json", "-q", "-r"]
        + [str(t) for t in targets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.stdout, f"bandit did not run (is it installed?): {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_bandit_finds_nothing_in_the_package() -> None:
    report = bandit(REPO / "graylogic_supervisor")
    assert report["errors"] == []
    found = [
        f"{r['filename']}:{r['line_number']}: {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert found == [], "fix each, or justify it with `# nosec BXXX: why`:\n" + "\n".join(found)
    assert report["metrics"]["_totals"]["loc"] > 10_000  # it read the package


def test_the_configuration_still_finds_what_matters(tmp_path: Path) -> None:
    canary = tmp_path / "canary.py"
    canary.write_text(
        textwrap.dedent(
            """\
            import pickle
            import subprocess
            import yaml

            def bad(text, blob):
                subprocess.run(text, shell=True)
                eval(text)
                yaml.load(text)
                return pickle.loads(blob)
            """
        )
    )
    found = {r["test_id"] for r in bandit(canary)["results"]}
    assert {"B602", "B307", "B506", "B301", "B403"} <= found, found
