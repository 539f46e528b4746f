"""Feedback in a real headless Chromium, against the real daemon: a technician reads an
execution's learning annotations, marks a step that wasted time and gives feedback from
the page; the next analysis (the CLI's ``analyze``) lists that feedback, with who, when
and what, in the evidence of the recommendation it bears on. A viewer is refused. On a
390 px phone the form's button is on screen without sideways scrolling."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Browser, expect

from graylogic_supervisor.store.database import Database
from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config
from tests.learning.simulated import run, simulation
from tests.web.phone import PHONE, on_a_phone, screenshot_dir
from tests.web.test_browser import add_viewer, browser, daemons, log_in, started

pytestmark = pytest.mark.slow
__all__ = ["browser", "daemons"]  # the fixtures this module uses

ESCALATED = (
    "SELECT e.id FROM executions AS e WHERE e.status = 'escalated' AND EXISTS (SELECT 1 FROM"
    " execution_steps AS s WHERE s.execution_id = e.id AND s.step_id = 'check_broker')"
    " ORDER BY e.started_at DESC LIMIT 1"
)


def analyze(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "graylogic_supervisor", "analyze", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_feedback_from_the_page_is_in_the_next_analysis_evidence(
    tmp_path: Path, browser: Browser, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, free_port())
    state = Path(yaml.safe_load(config.read_text())["state_dir"])
    state.mkdir(parents=True, exist_ok=True)
    async with Database(state / "supervisor.db") as db:
        # recent, so the analysis under the system clock counts it (its window is 30 days)
        sim = await simulation(db, "already-good", seed=2, start=datetime.now(UTC) - timedelta(8))
        await run(sim, 150)
    daemon, base, password = started(daemons, config)
    add_viewer(config)
    [escalated] = daemon.query(ESCALATED)
    execution_id = escalated["id"]

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await log_in(page, base, "admin", password)
    await page.goto(f"{base}/executions/{execution_id}")
    learned = page.locator("#annotations")
    await expect(learned.get_by_role("heading", name="What learning says of it")).to_be_visible()
    await expect(learned).to_contain_text("Revealed the issue")
    await expect(page.locator("#feedback")).to_contain_text("No feedback yet.")

    form = page.locator("#feedback form")
    await form.get_by_label("Was the playbook sufficient?").select_option("no")
    await form.get_by_label("check_broker").check()
    await form.get_by_label("Escalation").select_option("too_early")
    await form.get_by_label("Note").fill("the broker check only costs time here")
    await form.get_by_role("button", name="Give feedback").click()
    given = page.locator("#feedback tr.feedback-entry")
    await expect(given).to_have_count(1)
    await expect(given).to_contain_text("admin")
    await expect(given).to_contain_text("check_broker")
    await expect(given).to_contain_text("too early")
    await expect(page.locator("tr", has_text="check_broker").first).to_contain_text("wasted time")
    shots = screenshot_dir(tmp_path)
    await page.screenshot(path=str(shots / "execution-feedback-laptop.png"), full_page=True)
    phone = await (await browser.new_context(viewport=PHONE)).new_page()
    await log_in(phone, base, "admin", password)
    await on_a_phone(phone, page.url, shots, "execution-feedback", "Give feedback")
    await phone.context.close()
    [audited] = daemon.query(
        "SELECT actor FROM audit_log WHERE action = 'execution.feedback' AND subject = ?",
        (execution_id,),
    )
    assert audited["actor"] == "admin"

    analyze(config)

    await page.get_by_role("link", name="Recommendations").first.click()
    await page.get_by_role("link", name=re.compile(r"^remove check_broker")).click()
    evidence = page.locator("#feedback-evidence")
    await expect(evidence).to_be_visible()
    await expect(evidence).to_contain_text("from admin")
    use = evidence.locator("tr.feedback-use")
    await expect(use).to_have_count(1)
    await expect(use).to_contain_text("wasted time: check_broker")
    await expect(use).to_contain_text("for")
    await expect(use.get_by_role("link", name=execution_id)).to_be_visible()
    await page.screenshot(path=str(shots / "recommendation-feedback-laptop.png"), full_page=True)
    await use.get_by_role("link", name=execution_id).click()
    await expect(page.locator("#feedback tr.feedback-entry")).to_have_count(1)
    await context.close()

    viewer = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await viewer.new_page()
    await log_in(page, base, "vic", "viewer-pass-1")
    await page.goto(f"{base}/executions/{execution_id}")
    await expect(page.get_by_role("button", name="Give feedback")).to_have_count(0)
    csrf = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = await page.request.post(
        f"{base}/executions/{execution_id}/feedback",
        form={"csrf_token": csrf or "", "sufficient": "yes"},
    )
    assert refused.status == 403
    await viewer.close()
    assert len(daemon.query("SELECT id FROM execution_feedback")) == 1
