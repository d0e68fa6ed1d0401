"""Notebooks of plain analysis: pandas, numpy, matplotlib, simulations (jupytext percent format)."""

from __future__ import annotations

SUNSPOTS_PLOT = """\
# %% [markdown]
# # Sunspot activity, 1700-2008
# Decades, the 11-year cycle, and a couple of plots.

# %%
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from statsmodels.datasets import sunspots

# %%
sun = sunspots.load_pandas().data
sun["YEAR"] = sun["YEAR"].astype(int)
sun["decade"] = (sun["YEAR"] // 10) * 10
peak_year = int(sun.loc[sun["SUNACTIVITY"].idxmax(), "YEAR"])
by_decade = sun.groupby("decade")["SUNACTIVITY"].agg(["mean", "max"]).round(2)
top_decades = by_decade.sort_values("mean", ascending=False).head(3).index.tolist()

# %%
sun["rolling_11"] = sun["SUNACTIVITY"].rolling(11, center=True).mean()
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(sun["YEAR"], sun["SUNACTIVITY"], lw=0.8, label="yearly")
ax.plot(sun["YEAR"], sun["rolling_11"], lw=2, label="11-year mean")
ax.legend()
n_lines = len(ax.lines)
cycle_max = float(sun["rolling_11"].max())

# %%
autocorr = np.array([sun["SUNACTIVITY"].autocorr(lag) for lag in range(1, 16)])
dominant_lag = int(np.argmax(autocorr[4:]) + 5)
fig2, ax2 = plt.subplots(figsize=(6, 3))
ax2.bar(by_decade.index, by_decade["mean"], width=8)
ax2.set_title("Mean sunspot activity per decade")
buffer = io.BytesIO()
fig2.savefig(buffer, format="png", dpi=60)
png_bytes = len(buffer.getvalue())
plt.close(fig2)
"""

MACRODATA_FEATURES = """\
# %% [markdown]
# # US macro data: features for a growth regression
# Quarterly dates, a small standardizer class, lags, and least squares with numpy.

# %%
import numpy as np
import pandas as pd
from statsmodels.datasets import macrodata

# %%
macro = macrodata.load_pandas().data
macro["date"] = pd.PeriodIndex.from_fields(
    year=macro["year"].astype(int), quarter=macro["quarter"].astype(int), freq="Q"
).to_timestamp()
start, end = macro["date"].min(), macro["date"].max()
span_years = round((end - start).days / 365.25, 2)

# %%
class Standardizer:
    def __init__(self):
        self.mean_ = None
        self.std_ = None

    def fit(self, frame):
        self.mean_ = frame.mean()
        self.std_ = frame.std(ddof=0)
        return self

    def transform(self, frame):
        return (frame - self.mean_) / self.std_

# %%
cols = ["realgdp", "realcons", "realinv", "unemp", "infl"]
scaler = Standardizer().fit(macro[cols])
scaled = scaler.transform(macro[cols])
scaled_check = scaled.agg(["mean", "std"]).round(6)

# %%
macro["gdp_growth"] = np.log(macro["realgdp"]).diff() * 400
macro["infl_lag"] = macro["infl"].shift(1)

# %%
recent = macro[["date", "gdp_growth", "infl", "infl_lag"]].tail(8).reset_index(drop=True)
clean = macro.dropna(subset=["gdp_growth", "infl_lag"])
design = np.column_stack([np.ones(len(clean)), clean["infl_lag"], clean["unemp"]])
beta, *_ = np.linalg.lstsq(design, clean["gdp_growth"].to_numpy(), rcond=None)
coef_named = dict(zip(["const", "infl_lag", "unemp"], beta.round(6).tolist(), strict=True))
corr = macro[[*cols, "gdp_growth"]].corr().round(4)
strongest = corr["gdp_growth"].drop("gdp_growth").abs().idxmax()
"""

