"""What every notebook starts with: the service and the demo's keys.

``VEIL_URL`` (default http://127.0.0.1:8080) names the service and
``VEIL_KEYS`` (default veil-demo/demo-keys.toml) the demo's keys, so a
notebook runs the same against a demo started by hand and in CI.
"""

import os
import tomllib
from pathlib import Path

import veil

URL = os.environ.get("VEIL_URL", "http://127.0.0.1:8080")
KEYS_FILE = Path(os.environ.get("VEIL_KEYS", "veil-demo/demo-keys.toml"))
KEYS = tomllib.loads(KEYS_FILE.read_text())
#: The service's public key, for checking receipts offline.
PUBLIC_KEY = (KEYS_FILE.parent / "public.key").read_text().strip()
#: Where plots are saved.
PLOTS = Path(os.environ.get("VEIL_PLOTS", "plots"))
PLOTS.mkdir(parents=True, exist_ok=True)


def client(name: str) -> veil.Client:
    """A client as the demo principal ``name``."""
    return veil.connect(URL, KEYS[name]["key"])
