"""How well flags find planted noise: AUROC, average precision, precision and recall at the budget."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ogaudit.settings import budget_count


def detection_metrics(is_noisy: np.ndarray, scores: np.ndarray, *, budget: float = 0.05) -> dict:
    """Scores against the truth (higher score = more suspicious); ``budget`` as in
    :func:`~ogaudit.detectors.base.flag_budget` (the same rule: :func:`~ogaudit.settings.budget_count`)."""
    is_noisy = np.asarray(is_noisy, dtype=bool)
    n = len(scores)
    top = np.argsort(-np.asarray(scores), kind="stable")[: budget_count(budget, n)]
    noisy = int(is_noisy.sum())
    if noisy in (0, n):
        return {"noisy": noisy}
    hits = int(is_noisy[top].sum())
    rate_top = np.argsort(-np.asarray(scores), kind="stable")[:noisy]
    return {
        "noisy": noisy,
        "auroc": float(roc_auc_score(is_noisy, scores)),
        "average_precision": float(average_precision_score(is_noisy, scores)),
        "precision_at_budget": hits / len(top),
        "recall_at_budget": hits / noisy,
        "precision_at_noise_rate": float(is_noisy[rate_top].mean()),
    }
