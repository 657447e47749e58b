"""Flight SQL against a real `veil demo` (its second loopback port), through
the ADBC Flight SQL driver, a client nobody here wrote."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import veil_demo  # noqa: E402

demo = veil_demo.session_fixture()


@pytest.fixture(scope="session")
def connect(demo):
    """An ADBC connection to the demo's Flight SQL port: with an API key as
    the bearer (``key=``), or Basic credentials (``basic=(name, key)``), and
    veil's options as call headers (``headers={"x-veil-epsilon": "0.1"}``)."""
    import adbc_driver_flightsql.dbapi as flight_sql
    from adbc_driver_flightsql import DatabaseOptions

    opened = []

    def make(who=None, key=None, basic=None, headers=None):
        kwargs = {}
        if basic is not None:
            kwargs["username"], kwargs["password"] = basic
        else:
            kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {key or demo.key(who)}"
        for name, value in (headers or {}).items():
            kwargs[DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + name] = value
        conn = flight_sql.connect(demo.flight_url, db_kwargs=kwargs, autocommit=True)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        try:
            conn.close()
        except Exception:
            pass
