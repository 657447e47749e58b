"""Every method of the client against a real demo, the error mapping, and
a large answer streamed as Arrow."""

import re

import polars as pl
import pytest

import veil

ID_NUMBER = re.compile(r"^\d{17}[\dX]$")


def test_connect_reads_the_environment(demo, monkeypatch):
    monkeypatch.setenv("VEIL_URL", demo.url)
    monkeypatch.setenv("VEIL_KEY", demo.key("demo-consumer"))
    with veil.connect() as client:
        assert client.catalog().height > 0
    monkeypatch.delenv("VEIL_KEY")
    with pytest.raises(ValueError):
        veil.connect()


def test_a_masked_query_is_a_dataframe_with_its_provenance_and_receipt(demo, as_):
    answer = as_("demo-consumer").sql("SELECT name, phone, county_code FROM population LIMIT 5")
    assert isinstance(answer.df, pl.DataFrame)
    assert answer.df.columns == ["name", "phone", "county_code"]
    assert answer.df.height == 5
    assert all("*" in p for p in answer.df["phone"]), answer.df
    assert answer.provenance["datasets"] == ["population"]
    assert answer.privacy["mode"] in ("protected", "masked", "plain"), answer.privacy
    assert answer.policy_version.startswith("v")
    assert answer.to_arrow().num_rows == 5
    assert not answer.truncated
    public = (demo.data_dir / "public.key").read_text()
    claims = answer.verify_receipt(public)
    assert claims["request_id"] == answer.request_id
    # Another key does not verify it, nor does it vouch for other bytes.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(ValueError, match="signature"):
        answer.verify_receipt(other.hex())
    answer._sha256 = "0" * 64
    with pytest.raises(ValueError, match="bytes received"):
        answer.verify_receipt(public)


def test_an_aggregate_and_a_dp_query_spend_and_say_so(as_):
    client = as_("demo-kunming")
    counts = client.sql("SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code")
    assert set(counts.df.columns) == {"county_code", "n"}
    before = client.budget()
    left = before.filter(pl.col("dataset") == "utility_usage")["epsilon_left"][0]
    price = client.sql(
        "SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month", epsilon=0.2, dry_run=True
    )
    assert isinstance(price, dict)
    dp = client.sql("SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month", epsilon=0.2)
    assert dp.privacy["mode"] == "dp" and dp.privacy["epsilon_spent"] > 0
    assert dp.privacy["columns"][0]["ci95_half_width"] > 0
    after = client.budget().filter(pl.col("dataset") == "utility_usage")["epsilon_left"][0]
    assert after == pytest.approx(left - dp.privacy["epsilon_spent"], abs=1e-9)


def test_dp_answers_carry_automatic_bounds_and_intervals(as_):
    client = as_("demo-consumer")
    sql = "SELECT diagnosis_category, SUM(cost) AS cost FROM health_visits GROUP BY diagnosis_category"
    dp = client.sql(sql, epsilon=0.5, bounds="auto", intervals=True)
    df = dp.df
    assert list(df.columns) == ["diagnosis_category", "cost", "cost_ci95_lo", "cost_ci95_hi"]
    assert df.height > 0
    assert ((df["cost_ci95_lo"] <= df["cost"]) & (df["cost"] <= df["cost_ci95_hi"])).all()
    clamp = dp.privacy["columns"][0]["clamp"]
    assert clamp["source"] == "automatic" and clamp["lower"] < clamp["upper"]


def test_refusals_raise_the_contracts_codes(demo, as_):
    client = as_("demo-consumer")
    with pytest.raises(veil.PolicyDenied) as denied:
        client.sql("SELECT id_number, cost FROM health_visits")
    assert denied.value.status == 403 and "differential privacy" in denied.value.message
    with pytest.raises(veil.InvalidSql):
        client.sql("SELECT nothing FROM population")
    with pytest.raises(veil.Forbidden):
        client.train({"template": "histogram", "features": ["tax.revenue"], "epsilon": 0.1})
    with pytest.raises(veil.NotFound):
        client.request("r-no-such-request")
    with veil.connect(demo.url, "veil_not_a_key") as stranger, pytest.raises(veil.Unauthenticated):
        stranger.catalog()
    with pytest.raises(veil.BudgetExhausted):
        client.sql("SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month", epsilon=50.0)
    rate = veil.errors.from_body(429, {"error": {"code": "rate_limited", "message": "slow down", "retry_after_seconds": 3}})
    assert isinstance(rate, veil.RateLimited) and rate.retry_after == 3.0
    # A body that is not the contract's (a proxy's) maps by status.
    proxy = veil.errors.from_body(503, None, "7")
    assert isinstance(proxy, veil.Unavailable) and proxy.retry_after == 7.0
    dated = veil.errors.from_body(429, "<html>", "Wed, 21 Oct 2026 07:28:00 GMT")
    assert isinstance(dated, veil.RateLimited) and dated.retry_after is None
    assert isinstance(veil.errors.from_body(502, None), veil.Internal)


