"""The console's browser tests: a real `veil demo` on a loopback port and
Debian's Chromium driven by Playwright.

The demo is started once per session from the binary `cargo build` made
(`VEIL_BIN`, default `target/debug/veil`), over a fresh data directory;
screenshots go to `target/console-screenshots/`.
"""

import os
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import veil_demo  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


demo = veil_demo.session_fixture()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context (no cookies) at desktop width. A script error
    or a Content-Security-Policy violation fails the test; a response's
    status (a refusal the test expects) does not."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    p = context.new_page()
    problems = []
    p.on(
        "console",
        lambda m: problems.append(m.text)
        if m.type == "error" and not m.text.startswith("Failed to load resource")
        else None,
    )
    p.on("pageerror", lambda e: problems.append(str(e)))
    yield p
    context.close()
    assert not problems, f"browser errors: {problems}"
