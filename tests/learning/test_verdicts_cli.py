"""``analyze list`` and ``analyze show ID``: every stored analysis and every verdict, from
the command line; ``analyze`` alone still runs one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.learning.test_learning_cli import cli, config

__all__ = ["config"]


def test_analyze_list_and_show(config: Path) -> None:
    ran = cli(config, "analyze")  # as before: runs an analysis
    assert ran.returncode == 0 and "new recommendations (analysis-" in ran.stdout
    assert "changes considered (analyze show analysis-" in ran.stdout
    ran_json = json.loads(cli(config, "analyze", "run", "--json").stdout)
    listed = cli(config, "analyze", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(ran_json["id"])  # newest first
    as_json = json.loads(cli(config, "analyze", "list", "--json").stdout)
    assert [a["id"] for a in as_json] == [ran_json["id"], lines[1].split()[0]]

    shown = cli(config, "analyze", "show", ran_json["id"])
    assert shown.returncode == 0
    text = shown.stdout
    considered = [c for p in ran_json["playbooks"] for c in p["considered"]]
    assert considered and f"{len(considered)} candidates considered:" in text
    for entry in considered:
        assert f"{entry['summary']}: {entry['in_words']}" in text
    assert "Bottlenecks:" in text and "Paths:" in text
    full = json.loads(cli(config, "analyze", "show", ran_json["id"], "--json").stdout)
    assert full["report"]["playbooks"] == ran_json["playbooks"]

    missing = cli(config, "analyze", "show", "analysis-nope")
    assert (missing.returncode, missing.stderr) == (1, "no analysis analysis-nope\n")
    no_id = cli(config, "analyze", "show")
    assert no_id.returncode == 1 and "needs an analysis id" in no_id.stderr
    assert cli(config, "analyze", "list", "x").returncode == 1
    assert cli(config, "analyze", "nonsense").returncode == 2  # argparse names the choices
