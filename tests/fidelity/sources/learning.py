"""Notebooks that train scikit-learn models on its bundled datasets (jupytext percent format)."""

from __future__ import annotations

IRIS_LOGREG = """\
# %% [markdown]
# # Iris species: a scaled logistic regression
# A quick baseline before trying anything fancier.

# %%
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

np.random.seed(42)

# %%
iris = load_iris(as_frame=True)
df = iris.frame.copy()
df["species"] = df["target"].map(dict(enumerate(iris.target_names)))
n_rows, n_cols = df.shape
class_counts = df["species"].value_counts().sort_index()
feature_cols = list(iris.feature_names)

# %%
X_train, X_test, y_train, y_test = train_test_split(
    df[feature_cols], df["target"], test_size=0.3, random_state=42, stratify=df["target"]
)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))
model.fit(X_train, y_train)
test_accuracy = model.score(X_test, y_test)
y_pred = model.predict(X_test)
cm = confusion_matrix(y_test, y_pred)
per_class_recall = {name: float(cm[i, i] / cm[i].sum()) for i, name in enumerate(iris.target_names)}
cv_scores = cross_val_score(model, df[feature_cols], df["target"], cv=5)
cv_mean, cv_std = cv_scores.mean(), cv_scores.std()
print(f"5-fold accuracy: {cv_mean:.3f} +/- {cv_std:.3f}")

# %% [markdown]
# Are the predictions stable when the measurements are a little noisy?

# %%
noisy = X_test + np.random.normal(0, 0.05, size=X_test.shape)
stable_fraction = float((model.predict(noisy) == y_pred).mean())
stable_fraction
"""

WINE_FOREST = """\
# %% [markdown]
# # Wine cultivars with a random forest

# %%
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import train_test_split

# %%
wine = load_wine(as_frame=True)
X, y = wine.data, wine.target
class_balance = y.value_counts(normalize=True).sort_index().round(4).to_dict()

# %%
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
forest = RandomForestClassifier(n_estimators=40, random_state=0)
forest.fit(X_train, y_train)
train_acc = forest.score(X_train, y_train)
test_acc = forest.score(X_test, y_test)
importances = pd.Series(forest.feature_importances_, index=X.columns)
importances = importances.sort_values(ascending=False)
top_features = importances.head(5).index.tolist()
importance_values = importances.to_numpy()

# %%
y_pred = forest.predict(X_test)
cm = confusion_matrix(y_test, y_pred)
macro_f1 = f1_score(y_test, y_pred, average="macro")
proba = forest.predict_proba(X_test[:5]).round(4)
"""

CANCER_GRIDSEARCH = """\
# %% [markdown]
# # Breast cancer: PCA + SVC, tuned by grid search

# %%
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.metrics import classification_report, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

# %%
X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=7, stratify=y)
shapes = {"train": list(X_train.shape), "test": list(X_test.shape)}

# %%
pipe = Pipeline(
    [("scale", StandardScaler()), ("pca", PCA(n_components=10, random_state=0)), ("svc", SVC())]
)
grid = GridSearchCV(
    pipe,
    {"svc__C": [0.5, 1.0, 4.0], "svc__kernel": ["linear", "rbf"]},
    cv=StratifiedKFold(4, shuffle=True, random_state=0),
)
grid.fit(X_train, y_train)
best_params = grid.best_params_
best_cv = grid.best_score_
cv_table = pd.DataFrame(grid.cv_results_)[["mean_test_score", "std_test_score", "rank_test_score"]]

# %%
decision = grid.decision_function(X_test)
auc = roc_auc_score(y_test, decision)
report = classification_report(y_test, grid.predict(X_test), output_dict=True)
explained = grid.best_estimator_.named_steps["pca"].explained_variance_ratio_
"""

