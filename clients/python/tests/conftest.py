"""The client against a real `veil demo` on a loopback port (started once
for the session by the repository's tests/veil_demo.py)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
import veil_demo  # noqa: E402

import veil  # noqa: E402


demo = veil_demo.session_fixture()


@pytest.fixture(scope="session")
def as_(demo):
    """A client for a demo principal: ``as_("demo-consumer")``."""
    clients = {}

    def make(who: str) -> veil.Client:
        if who not in clients:
            clients[who] = veil.connect(demo.url, demo.key(who))
        return clients[who]

    yield make
    for c in clients.values():
        c.close()
