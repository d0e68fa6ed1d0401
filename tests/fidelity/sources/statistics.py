"""Notebooks that fit statsmodels models on its bundled datasets (jupytext percent format)."""

from __future__ import annotations

DIABETES_OLS = """\
# %% [markdown]
# # Diabetes progression: which baseline measurements matter?
# An ordinary least squares fit on three of the ten standardized features.

# %%
import numpy as np
import pandas as pd
import statsmodels.api as sm
from sklearn.datasets import load_diabetes

# %%
data = load_diabetes(as_frame=True)
df = data.frame
summary_stats = df.describe().T[["mean", "std", "min", "max"]].round(4)
summary_stats

# %%
X = sm.add_constant(df[["bmi", "bp", "s5"]])
y = df["target"]
res = sm.OLS(y, X).fit()
r2 = res.rsquared
adj_r2 = res.rsquared_adj
print(f"R^2 = {r2:.3f} (adjusted {adj_r2:.3f})")

# %%
def predict_target(bmi, bp, s5):
    row = pd.DataFrame({"const": [1.0], "bmi": [bmi], "bp": [bp], "s5": [s5]})
    return float(res.predict(row).iloc[0])

# %%
pvalues = res.pvalues.round(6)
significant = [name for name, p in pvalues.items() if p < 0.05 and name != "const"]
conf = res.conf_int()
conf.columns = ["lower", "upper"]
conf["width"] = conf["upper"] - conf["lower"]
example_prediction = predict_target(0.05, 0.02, 0.03)
residual_sd = float(np.sqrt(res.scale))
conf
"""

LONGLEY_FORMULA = """\
# %% [markdown]
# # Longley: total employment from the macro aggregates
# The classic ill-conditioned regression, with the formula API.

# %%
import statsmodels.api as sm
import statsmodels.formula.api as smf

# %%
longley = sm.datasets.longley.load_pandas().data
longley["YEAR"] = longley["YEAR"].astype(int)
n_years = len(longley)
first_year, last_year = int(longley["YEAR"].min()), int(longley["YEAR"].max())

# %%
res = smf.ols("TOTEMP ~ GNP + UNEMP + ARMED + POP", data=longley).fit()
coefficients = res.params.to_dict()
aic, bic = res.aic, res.bic
table = sm.stats.anova_lm(res, typ=2)
res.summary()

# %%
longley["fitted"] = res.fittedvalues
longley["resid"] = res.resid

# %%
worst_year = int(longley.loc[longley["resid"].abs().idxmax(), "YEAR"])
growth = longley.set_index("YEAR")["TOTEMP"].pct_change().dropna()
growth_summary = {"mean": growth.mean(), "min": growth.min(), "max": growth.max()}
"""

SPECTOR_LOGIT = """\
# %% [markdown]
# # Does the PSI teaching method improve grades?
# Spector and Mazzeo (1980): logit and probit fits.

# %%
import numpy as np
import statsmodels.api as sm

# %%
spector = sm.datasets.spector.load_pandas()
X = sm.add_constant(spector.exog, prepend=False)
y = spector.endog
pass_rate = y.mean()

# %%
logit_res = sm.Logit(y, X).fit(disp=0)
llf = logit_res.llf
pseudo_r2 = logit_res.prsquared
odds_ratios = np.exp(logit_res.params)
odds_ratio_psi = float(odds_ratios["PSI"])
margeff = logit_res.get_margeff(at="overall").summary_frame()
margeff

# %%
probit_res = sm.Probit(y, X).fit(disp=0)
comparison = {
    "logit_aic": logit_res.aic,
    "probit_aic": probit_res.aic,
    "better": "logit" if logit_res.aic < probit_res.aic else "probit",
}
predicted = (logit_res.predict(X) > 0.5).astype(int)
accuracy = float((predicted == y).mean())
"""

SCOTLAND_GLM = """\
# %% [markdown]
# # Scottish parliament referendum: a Gamma GLM
# The share of "yes" votes per council area.

# %%
import numpy as np
import statsmodels.api as sm
import statsmodels.formula.api as smf

# %%
scot = sm.datasets.scotland.load_pandas()
exog = sm.add_constant(scot.exog, prepend=False)
gamma_res = sm.GLM(scot.endog, exog, family=sm.families.Gamma()).fit()
deviance = gamma_res.deviance
pearson_chi2 = gamma_res.pearson_chi2
params = gamma_res.params.round(8)

# %%
mu = np.asarray(gamma_res.mu)
pred_range = (float(mu.min()), float(mu.max()))

# %%
df = scot.data.copy()
df["high_unemp"] = df["UNEMPF"] > df["UNEMPF"].median()
by_unemp = df.groupby("high_unemp")["YES"].agg(["mean", "count"]).reset_index()
gauss_res = smf.glm("YES ~ COUTAX + UNEMPF + AGE", data=df).fit()
gauss_params = gauss_res.params.to_dict()
"""

