"""A page as a person on a phone sees it: 390 px wide, no sideways scrolling, and the
page's main action on screen; a screenshot of each kept for a person to look at.

Screenshots go under the test's ``tmp_path``; ``GRAYLOGIC_SCREENSHOTS=/some/dir`` keeps
them after the run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.async_api import Page

PHONE = {"width": 390, "height": 844}


def screenshot_dir(tmp_path: Path) -> Path:
    kept = os.environ.get("GRAYLOGIC_SCREENSHOTS")
    shots = Path(kept) if kept else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def on_a_phone(
    page: Page,
    url: str,
    shots: Path,
    name: str,
    *actions: str | re.Pattern[str],
) -> None:
    """Open ``url`` in a phone-sized page; it must not scroll sideways, and each of
    ``actions`` (a button's name) must lie within the screen's width as laid out, with
    nothing scrolled sideways to reach it."""
    answer = await page.goto(url)
    assert answer is not None and answer.status == 200, (url, answer and answer.status)
    await page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"{url} scrolls sideways: {width} px wide"
    for action in actions:
        button = page.get_by_role("button", name=action).first
        box = await button.bounding_box()
        assert box is not None, f"{url}: no {action!r} button"
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (url, action, box)
