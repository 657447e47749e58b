"""A `veil demo` on a free loopback port, for the Python test suites (the
console's browser tests, the client's tests, the notebooks): started from
the binary `cargo build` made (`VEIL_BIN`, default `target/debug/veil`)
over a fresh data directory, stopped and removed at the end."""

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
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, url: str, data_dir: Path, keys: dict, flight_url: str):
        self.url = url
        self.data_dir = data_dir
        self.keys = keys
        # Arrow Flight SQL, the demo's second port.
        self.flight_url = flight_url

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


@contextmanager
def running(persons: int = 2000):
    """A demo serving until the block ends. Raises RuntimeError when the
    binary is missing or the demo does not come up."""
    binary = Path(os.environ.get("VEIL_BIN", ROOT / "target" / "debug" / "veil"))
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `cargo build` first")
    data_dir = Path(tempfile.mkdtemp(prefix="veil-demo-"))
    log_path = data_dir.parent / f"{data_dir.name}.log"
    log = open(log_path, "w+")

    def start():
        # The port is free when asked, and may be taken before the demo
        # binds it: a demo that cannot bind is started again on another.
        port, flight = free_port(), free_port()
        command = [str(binary), "demo", "--data-dir", str(data_dir), "--listen",
                   f"127.0.0.1:{port}", "--flight-sql", f"127.0.0.1:{flight}",
                   "--persons", str(persons)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return process, port, flight

    process, port, flight = start()
    url = f"http://127.0.0.1:{port}"
    starts = 1
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                log.seek(0)
                text = log.read()
                if "in use" in text.lower() and starts < 3:
                    starts += 1
                    process, port, flight = start()
                    url = f"http://127.0.0.1:{port}"
                    continue
                raise RuntimeError(f"veil demo exited: {text[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("veil demo did not start in 300 s")
                time.sleep(0.3)
        keys = tomllib.loads((data_dir / "demo-keys.toml").read_text())
        yield Demo(url, data_dir, keys, f"grpc://127.0.0.1:{flight}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        log_path.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def session_fixture():
    """The pytest fixture ``demo``: one demo for the whole session, a test
    failure (not a skip) when it cannot start. A conftest binds it with
    ``demo = veil_demo.session_fixture()``."""
    import pytest

    @pytest.fixture(scope="session")
    def demo():
        try:
            with running() as d:
                yield d
        except RuntimeError as e:
            pytest.fail(str(e))

    return demo
