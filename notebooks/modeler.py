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
# # veil as a modeler
#
# A qualified developer trains inside the service and gets parameters,
# never rows: DP linear and logistic regressions, their coefficients
# against the noise, scoring supplied rows, a histogram and quantiles.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from _setup import PLOTS, client

me = client("demo-modeler")

# %% [markdown]
# ## A DP linear regression of tax paid on revenue, at three ε
#
# Each run spends about ε = 1.2 of `tax`'s budget (ε = 2 a month for the
# demo modeler), so the notebook runs again after the month turns, or
# against a fresh demo.

# %%
runs = []
for eps in [0.1, 0.2, 0.4]:
    m = me.train(
        {
            "template": "linear_regression",
            "features": [{"dataset": "tax", "field": "revenue", "clamp": [0, 5000]}],
            "target": {"dataset": "tax", "field": "tax_paid", "clamp": [0, 500]},
            "epsilon": eps,
        }
    )
    released = m["model"]["released"]
    runs.append({"epsilon": eps, "slope": released["coefficients"][0], "intercept": released["intercept"], "id": m["id"]})
runs = pl.DataFrame(runs)
print(runs)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(runs["epsilon"], runs["slope"], marker="o")
ax.set_xscale("log")
ax.set_xlabel("ε")
ax.set_ylabel("slope")
ax.set_title("The coefficient against the noise: steadier as ε grows")
fig.tight_layout()
fig.savefig(PLOTS / "modeler-slopes.png")

# %% [markdown]
# ## A DP logistic regression: is tax paid above 100?

# %%
logit = me.train(
    {
        "template": "logistic_regression",
        "features": [{"dataset": "tax", "field": "revenue", "clamp": [0, 5000]}],
        "target": {"dataset": "tax", "field": "tax_paid", "clamp": [0, 500]},
        "above": 100,
        "epsilon": 0.2,
    }
)
print(logit["model"]["released"])
print("ε spent:", logit["privacy"]["epsilon_spent"])

# %% [markdown]
# ## Scoring rows I supply, inside the service

# %%
grid = pl.DataFrame({"revenue": [100.0, 1000.0, 4000.0]})
best = runs.sort("epsilon")["id"][-1]
print(grid.with_columns(me.score(best, rows=grid).alias("tax_paid")))

# %% [markdown]
# ## A histogram and quantiles of revenue

# %%
hist = me.train({"template": "histogram", "features": [{"dataset": "tax", "field": "revenue", "clamp": [0, 5000]}], "epsilon": 0.15, "params": {"bins": 10}})
counts = hist["model"]["released"]
print(counts)
quart = me.train({"template": "quantiles", "features": [{"dataset": "tax", "field": "revenue", "clamp": [0, 5000]}], "epsilon": 0.15})
print(quart["model"]["released"])
fig, ax = plt.subplots(figsize=(6, 3))
values = counts.get("counts", [])
ax.bar(range(len(values)), values)
ax.set_title("Revenue: noisy counts of units per bin (ε = 0.15)")
fig.tight_layout()
fig.savefig(PLOTS / "modeler-histogram.png")
print(me.models())
