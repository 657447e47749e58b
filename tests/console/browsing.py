"""What the console's tests do in a page: sign in, save a screenshot."""

from pathlib import Path

SHOTS = Path(__file__).resolve().parents[2] / "target" / "console-screenshots"


def sign_in(page, demo, who: str):
    page.goto(demo.url + "/console")
    page.fill("#key", demo.key(who))
    page.click("form[action='/console/sign-in'] button[type=submit]")


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
