"""Every verdict of an analysis two clicks from any page, in a real headless Chromium
against the real daemon: the navigation's Analyses, then the analysis; each candidate
the report holds is on that page with its verdict in words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.async_api import Browser, expect

from graylogic_supervisor.store.database import Database
from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config
from tests.learning.simulated import run, simulation
from tests.web.phone import screenshot_dir
from tests.web.test_browser import browser, daemons, log_in, started

__all__ = ["browser", "daemons"]
pytestmark = pytest.mark.slow


async def test_every_verdict_is_two_clicks_from_the_dashboard(
    tmp_path: Path, browser: Browser, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, free_port())
    state = yaml.safe_load(config.read_text())["state_dir"]
    async with Database(Path(state) / "supervisor.db") as db:
        sim = await simulation(db, "mqtt-mixed-causes")
        await run(sim, 150)
        report = await sim.learning.analyze("test")
    considered = [c for p in report["playbooks"] for c in p["considered"]]
    assert len(considered) > 3
    daemon, base, password = started(daemons, config)

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await log_in(page, base, "admin", password)
    await page.get_by_role("link", name="Analyses", exact=True).click()  # one
    await expect(page.get_by_role("heading", name="Learning analyses")).to_be_visible()
    await page.get_by_role("link", name=report["finished_at"]).click()  # two
    await expect(page.get_by_role("heading", name=f"Analysis {report['id']}")).to_be_visible()
    rows = page.locator("tr.verdict")
    await expect(rows).to_have_count(len(considered))
    texts = await rows.all_inner_texts()
    for entry, text in zip(considered, texts, strict=True):
        assert entry["summary"] in text
        assert entry["in_words"] in text
        assert ("Taken" if entry["accepted"] else "Not taken") in text
    taken = await page.locator("tr.verdict.accepted").count()
    assert taken == sum(c["accepted"] for c in considered) >= 1
    for rec_id in report["recommendations"]:
        await expect(page.locator(f'a[href="/recommendations/{rec_id}"]')).to_have_count(1)
    await page.screenshot(path=str(screenshot_dir(tmp_path) / "analysis.png"), full_page=True)
    await context.close()
    assert daemon.query("SELECT COUNT(*) AS n FROM learning_analyses")[0]["n"] == 1