NILE_ARIMA = """\
# %% [markdown]
# # Nile river flow: an ARMA(1, 1) and a five-year forecast

# %%
import pandas as pd
from statsmodels.datasets import nile
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.tsa.arima.model import ARIMA

# %%
nile_df = nile.load_pandas().data
nile_df["year"] = nile_df["year"].astype(int)
series = pd.Series(
    nile_df["volume"].to_numpy(),
    index=pd.period_range(start=str(nile_df["year"].iloc[0]), periods=len(nile_df), freq="Y"),
)
mean_flow = series.mean()

# %%
arima_res = ARIMA(series, order=(1, 0, 1)).fit()
arima_aic = arima_res.aic
ar_coef = float(arima_res.params["ar.L1"])

# %%
forecast = arima_res.get_forecast(steps=5)
forecast_mean = forecast.predicted_mean.round(3).tolist()
forecast_ci = forecast.conf_int().round(3)
lb = acorr_ljungbox(arima_res.resid, lags=[5, 10])
lb_pvalues = lb["lb_pvalue"].round(6).tolist()
forecast_ci
"""

CO2_HOLTWINTERS = """\
# %% [markdown]
# # Mauna Loa CO2: Holt-Winters on monthly means

# %%
import pandas as pd
import statsmodels.api as sm
from statsmodels.tsa.holtwinters import ExponentialSmoothing

# %%
co2 = sm.datasets.co2.load_pandas().data
n_missing = int(co2["co2"].isna().sum())
monthly = co2["co2"].resample("MS").mean().ffill()
n_months = len(monthly)

# %%
train = monthly[:"1995"]
test = monthly["1996":]
hw = ExponentialSmoothing(train, trend="add", seasonal="add", seasonal_periods=12).fit()
sse = hw.sse

# %%
forecast = hw.forecast(len(test))
mae = float((forecast - test).abs().mean())
forecast_frame = pd.DataFrame(
    {"month": forecast.index, "forecast": forecast.to_numpy().round(3), "actual": test.to_numpy()}
).head(12)
forecast_frame
"""

FAIR_AFFAIRS = """\
# %% [markdown]
# # Extramarital affairs survey (Fair, 1978)
# Descriptive tables first, then a logit with a categorical occupation.

# %%
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.datasets import fair

# %%
affairs = fair.load_pandas().data
affairs["had_affair"] = (affairs["affairs"] > 0).astype(int)
affair_rate = affairs["had_affair"].mean()

# %%
affairs["age_group"] = pd.cut(
    affairs["age"], bins=[17, 25, 35, 45], labels=["18-25", "26-35", "36-45"]
)

# %%
by_rating = (
    affairs.groupby("rate_marriage")
    .agg(n=("affairs", "size"), rate=("had_affair", "mean"), years=("yrs_married", "mean"))
    .round(4)
    .reset_index()
)
crosstab = pd.crosstab(affairs["children"] > 0, affairs["had_affair"], normalize="index").round(4)
religious_counts = affairs["religious"].value_counts().sort_index()
rate_by_age = affairs.groupby("age_group", observed=True)["had_affair"].mean().round(4).to_dict()

# %%
logit = smf.logit(
    "had_affair ~ rate_marriage + age + yrs_married + religious + C(occupation)", data=affairs
).fit(disp=0)
logit_params = logit.params.round(6)
logit_summary = {
    "llr_pvalue": logit.llr_pvalue,
    "prsquared": logit.prsquared,
    "nobs": int(logit.nobs),
}
"""

GRUNFELD_PANEL = """\
# %% [markdown]
# # Grunfeld investment panel: one regression per firm

# %%
import statsmodels.api as sm

# %%
grunfeld = sm.datasets.grunfeld.load_pandas().data
grunfeld["year"] = grunfeld["year"].astype(int)
firms = sorted(grunfeld["firm"].unique().tolist())
n_firms = len(firms)

# %%
def firm_slope(frame, x="value", y="invest"):
    X = sm.add_constant(frame[[x]])
    return float(sm.OLS(frame[y], X).fit().params[x])


def make_growth(column):
    def growth(frame):
        s = frame.sort_values("year")[column]
        return float(s.iloc[-1] / s.iloc[0] - 1)

    return growth


invest_growth = make_growth("invest")

# %%
slopes = {firm: firm_slope(g) for firm, g in grunfeld.groupby("firm")}
steepest = max(slopes, key=slopes.get)
growth_by_firm = {firm: round(invest_growth(g), 4) for firm, g in grunfeld.groupby("firm")}

# %%
panel = grunfeld.pivot(index="year", columns="firm", values="invest")
total_by_year = panel.sum(axis=1)
best_year = int(total_by_year.idxmax())
panel_tail = panel.tail(3).reset_index()
panel_tail.columns.name = None
"""

