# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # veil as a consumer
#
# A public institution's analyst: the catalog, a masked query, an
# aggregate, a differentially private query with its confidence intervals,
# the budget draining, a verification batch, and a refusal explained.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

import veil
from _setup import PLOTS, PUBLIC_KEY, client

me = client("demo-consumer")

# %% [markdown]
# ## The catalog: what I may see, field by field

# %%
catalog = me.catalog()
print(catalog.group_by("dataset").agg(pl.len().alias("fields")).sort("dataset"))
print(catalog.filter(pl.col("dataset") == "population").select("field", "grade", "level"))

# %% [markdown]
# ## A masked query: rows, but the personal fields masked

# %%
answer = me.sql("SELECT name, phone, county_code FROM population LIMIT 5")
print(answer.df)
print("from", answer.provenance["datasets"], "under policy", answer.policy_version)
assert all("*" in p for p in answer.df["phone"])
print("receipt checks:", answer.verify_receipt(PUBLIC_KEY)["request_id"] == answer.request_id)

# %% [markdown]
# ## An aggregate: counts by county, small groups suppressed

# %%
counts = me.sql(
    "SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code ORDER BY n DESC LIMIT 10"
)
print(counts.df)

# %% [markdown]
# ## Differential privacy: monthly utility usage at ε = 0.3
#
# Usage is personal: without a grant it comes out only under DP. Each
# household contributes to its 12 months (`max_groups`), and the answer
# says how wide the noise is.

# %%
dp = me.sql(
    "SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month",
    epsilon=0.3,
    max_groups=12,
)
half = dp.privacy["columns"][0]["ci95_half_width"]
monthly = dp.df.sort("month")
print(monthly)
print("ε spent:", dp.privacy["epsilon_spent"], "; 95% half-width:", half)
fig, ax = plt.subplots(figsize=(8, 3))
ax.errorbar(monthly["month"].to_list(), monthly["usage"].to_list(), yerr=half, fmt="o-", capsize=3)
ax.set_title("Monthly usage under DP (ε = 0.3), 95% intervals")
ax.tick_params(axis="x", rotation=45)
fig.tight_layout()
fig.savefig(PLOTS / "consumer-dp-usage.png")

# %% [markdown]
# ## The budget drains with every DP answer
#
# A run spends ε = 0.45 of `utility_usage`'s ε = 2 a month.

# %%
left = []
for _ in range(3):
    me.sql("SELECT SUM(usage) AS usage FROM utility_usage", epsilon=0.05)
    b = me.budget().filter(pl.col("dataset") == "utility_usage")
    left.append(b["epsilon_left"][0])
print("ε left after each query:", left)
assert left == sorted(left, reverse=True)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(range(1, len(left) + 1), left, marker="o")
ax.set_xlabel("query")
ax.set_ylabel("ε left")
fig.tight_layout()
fig.savefig(PLOTS / "consumer-budget.png")

# %% [markdown]
# ## Verification from a DataFrame: one bit per subject, nothing else

# %%
def citizen_id(body: str) -> str:
    """An identity number with its check character (GB 11643)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


subjects = pl.DataFrame(
    {
        "subject": [citizen_id("53010219800101001"), citizen_id("53010219800101002")],
        "name": ["张三", "李四"],
    }
)
print(me.verify_batch("person_identity", subjects))

# %% [markdown]
# ## A refusal, explained
#
# Diagnoses are sensitive: rows of them never leave, and the message says
# what would.

# %%
try:
    me.sql("SELECT id_number, diagnosis_category FROM health_visits")
    raise AssertionError("expected a refusal")
except veil.PolicyDenied as refusal:
    print(refusal.code, "-", refusal.message)
