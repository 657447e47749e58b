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
# # veil as an approver
#
# The requests queue and its deadlines, approving a sharing request and
# seeing the grant work, the audit trail as a DataFrame, and checking the
# chain and a receipt.

# %%
import uuid

import polars as pl

from _setup import PUBLIC_KEY, client

provider = client("demo-provider")
authority = client("demo-approver")
applicant = client("demo-kunming")

# %% [markdown]
# ## The queue, with its working-day deadlines

# %%
# A purpose of its own each run: the grant it gets is for that purpose only.
purpose = f"eligibility review {uuid.uuid4().hex[:8]}"
opened = applicant.open_request("sharing", dataset="social_insurance", purpose=purpose)
queue = provider.requests()
print(queue.select("id", "kind", "state", "dataset", "due", "next_steps"))

# %% [markdown]
# ## Approve and deliver: the grant works for that purpose

# %%
query = "SELECT id_number FROM social_insurance LIMIT 3"
before = applicant.sql(query, purpose=purpose).df
provider.act(opened["id"], "approve")
delivered = provider.act(opened["id"], "deliver")
print("state:", delivered["state"], "grant:", delivered["grant"])
after = applicant.sql(query, purpose=purpose).df
print(pl.concat([before.rename({"id_number": "before"}), after.rename({"id_number": "after"})], how="horizontal"))
assert all("*" in v for v in before["id_number"]) and not any("*" in v for v in after["id_number"])

# %% [markdown]
# ## The audit trail as a DataFrame

# %%
audit = authority.audit(limit=200)
print(audit.group_by("endpoint", "outcome").agg(pl.len().alias("n")).sort("n", descending=True))
print(provider.audit(limit=5).select("seq", "principal", "endpoint", "datasets", "request", "outcome"))

# %% [markdown]
# ## The chain, and a receipt checked offline

# %%
print(authority.audit_verify())
answer = applicant.sql("SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code")
claims = answer.verify_receipt(PUBLIC_KEY)
print("receipt for", claims["request_id"], "policy", claims["policy_version"], "privacy", claims["privacy"])
