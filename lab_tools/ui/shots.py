"""Headless Chromium for the page: Debian's ``/usr/bin/chromium`` driven by Playwright's Python
API (``executable_path``; Playwright's own browser download is never used). Used by the browser
tests and by ``scripts/ui_screenshots.py`` (the screenshots in CONTRIBUTING.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: one leaf per kind of the project's own taxonomy, shown in the screenshots
SCREENSHOT_LEAVES = {
    "compositional": "compositional_skills/writing/grounded/summarization/one_sentence",
    "foundational": "foundational_skills/reasoning/temporal_reasoning",
    "knowledge": "knowledge/science/biology/honey_bees",
}


def chromium_path() -> str | None:
    """Debian's chromium binary (``$LAB_CHROMIUM`` overrides), or None when not installed."""
    for cand in (os.environ.get("LAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def launch(playwright):
    """A headless Chromium browser from ``playwright.chromium`` with :data:`CHROMIUM_ARGS`.

    Raises:
        FileNotFoundError: chromium is not installed (``apt-get install chromium``).
    """
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("chromium not found: apt-get install chromium (scripts/install.sh does)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


def open_leaf(page, url: str, leaf: str) -> None:
    """Load the page at ``url`` and open ``leaf`` from the tree; returns when its checks are shown."""
    page.goto(url)
    page.click(f'#tree button.leaf[data-path="{leaf}"]')
    page.wait_for_selector("#status.ok, #status.bad")
    page.locator("#yaml .ln").first.wait_for()  # (no wait_for_function: the page's CSP forbids eval)


def take_screenshots(url: str, out_dir: str | Path, leaves: dict[str, str] | None = None,
                     browser=None) -> list[Path]:
    """One PNG (1500x1000 viewport) per kind, ``out_dir/ui-<kind>.png``, of the page served at
    ``url`` (``leaves``: kind label -> leaf path, default :data:`SCREENSHOT_LEAVES`; ``browser``: a
    Playwright browser to use, default one launched here). Returns the files."""
    from contextlib import ExitStack

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with ExitStack() as stack:
        if browser is None:
            from playwright.sync_api import sync_playwright

            browser = launch(stack.enter_context(sync_playwright()))
            stack.callback(browser.close)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        stack.callback(context.close)
        page = context.new_page()
        for label, leaf in (leaves or SCREENSHOT_LEAVES).items():
            open_leaf(page, url, leaf)
            path = out_dir / f"ui-{label}.png"
            page.screenshot(path=str(path))
            files.append(path)
    return files