def citizen_id(body: str) -> str:
    """A valid 18-character identity number from its first 17 digits."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body, weights))
    return body + "10X98765432"[total % 11]


def test_verification_one_subject_and_a_batch_from_a_dataframe(as_):
    client = as_("demo-consumer")
    products = client.products()
    assert "person_identity" in products["name"].to_list()
    one = client.verify("person_identity", citizen_id("11010519491231001"), {"name": "张三"})
    assert one["results"] == {"all": "mismatch"}
    subjects = [citizen_id(f"5301021990010100{i}") for i in range(3)]
    frame = pl.DataFrame({"subject": subjects, "name": ["张三", "李四", "王五"]})
    checked = client.verify_batch("person_identity", frame)
    assert checked.columns == ["subject", "name", "all_result"]
    assert checked["all_result"].to_list() == ["mismatch"] * 3
    # In batches of two: every subject answered, in order.
    more = [citizen_id(f"5301021990020200{i}") for i in range(5)]
    batched = client.verify_batch("person_identity", pl.DataFrame({"subject": more, "name": ["赵六"] * 5}), batch=2)
    assert batched["subject"].to_list() == more
    assert batched["all_result"].to_list() == ["mismatch"] * 5


def test_the_catalog_is_a_dataframe_of_fields_with_levels(as_):
    catalog = as_("demo-consumer").catalog()
    assert {"dataset", "field", "grade", "level"} <= set(catalog.columns)
    levels = dict(
        catalog.filter(pl.col("dataset") == "population").select("field", "level").iter_rows()
    )
    assert levels["phone"].startswith("masked")


def test_a_modeler_trains_lists_and_scores(as_):
    client = as_("demo-modeler")
    model = client.train(
        {"template": "linear_regression", "features": ["tax.revenue"], "target": "tax.tax_paid", "epsilon": 0.3}
    )
    assert model["privacy"]["epsilon_spent"] == pytest.approx(0.3)
    assert model["id"] in client.models()["id"].to_list()
    assert client.model(model["id"])["id"] == model["id"]
    scores = client.score(model["id"], rows=pl.DataFrame({"other": [1.0, 2.0], "revenue": [100.0, 1000.0]}))
    assert scores.len() == 2 and scores.dtype == pl.Float64
    # Columns are taken by name: the same rows as a list score the same.
    assert scores.to_list() == client.score(model["id"], rows=[[100.0], [1000.0]]).to_list()
    with pytest.raises(ValueError, match="revenue"):
        client.score(model["id"], rows=pl.DataFrame({"other": [1.0]}))
    with pytest.raises(ValueError):
        client.score(model["id"])


def test_an_approver_reads_requests_acts_and_reads_the_audit(as_):
    consumer, provider, authority = as_("demo-kunming"), as_("demo-provider"), as_("demo-approver")
    opened = consumer.open_request("sharing", dataset="social_insurance", purpose="client test")
    queue = provider.requests()
    assert opened["id"] in queue["id"].to_list()
    assert "approve (provider)" in queue.filter(pl.col("id") == opened["id"])["next_steps"][0]
    with pytest.raises(veil.BadRequest):
        provider.act(opened["id"], "refuse")
    refused = provider.act(opened["id"], "refuse", legal_basis="Art. 26: not a duty it is shared for")
    assert refused["state"] == "refused"
    audit = authority.audit(principal="demo-provider", endpoint="POST /v1/requests/{id}/{action}")
    assert audit.height >= 2 and set(audit["outcome"]) >= {"ok:refused", "refused:bad_request"}
    assert authority.audit_verify()["intact"] is True
    assert "[[grade]]" in authority.policy()["text"]


def test_a_large_answer_streams_as_arrow_and_its_receipt_covers_every_byte(demo, as_):
    answer = as_("demo-consumer").sql("SELECT county_code, month FROM utility_usage")
    assert answer.df.height > 10_000
    assert answer.df.schema["month"] == pl.Utf8
    assert not answer.truncated
    claims = answer.verify_receipt((demo.data_dir / "public.key").read_text())
    assert claims["result_sha256"] == answer._sha256