HEART_SURVIVAL = """\
# %% [markdown]
# # Stanford heart transplant survival

# %%
import numpy as np
import statsmodels.api as sm

# %%
heart = sm.datasets.heart.load_pandas().data
n_events = int(heart["censors"].sum())
median_age = heart["age"].median()

# %%
sf = sm.SurvfuncRight(heart["survival"], heart["censors"])
surv_table = sf.summary().head(10).reset_index()
median_survival = sf.quantile(0.5)

# %%
heart["group"] = np.where(heart["age"] > heart["age"].median(), "older", "younger")
groups = {name: sm.SurvfuncRight(g["survival"], g["censors"]) for name, g in heart.groupby("group")}
group_medians = {name: float(s.quantile(0.5)) for name, s in groups.items()}
stat, pvalue = sm.duration.survdiff(heart["survival"], heart["censors"], heart["group"])
logrank = {"statistic": float(stat), "pvalue": float(pvalue)}
"""

STACKLOSS_ROBUST = """\
# %% [markdown]
# # Stack loss: OLS versus Huber's robust regression

# %%
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import statsmodels.api as sm

# %%
stack = sm.datasets.stackloss.load_pandas()
X = sm.add_constant(stack.exog)
y = stack.endog

# %%
ols = sm.OLS(y, X).fit()
rlm = sm.RLM(y, X, M=sm.robust.norms.HuberT()).fit()
param_diff = (rlm.params - ols.params).round(6)
weights = np.asarray(rlm.weights)
outliers = [int(i) for i in np.flatnonzero(weights < 0.9)]

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.scatter(ols.fittedvalues, ols.resid, label="OLS")
ax.scatter(rlm.fittedvalues, rlm.resid, marker="x", label="Huber")
ax.axhline(0, color="grey", lw=0.5)
ax.legend()
max_abs_resid = {"ols": float(np.abs(ols.resid).max()), "huber": float(np.abs(rlm.resid).max())}
"""

ENGEL_QUANTILE = """\
# %% [markdown]
# # Engel curves by quantile regression
# Food expenditure against income, at five quantiles.

# %%
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.datasets import engel

# %%
engel_df = engel.load_pandas().data
income_quartiles = engel_df["income"].quantile([0.25, 0.5, 0.75]).round(3).tolist()

# %%
quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
rows = []
for q in quantiles:
    fit = smf.quantreg("foodexp ~ income", engel_df).fit(q=q)
    rows.append({"q": q, "intercept": fit.params["Intercept"], "slope": fit.params["income"]})
quantile_fits = pd.DataFrame(rows).round(6)
quantile_fits

# %%
def engel_curve(income, q_index=2):
    row = quantile_fits.iloc[q_index]
    return row["intercept"] + row["slope"] * income

# %%
ols_fit = smf.ols("foodexp ~ income", engel_df).fit()
ols_slope = ols_fit.params["income"]
slope_gap = float(quantile_fits["slope"].iloc[-1] - quantile_fits["slope"].iloc[0])
curve_points = [round(float(engel_curve(x)), 4) for x in (500, 1000, 2000)]
budget_share = {str(x): round(float(engel_curve(x) / x), 4) for x in (500, 1000, 2000)}
"""

NOTEBOOKS: dict[str, str] = {
    "diabetes_ols": DIABETES_OLS,
    "longley_formula": LONGLEY_FORMULA,
    "spector_logit": SPECTOR_LOGIT,
    "scotland_glm": SCOTLAND_GLM,
    "nile_arima": NILE_ARIMA,
    "co2_holtwinters": CO2_HOLTWINTERS,
    "fair_affairs": FAIR_AFFAIRS,
    "grunfeld_panel": GRUNFELD_PANEL,
    "heart_survival": HEART_SURVIVAL,
    "stackloss_robust": STACKLOSS_ROBUST,
    "engel_quantile": ENGEL_QUANTILE,
}
