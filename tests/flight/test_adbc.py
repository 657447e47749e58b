"""The ADBC Flight SQL driver (through its DB-API and through polars) against
`veil demo`: every answer goes through the same policy stage as HTTP."""

import json

import adbc_driver_manager
import polars as pl
import pytest

HEALTH = "SELECT id_number, cost FROM health_visits"


def meta(table, key):
    return json.loads(table.schema.metadata[f"veil.{key}".encode()])


def test_a_masked_query_through_the_cursor(connect):
    with connect("demo-consumer").cursor() as cur:
        cur.execute("SELECT name, phone FROM population LIMIT 3")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 3
    assert all(name.endswith("*") for name in table.column("name").to_pylist())
    assert meta(table, "privacy")["mode"] == "protected"
    assert meta(table, "provenance")["datasets"] == ["population"]
    assert table.schema.metadata[b"veil.request_id"]


def test_an_aggregate_through_polars(connect):
    df = pl.read_database(
        "SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code ORDER BY county_code",
        connection=connect("demo-consumer"),
    )
    assert df.columns == ["county_code", "n"]
    assert df.height > 1 and (df["n"] > 0).all()


def test_a_dp_query_is_charged_to_the_budget(demo, connect):
    def left():
        _, budget = demo.api("demo-kunming", "GET", "/v1/budget")
        return next(b for b in budget["budgets"] if b["dataset"] == "utility_usage")["remaining_epsilon"]

    before = left()
    conn = connect("demo-kunming", headers={"x-veil-epsilon": "0.1", "x-veil-intervals": "true"})
    with conn.cursor() as cur:
        cur.execute("SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month")
        table = cur.fetch_arrow_table()
    privacy = meta(table, "privacy")
    assert privacy["mode"] == "dp" and privacy["epsilon_spent"] == pytest.approx(0.1)
    assert table.column_names == ["month", "usage", "usage_ci95_lo", "usage_ci95_hi"]
    assert left() == pytest.approx(before - 0.1, abs=1e-9)
    # The driver prepares too: a prepared statement runs (and is charged) anew.
    with conn.cursor() as cur:
        cur.adbc_prepare("SELECT COUNT(*) AS n FROM utility_usage")
        cur.execute("SELECT COUNT(*) AS n FROM utility_usage")
        assert cur.fetch_arrow_table().num_rows == 1
    assert left() == pytest.approx(before - 0.2, abs=1e-9)


def test_a_refusal_has_the_contracts_message_and_code(connect):
    with connect("demo-consumer").cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as refused:
            cur.execute(HEALTH)
    error = refused.value
    assert error.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED, error
    assert "health_visits" in str(error)
    codes = [v for k, v in (error.details or []) if "veil-error-code" in str(k)]
    assert codes and b"policy_denied" in codes[0], error.details


def test_a_revoked_key_stops_at_once_and_a_wrong_token_never_works(demo, connect):
    status, created = demo.api(
        "demo-admin", "POST", "/v1/principals", {"name": "flight-tool", "role": "consumer"}
    )
    assert status == 201, created
    key = created["api_key"]
    conn = connect(key=key)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM population")
        assert cur.fetch_arrow_table().num_rows == 1
    # Basic credentials: the principal's name and key.
    with connect(basic=("flight-tool", key)).cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetch_arrow_table().column("one").to_pylist() == [1]
    status, _ = demo.api("demo-admin", "DELETE", "/v1/principals/flight-tool/keys")
    assert status == 200
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as revoked:
            cur.execute("SELECT COUNT(*) AS n FROM population")
    assert revoked.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
    with pytest.raises(adbc_driver_manager.Error) as wrong:
        with connect(key="not-a-key").cursor() as cur:
            cur.execute("SELECT 1")
    assert wrong.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
    with pytest.raises(adbc_driver_manager.Error):
        connect(basic=("demo-consumer", key))


def test_browsing_shows_only_what_the_caller_may_use(connect):
    conn = connect("demo-consumer")
    assert conn.adbc_get_table_types() == ["TABLE"]
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["veil"]
    tables = {
        t["table_name"]: [c["column_name"] for c in t["table_columns"]]
        for s in objects[0]["catalog_db_schemas"]
        for t in s["db_schema_tables"]
    }
    assert "population" in tables and "name" in tables["population"]
    # A modeler's and a consumer's views differ where the policy says so.
    schema = conn.adbc_get_table_schema("population", catalog_filter="veil", db_schema_filter="public")
    assert schema.names == tables["population"]
