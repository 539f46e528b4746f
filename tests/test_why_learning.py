"""``why`` for a recommendation and a rollback, over a store the real simulator filled:
an approval the rule rolled back, a rejection, a second analysis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.store.analyses import AnalysisRepository
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.learning import LearningRepository
from graylogic_supervisor.why import explain_learning
from tests.learning.simulated import run, simulation
from tests.learning.test_learning_cli import cli
from tests.web.test_admin_pages import NOW, PLAYBOOK

PASSWORD = "correct horse battery"


@pytest.fixture
async def story(db: Database) -> dict[str, str]:
    return await told(db)


async def told(db: Database) -> dict[str, str]:
    """The story's records; the ids of the approved and rejected recommendations and the
    rollback."""
    sim = await simulation(db, "already-good")
    learning = sim.learning
    await run(sim, 30)
    await learning.users.add("ada", "admin", PASSWORD, NOW)
    await learning.analyze("test")
    first = (await learning.store.listing("pending"))[0]
    await learning.approve(
        first.id,
        "ada",
        "trust the check",
        {"type": "remove_step", "step_id": "restart", "route_to": "verify"},
    )
    await run(sim, 12)  # it does worse: the rule rolls it back
    rejected = (await learning.store.listing("pending"))[0]
    await learning.reject(rejected.id, "ada", "the night shift reads check_broker")
    (rollback,) = await learning.store.rollbacks(PLAYBOOK)
    return {"approved": first.id, "rejected": rejected.id, "rollback": rollback["id"]}


async def why(db: Database, identifier: str) -> str:
    lines = await explain_learning(LearningRepository(db), AnalysisRepository(db), identifier)
    assert lines is not None
    return "\n".join(lines)


async def test_why_a_recommendation(db: Database, story: dict[str, str]) -> None:
    text = await why(db, story["rejected"])
    assert f"recommendation {story['rejected']} for {PLAYBOOK} 1.0.0" in text
    assert "confidence " in text and "executions" in text  # its figures
    assert "made by analysis analysis-" in text  # the analysis that made it
    assert "its verdict: " in text and "recommended: expected resolution time" in text
    assert "decision: rejected by ada" in text and "the night shift reads check_broker" in text
    approved = await why(db, story["approved"])
    assert "decision: approved by ada" in approved and "(version 1.1.0)" in approved
    assert "approved with a modified change: " in approved and "remove_step" in approved


async def test_why_a_rollback(db: Database, story: dict[str, str]) -> None:
    text = await why(db, story["rollback"])
    assert f"{PLAYBOOK} 1.1.0 was rolled back to 1.0.0" in text
    assert "the supervisor's automatic rule" in text  # who or what
    assert "Success rate" in text and "z = " in text  # the comparison's figures
    assert "The trigger: the success_rate" in text
    assert "approved by ada" in text  # the version and who made it


async def test_unknown_ids_are_not_learning_records(db: Database) -> None:
    repos = LearningRepository(db), AnalysisRepository(db)
    assert await explain_learning(*repos, "rec-nope") is None
    assert await explain_learning(*repos, "rollback-nope") is None
    assert await explain_learning(*repos, "exec-whatever") is None


def test_why_on_the_command_line(tmp_path: Path) -> None:
    """The real CLI over the store the simulator filled; an unknown id is a message."""
    config = tmp_path / "supervisor.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))

    async def fill() -> dict[str, str]:
        async with Database(tmp_path / "state" / "supervisor.db") as db:
            return await told(db)

    ids = asyncio.run(fill())
    shown = cli(config, "why", ids["rollback"])
    assert shown.returncode == 0 and "was rolled back to 1.0.0" in shown.stdout
    shown = cli(config, "why", ids["approved"])
    assert shown.returncode == 0 and "decision: approved by ada" in shown.stdout
    missing = cli(config, "why", "rec-nope")
    assert missing.returncode == 1 and "no execution, failure, incident" in missing.stderr
