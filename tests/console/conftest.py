"""The console's browser tests: a real `veil demo` on a loopback port and
Debian's Chromium driven by Playwright.

The demo is started once per session from the binary `cargo build` made
(`VEIL_BIN`, default `target/debug/veil`), over a fresh data directory;
screenshots go to `target/console-screenshots/`.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "target" / "console-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, url: str, data_dir: Path, keys: dict):
        self.url = url
        self.data_dir = data_dir
        self.keys = keys

    def key(self, name: str) -> str:
        return self.keys[name]["key"]

    def api(self, who: str, method: str, path: str, body=None, headers=None):
        """Calls the HTTP API as `who`: (status, JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key(who)}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="session")
def demo():
    binary = Path(os.environ.get("VEIL_BIN", ROOT / "target" / "debug" / "veil"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `cargo build` first")
    data_dir = Path(tempfile.mkdtemp(prefix="veil-console-"))
    port = free_port()
    log = open(data_dir.parent / f"{data_dir.name}.log", "w+")
    process = subprocess.Popen(
        [str(binary), "demo", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--persons", "2000"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"veil demo exited: {log.read()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("veil demo did not start in 300 s")
            time.sleep(0.3)
    keys = tomllib.loads((data_dir / "demo-keys.toml").read_text())
    yield Demo(url, data_dir, keys)
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    shutil.rmtree(data_dir, ignore_errors=True)


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


def sign_in(page, demo, who: str):
    page.goto(demo.url + "/console")
    page.fill("#key", demo.key(who))
    page.click("form[action='/console/sign-in'] button[type=submit]")


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
