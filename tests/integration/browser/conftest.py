"""Headless Chromium (Debian's `chromium`, driven by Playwright) on the operator console of the
suite's running stack. The stack is the integration suite's own session fixture
(tests/integration/conftest.py), which is why these tests live below it: one stack serves both.

`make test` installs Chromium when it is missing. Screenshots go to a temporary folder, and into
docs/ only when CONSOLE_SCREENSHOTS=1, so that a normal run leaves the work tree as it was.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.integration.conftest import API_KEY, _backends

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium keeps reaching for the network, which
# this offline machine refuses slowly.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[3] / "docs"
WAIT_MS = 60_000  # how long a state may take to show before the test fails (the page polls every 5 s)

expect.set_options(timeout=WAIT_MS)

# The console's tests need one backend only: moto, unless the run asked for others alone.
BROWSER_BACKEND = "moto" if "moto" in _backends() else _backends()[0]
on_one_backend = pytest.mark.parametrize("stack", [BROWSER_BACKEND], indirect=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
                    "(apt-get install chromium) when it runs as root or with passwordless sudo")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Console:
    """One browser tab on a stack's console, with what it saw: native dialogs (alert, confirm:
    the console uses none, so any is a script that should not have run) and script errors."""

    page: Page
    base_url: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.base_url}/console{route}")

    def show_job(self, job_id: str) -> None:
        self.open(f"#/jobs/{job_id}")
        expect(self.page.locator('[data-field="id"]')).to_have_text(job_id)

    def sign_in(self, key: str = API_KEY) -> None:
        """Open the main page, which asks for the key, and give it."""
        self.open()
        expect(self.page.locator("#key-view")).to_be_visible()
        field = self.page.get_by_label("API key", exact=True)
        field.fill(key)
        field.press("Enter")

    def confirm(self, button: str) -> None:
        """Press an action's button and confirm in the page's dialog, from the keyboard: the
        dialog opens with the focus on its safe choice, and Tab reaches the action."""
        self.page.get_by_role("button", name=button, exact=True).focus()
        self.page.keyboard.press("Enter")
        dialog = self.page.locator("dialog#confirm")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button", name="Back")).to_be_focused()
        self.page.keyboard.press("Tab")
        expect(dialog.locator("#confirm-yes")).to_be_focused()
        self.page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()

    def field(self, name: str) -> str:
        return self.page.locator(f'#job-fields [data-field="{name}"]').inner_text()

    def counts(self) -> dict[str, int]:
        """The counts the page shows, by stats field name (read at one moment: the page redraws)."""
        shown = self.page.eval_on_selector_all(
            "#counts [data-count]", "items => items.map(i => [i.dataset.count, i.querySelector('dd').textContent])")
        return {name: int(value) for name, value in shown}

    def job_rows(self) -> list[dict[str, str]]:
        """The job list as shown: id, type, status and file name of each row."""
        rows = self.page.eval_on_selector_all(
            "#jobs tbody tr[data-job-id]", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        return [{"id": cells[0], "type": cells[1], "status": cells[2], "file": cells[4]} for cells in rows]

    def screenshot(self, name: str, tmp_dir: Path) -> None:
        """Into tmp_dir; also into docs/ when CONSOLE_SCREENSHOTS=1."""
        shot = tmp_dir / name
        self.page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
            shutil.copyfile(shot, DOCS / name)


def console_on(browser: Browser, base_url: str) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    console = Console(page, base_url)
    page.on("dialog", lambda dialog: _refuse(console, dialog))
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    try:
        yield console
    finally:
        context.close()


def _refuse(console: Console, dialog: Dialog) -> None:
    console.dialogs.append(f"{dialog.type}: {dialog.message}")
    dialog.dismiss()


@pytest.fixture
def console(browser: Browser, api) -> Iterator[Console]:
    """A fresh tab (its own session storage) on the suite stack's console."""
    yield from console_on(browser, api.base_url)
