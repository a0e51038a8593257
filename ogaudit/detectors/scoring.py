"""From outlier scores to the table a reviewer reads: ranks, flags of the budget, predicted and suggested labels.

:func:`score_table` is the one place that builds the per-sample table, for :func:`ogaudit.audit` (through the
pipeline) and for :func:`ogaudit.score` on arrays a user already holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ogaudit.data.dataset import RARE_CLASS_SIZE
from ogaudit.detectors.base import flag_budget


def score_table(
    score: np.ndarray,
    label_evidence: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Sequence[str],
    sample_ids: np.ndarray | None = None,
    budget: float = 0.05,
    true_labels: np.ndarray | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The per-sample table, one row per sample in the given order.

    Parameters
    ----------
    score : (N,) outlier scores, higher = more suspicious.
    label_evidence : (N, C) each sample's counterfactual outlier score under each class; the lowest is the
        suggested label.
    probs : (N, C) the model's softmax probabilities.
    labels : (N,) int given labels, indices into ``class_names``.
    class_names : C names; the label columns hold these names.
    sample_ids : (N,) ids; default the row numbers ``0 … N−1``.
    budget : fraction (0.05 = 5%) or count of samples to flag (:func:`~ogaudit.settings.budget_count`).
    true_labels : (N,) clean labels when noise was planted: adds ``true_label`` and ``is_noisy``.
    columns : more (N,) columns, added in order after ``rare_class``: the review's evidence
        (:func:`ogaudit.review.calibration.evidence_columns`: ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``,
        ``ambiguous``, ``flag_stability``), computed by the caller from the flags of :func:`flag_budget`.

    Returns
    -------
    DataFrame with ``sample_id, given_label, predicted_label, suggested_label, score, rank`` (1 = most suspicious),
    ``flagged, confidence`` (the model's probability of the given label) and ``rare_class`` (the given class has
    fewer than :data:`RARE_CLASS_SIZE` samples), then ``columns``, plus ``true_label, is_noisy`` with
    ``true_labels``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    flagged, rank = flag_budget(score, budget)
    names = np.asarray([str(name) for name in class_names], dtype=object)
    counts = np.bincount(labels, minlength=len(names))
    table = pd.DataFrame(
        {
            "sample_id": np.arange(n) if sample_ids is None else sample_ids,
            "given_label": names[labels],
            "predicted_label": names[np.asarray(probs).argmax(axis=1)],
            "suggested_label": names[np.asarray(label_evidence).argmin(axis=1)],
            "score": score,
            "rank": rank,
            "flagged": flagged,
            "confidence": np.asarray(probs)[np.arange(n), labels],
            "rare_class": counts[labels] < RARE_CLASS_SIZE,  # flagged maybe for being rare: a caveat beside the flag
        }
    )
    for name, values in (columns or {}).items():
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values for {n} samples.")
        table[name] = values
    if true_labels is not None:
        table["true_label"] = names[true_labels]
        table["is_noisy"] = np.asarray(true_labels) != labels
    return table
