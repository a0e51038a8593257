"""ogaudit from Python: audit data you hold in memory, score a model you trained yourself, review the flags.

The README's "Python API" example. It writes only under a new temporary folder it creates, and runs in about
half a minute on two CPU cores.
"""

import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

import ogaudit

work = Path(tempfile.mkdtemp(prefix="ogaudit-example-"))  # the project, cache and exports go here

# Data in memory: 1,797 handwritten digits as (N, 64) vectors, with 10% of the labels flipped on purpose.
digits = load_digits()
x, y = digits.data, digits.target
rng = np.random.default_rng(0)
flipped = rng.choice(len(y), size=len(y) // 10, replace=False)
noisy = y.copy()
noisy[flipped] = (y[flipped] + rng.integers(1, 10, size=len(flipped))) % 10

# 1. Audit: train a model, take each sample's last-layer loss gradient, flag the outliers (5% by default).
settings = ogaudit.AuditSettings(epochs=3, map_method="pca")
result = ogaudit.audit((x, noisy), settings, out_dir=work / "project", cache_dir=work / "cache")
flags = result.scores[result.scores["flagged"]].sort_values("rank")
print(flags[["sample_id", "given_label", "suggested_label", "score"]].head())
planted = flags["sample_id"].astype(int).isin(flipped)
print(f"{planted.mean():.0%} of the {len(flags)} flagged samples carry a planted wrong label")

# 2. Score a model you trained yourself (no training here): the features its last linear layer reads (for a
#    logistic regression, its inputs), out-of-fold probabilities and the given labels.
probs = cross_val_predict(LogisticRegression(max_iter=2000), x / 16, noisy, cv=5, method="predict_proba")
issues = ogaudit.score(x / 16, probs, noisy)
print(issues.sort_values("rank").head()[["sample_id", "given_label", "suggested_label", "p_wrong"]])

# 3. Review from the notebook, in the project the audit wrote (the app and `ogaudit decisions` open it too).
project = ogaudit.Project(work / "project")
top = flags[flags["suggested_label"] != flags["given_label"]].iloc[0]
project.decide("confirm", top["sample_id"], annotator="me", note="the suggestion is right")
print(project.decisions()[["sample_id", "given_label", "action", "final_label"]])
project.export_decisions(work / "decisions.csv")
split = project.export_split(work / "cleaned", data=(x, noisy))  # in-memory data: give it again
print(split["counts"], "->", work / "cleaned" / split["data"])