AB_TEST = """\
# %% [markdown]
# # A/B test readout: conversion and revenue
# Simulated from a seeded generator so the readout can be reproduced.

# %%
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

rng = np.random.default_rng(2024)

# %%
n_per_arm = 800
control = rng.binomial(1, 0.11, size=n_per_arm)
treatment = rng.binomial(1, 0.135, size=n_per_arm)
rates = {"control": control.mean(), "treatment": treatment.mean()}

# %%
z_stat, p_value = proportions_ztest([treatment.sum(), control.sum()], [n_per_arm, n_per_arm])
lift = rates["treatment"] / rates["control"] - 1
revenue_control = rng.gamma(2.0, 15.0, size=n_per_arm)
revenue_treatment = rng.gamma(2.1, 15.0, size=n_per_arm)
t_res = stats.ttest_ind(revenue_treatment, revenue_control, equal_var=False)
t_stat, t_pvalue = float(t_res.statistic), float(t_res.pvalue)

# %%
def bootstrap_diff(a, b, n_boot=1000, rng=rng):
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        diffs[i] = rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean()
    return diffs

# %%
boot = bootstrap_diff(revenue_treatment, revenue_control)
ci_low, ci_high = np.percentile(boot, [2.5, 97.5])
summary = pd.DataFrame(
    {
        "metric": ["conversion", "revenue"],
        "p_value": [p_value, t_pvalue],
        "significant": [p_value < 0.05, t_pvalue < 0.05],
    }
)
summary

# %% [markdown]
# A fresh, unseeded draw to eyeball the noise level (differs on every run).

# %%
noise_check = np.random.default_rng().normal(size=3)
noise_sd = float(noise_check.std())
"""

DICE_SIMULATION = """\
# %% [markdown]
# # Dice, cards and random walks
# Monte Carlo warm-ups with the standard library and numpy's legacy global generator.

# %%
import collections
import random
import uuid

import numpy as np

random.seed(7)
np.random.seed(7)

# %%
rolls = [random.randint(1, 6) + random.randint(1, 6) for _ in range(2000)]
counts = dict(sorted(collections.Counter(rolls).items()))
most_common_total = max(counts, key=counts.get)
p_seven = counts[7] / len(rolls)

# %%
ranks = ["A", "K", "Q", "J", "10", "9", "8", "7", "6", "5", "4", "3", "2"]
deck = [f"{rank}{suit}" for suit in "SHDC" for rank in ranks]
random.shuffle(deck)
hand = deck[:5]

# %%
walk = np.cumsum(np.random.choice([-1, 1], size=500))
final_position = int(walk[-1])
max_excursion = int(np.abs(walk).max())

# %%
def simulate_game(n_rounds, p_win=0.48):
    bank = 20
    for _ in range(n_rounds):
        bank += 1 if random.random() < p_win else -1
        if bank == 0:
            break
    return bank

# %%
outcomes = [simulate_game(200) for _ in range(300)]
ruin_rate = sum(o == 0 for o in outcomes) / len(outcomes)

# %%
run_id = str(uuid.uuid4())
print("run", run_id)
"""

COFFEE_SALES = """\
# %% [markdown]
# # Coffee shop sales
# Daily sales per store and product, read from a CSV export next to the notebook.

# %%
import numpy as np
import pandas as pd

# %%
sales = pd.read_csv("data/coffee_sales.csv", parse_dates=["date"])
n_days = sales["date"].nunique()
stores = sorted(sales["store"].unique())

# %%
sales["revenue"] = sales["cups"] * sales["price"]

# %%
daily = sales.groupby("date", as_index=False)["revenue"].sum()
best_day = daily.loc[daily["revenue"].idxmax(), "date"].strftime("%Y-%m-%d")
display(daily.head())

# %%
pivot = sales.pivot_table(
    index="store", columns="product", values="cups", aggfunc="sum", fill_value=0
).reset_index()
pivot.columns.name = None
weekday = sales["date"].dt.day_name()
weekday_revenue = sales.groupby(weekday)["revenue"].mean().round(2).to_dict()

# %%
def price_elasticity(frame):
    x = np.log(frame["price"])
    y = np.log(frame["cups"])
    return float(np.polyfit(x, y, 1)[0])

# %%
sales_sample = sales.sample(5)
sales_sample

# %%
elasticities = {product: round(price_elasticity(g), 4) for product, g in sales.groupby("product")}
summary_line = f"{len(sales)} sales over {n_days} days in {len(stores)} stores"
summary_line
"""

NOTEBOOKS: dict[str, str] = {
    "sunspots_plot": SUNSPOTS_PLOT,
    "macrodata_features": MACRODATA_FEATURES,
    "ab_test": AB_TEST,
    "dice_simulation": DICE_SIMULATION,
    "coffee_sales": COFFEE_SALES,
}
