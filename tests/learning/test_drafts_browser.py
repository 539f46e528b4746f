"""A draft playbook approved in a real headless Chromium against the real daemon: the
page shows the fixes behind it and its dry run, Approve and Reject are on a 390 px
phone's screen, and Approve makes it the new playbook's active 1.0.0."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Browser, expect

from graylogic_supervisor.learning.draft_steps import playbook_id_for
from graylogic_supervisor.store.database import Database
from tests.conftest import free_port
from tests.daemon_process import Daemon, write_config
from tests.learning.test_drafts import Site
from tests.learning.test_learning_cli import cli
from tests.web.phone import PHONE, on_a_phone, screenshot_dir
from tests.web.test_browser import browser, daemons, log_in, started  # noqa: F401  # fixtures

pytestmark = pytest.mark.slow

DRAFT = playbook_id_for("ERR-SYS-MEM-001", "memory")


async def test_a_draft_is_judged_and_approved_on_the_page(
    tmp_path: Path,
    browser: Browser,  # noqa: F811
    daemons: list[Daemon],  # noqa: F811
) -> None:
    config = write_config(tmp_path, free_port())
    state = Path(yaml.safe_load(config.read_text())["state_dir"])

    async def history() -> None:
        async with Database(state / "supervisor.db") as db:
            site = Site(db)  # its failure memory only: the daemon makes its own admin
            for by in ("ana", "ben", "ana"):
                await site.fixed_by_hand(
                    "restart_service",
                    "mosquitto",
                    by=by,
                    error_id="ERR-SYS-MEM-001",
                    component="memory",
                )

    await history()
    analysed = await asyncio.to_thread(cli, config, "analyze", "--json")  # its own loop
    assert analysed.returncode == 0, analysed.stderr
    daemon, base, password = started(daemons, config)

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await log_in(page, base, "admin", password)
    await page.get_by_role("link", name="Recommendations").first.click()
    await page.get_by_role("link", name=re.compile(rf"^new playbook {DRAFT}")).click()
    await expect(page.locator("#draft-fixes")).to_contain_text("ana (2), ben (1)")
    await expect(page.locator("#dry-run")).to_contain_text(f"dry run of {DRAFT} 1.0.0")
    await expect(page.get_by_role("button", name="Approve as trial")).to_have_count(0)
    shots = screenshot_dir(tmp_path)
    phone = await (await browser.new_context(viewport=PHONE)).new_page()
    await log_in(phone, base, "admin", password)
    await on_a_phone(phone, page.url, shots, "draft-recommendation", "Approve", "Reject")
    await phone.context.close()
    await page.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.locator("#active-version")).to_have_text("1.0.0")
    await context.close()
    [active] = daemon.query(
        f"SELECT version, approved_by FROM playbook_versions WHERE playbook_id = '{DRAFT}'"
        " AND active = 1"
    )
    assert (active["version"], active["approved_by"]) == ("1.0.0", "admin")
