"""The admin page in a real headless Chromium (Debian's, driven by Playwright), against
the real daemon: log in, approve, roll back, cancel a running execution, and be
refused as a viewer. On a 390 px phone, Approve, Reject, Roll back, Pause and Cancel are on
screen without sideways scrolling. Screenshots at 390 and 1280 px wide go under the test's
``tmp_path`` (``GRAYLOGIC_SCREENSHOTS=/some/dir`` keeps them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Browser, Page, async_playwright, expect

from graylogic_supervisor.store.database import Database
from tests.conftest import free_port
from tests.daemon_process import REPO, Daemon, first_admin_password, write_config
from tests.learning.simulated import run, simulation
from tests.web.phone import PHONE, on_a_phone, screenshot_dir

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
WIDTHS = {"phone": PHONE["width"], "laptop": 1280}
ACTIVE = (
    "SELECT version FROM playbook_versions WHERE active = 1"
    " AND playbook_id = 'PLAY-MQTT-RECOVER-001'"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
def daemons() -> AsyncIterator[list[Daemon]]:  # type: ignore[misc]
    running: list[Daemon] = []
    yield running  # type: ignore[misc]
    for daemon in running:
        daemon.cleanup()


def started(daemons: list[Daemon], config: Path) -> tuple[Daemon, str, str]:
    daemon = Daemon(config).start()
    daemons.append(daemon)
    daemon.wait_for_log(r"mqtt is healthy")
    password = first_admin_password(daemon.state_dir)
    port = yaml.safe_load(config.read_text())["admin"]["port"]
    return daemon, f"http://127.0.0.1:{port}", password


async def log_in(page: Page, base: str, user: str, password: str) -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


async def shoot(
    browser: Browser, shots: Path, base: str, user: str, password: str, *, path: str, name: str
) -> None:
    """The page at both widths, as a person on a phone and on a laptop sees it."""
    for device, width in WIDTHS.items():
        context = await browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        await log_in(page, base, user, password)
        await page.goto(f"{base}{path}")
        await page.screenshot(path=str(shots / f"{name}-{device}.png"), full_page=True)
        await context.close()


def add_viewer(config: Path) -> None:
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "graylogic_supervisor",
            "user",
            "add",
            "vic",
            "--role",
            "viewer",
            "--password-stdin",
            "--config",
            str(config),
        ],
        input="viewer-pass-1\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr


async def test_approve_then_roll_back_and_a_viewer_is_refused(
    tmp_path: Path, browser: Browser, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, free_port())

    async def history() -> None:
        state = yaml.safe_load(config.read_text())["state_dir"]
        async with Database(Path(state) / "supervisor.db") as db:
            sim = await simulation(db, "already-good", seed=2)  # enough failed restarts for a retry
            await run(sim, 150)
            await sim.learning.analyze("test")

    await history()
    daemon, base, password = started(daemons, config)
    add_viewer(config)

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await log_in(page, base, "admin", password)
    await page.get_by_role("link", name="Recommendations").first.click()
    await page.get_by_role("link", name=re.compile(r"^try restart 2 times")).click()
    await expect(page.get_by_text("+  retry:")).to_be_visible()
    shots = screenshot_dir(tmp_path)
    phone = await (await browser.new_context(viewport=PHONE)).new_page()
    await log_in(phone, base, "admin", password)
    await on_a_phone(phone, page.url, shots, "recommendation", "Approve", "Reject")
    await page.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.locator("#active-version")).to_have_text("1.0.1")
    await expect(page.get_by_text("Approved: version 1.0.1 is active.")).to_be_visible()
    [active] = daemon.query(ACTIVE)
    assert active["version"] == "1.0.1"

    await shoot(browser, shots, base, "admin", password, path="/", name="dashboard")
    for path, name in (
        ("/playbooks/PLAY-MQTT-RECOVER-001", "playbook"),
        ("/recommendations?status=all", "recommendations"),
    ):
        await shoot(browser, shots, base, "admin", password, path=path, name=name)
    await on_a_phone(
        phone, f"{base}/playbooks/PLAY-MQTT-RECOVER-001", shots, "playbook", "Roll back to 1.0.0"
    )
    await phone.context.close()

    row = page.locator("form", has=page.get_by_role("button", name="Roll back to 1.0.0"))
    await row.get_by_placeholder("reason").fill("checking the old one")
    await row.get_by_role("button", name="Roll back to 1.0.0").click()
    await expect(page.locator("#active-version")).to_have_text("1.0.0")
    await context.close()

    viewer = await browser.new_context(viewport=PHONE)
    page = await viewer.new_page()
    await log_in(page, base, "vic", "viewer-pass-1")
    await page.goto(f"{base}/playbooks/PLAY-MQTT-RECOVER-001")
    await expect(page.get_by_role("button", name=re.compile("Roll back"))).to_have_count(0)
    csrf = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = await page.request.post(
        f"{base}/playbooks/PLAY-MQTT-RECOVER-001/rollback",
        form={"csrf_token": csrf or "", "version": "1.0.1", "reason": "sneaky"},
    )
    assert refused.status == 403
    await page.screenshot(path=str(shots / "viewer-playbook-phone.png"), full_page=True)
    await viewer.close()
    [active] = daemon.query(ACTIVE)
    assert active["version"] == "1.0.0"


async def test_a_running_execution_is_cancelled_from_its_page(
    tmp_path: Path, browser: Browser, daemons: list[Daemon]
) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    slow = yaml.safe_load((REPO / "playbooks" / "mqtt-recover.yaml").read_text())
    slow["steps"].insert(
        0,
        {
            "id": "settle",
            "name": "Let the site settle",
            "action": "sleep",
            "params": {"seconds": 60},
            "timeout_seconds": 90,
            "on_success": slow["steps"][0]["id"],
            "on_failure": slow["steps"][0]["id"],
        },
    )
    (playbooks / "mqtt.yaml").write_text(yaml.safe_dump(slow, sort_keys=False))
    config = write_config(tmp_path, free_port(), playbooks=playbooks)
    daemon, base, password = started(daemons, config)
    os.kill(daemon.broker_pid(), signal.SIGKILL)
    [running] = daemon.wait_for(
        lambda: daemon.query("SELECT id FROM executions WHERE status = 'running'")
    )

    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    await log_in(page, base, "admin", password)
    await page.goto(f"{base}/executions?status=running")
    await page.get_by_role("link", name=running["id"]).click()
    await expect(page.locator("#status")).to_have_text("running")
    shots = screenshot_dir(tmp_path)
    await on_a_phone(page, page.url, shots, "execution-running", "Pause", "Cancel")
    cancel = page.locator("form", has=page.get_by_role("button", name="Cancel"))
    await cancel.get_by_placeholder("reason").fill("wrong night to restart")
    await cancel.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#status")).to_have_text("interrupted", timeout=15_000)
    await context.close()
    [after] = daemon.query("SELECT status, detail FROM executions WHERE id = ?", (running["id"],))
    assert after["status"] == "interrupted" and "admin" in after["detail"]