DIGITS_KNN = """\
# %% [markdown]
# # Handwritten digits with k nearest neighbours

# %%
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

# %%
digits = load_digits()
images = digits.images
n_samples = len(images)
first_image = images[0].astype(np.uint8)

# %%
X = images.reshape(n_samples, -1) / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, random_state=1
)
t0 = time.time()
knn = KNeighborsClassifier(n_neighbors=3).fit(X_train, y_train)
accuracy = knn.score(X_test, y_test)
elapsed = time.time() - t0
print(f"accuracy {accuracy:.4f} in {elapsed:.2f} s")

# %%
y_pred = knn.predict(X_test)
wrong = np.flatnonzero(y_pred != y_test)
n_wrong = len(wrong)
confusions = [(int(y_test[i]), int(y_pred[i])) for i in wrong]

# %%
per_digit = {}
for d in range(10):
    mask = y_test == d
    per_digit[str(d)] = round(float((y_pred[mask] == d).mean()), 4)
per_digit
"""

TEXT_TFIDF = """\
# %% [markdown]
# # What makes a review positive? Word counts and TF-IDF

# %%
import re
from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

# %%
reviews = [
    "The espresso was rich and the staff were friendly.",
    "Cold coffee, rude service, and a long wait.",
    "Lovely pastries and a quiet corner to read in.",
    "The latte was burnt and the croissant was stale.",
    "Friendly baristas, great music, excellent flat white.",
    "Overpriced and noisy; I will not come back.",
    "Great value lunch and the soup was excellent.",
    "The tables were dirty and the tea was weak.",
    "Excellent cappuccino, friendly smile, quick service.",
    "Stale bread, weak coffee, and nowhere to sit.",
    "A great place to work for a few hours.",
    "Long queue, rude cashier, lukewarm mocha.",
]
labels = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
STOPWORDS = {"the", "a", "and", "was", "were", "to", "for", "in", "i", "will", "not", "of"}

# %%
def tokenize(text):
    return [t for t in re.findall(r"[a-z']+", text.lower()) if t not in STOPWORDS]

# %%
token_counts = Counter(t for r in reviews for t in tokenize(r))
top_words = token_counts.most_common(8)
vocabulary_size = len(token_counts)
vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
tfidf = vectorizer.fit_transform(reviews)
matrix_shape = tfidf.shape
terms = vectorizer.get_feature_names_out()
positive = np.array(labels) == 1
gap = np.asarray(tfidf[positive].mean(axis=0) - tfidf[~positive].mean(axis=0)).ravel()
order = np.argsort(gap, kind="stable")
most_positive = [str(terms[i]) for i in order[-5:][::-1]]
most_negative = [str(terms[i]) for i in order[:5]]

# %%
def classify(text):
    words = set(tokenize(text))
    score = sum(w in words for w in most_positive) - sum(w in words for w in most_negative)
    return "positive" if score >= 0 else "negative"

# %%
verdicts = {f"review_{i}": classify(r) for i, r in enumerate(reviews[:4])}
matches = [(classify(r) == "positive") == bool(lab) for r, lab in zip(reviews, labels, strict=True)]
agreement = float(np.mean(matches))
"""

COPPER_PCA = """\
# %% [markdown]
# # World copper market: principal components, by hand and with scikit-learn

# %%
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from statsmodels.datasets import copper

# %%
copper_df = copper.load_pandas().data
X = copper_df.drop(columns=["TIME", "WORLDCONSUMPTION"])
Xc = (X - X.mean()) / X.std()
cov = np.cov(Xc.to_numpy(), rowvar=False)

# %%
eigvals, eigvecs = np.linalg.eigh(cov)
order = np.argsort(eigvals)[::-1]
explained_manual = (eigvals[order] / eigvals.sum()).round(6)
pca = PCA().fit(Xc)
explained_sklearn = pca.explained_variance_ratio_.round(6)
agree = bool(np.allclose(explained_manual, explained_sklearn))
loadings = pd.DataFrame(pca.components_[:2].T, index=X.columns, columns=["pc1", "pc2"]).round(4)
loadings = loadings.reset_index().rename(columns={"index": "variable"})

# %%
copper_df["pc1"] = pca.transform(Xc)[:, 0]

# %%
top_pc1_years = copper_df.sort_values("pc1", ascending=False)["TIME"].head(3).astype(int).tolist()
"""

NOTEBOOKS: dict[str, str] = {
    "iris_logreg": IRIS_LOGREG,
    "wine_forest": WINE_FOREST,
    "cancer_gridsearch": CANCER_GRIDSEARCH,
    "digits_knn": DIGITS_KNN,
    "text_tfidf": TEXT_TFIDF,
    "copper_pca": COPPER_PCA,
}
