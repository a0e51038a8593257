"""Outlier detectors over per-sample gradients, and the baselines they are compared with.

One score direction everywhere in ogaudit: **higher = more likely a detrimental (mislabelled) sample.**

Every detector follows the scikit-learn estimator contract: ``__init__`` only stores keyword arguments,
``fit(evidence)`` learns what it needs and returns ``self`` (learned state ends in ``_``), and
``outlier_scores(evidence, labels=None)`` scores every sample. ``labels`` replaces the given labels to score a
*counterfactual* gradient ("what if this sample were class c?"), which is how labels are suggested.
Evidence is a :class:`~ogaudit.gradients.HeadEvidence` (last layer, closed form) or a :class:`MatrixEvidence`
(projected gradients of chosen layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from ogaudit.errors import SettingsError

SCORE_CHUNK = 8192
FIT_ROWS = 20_000
"""IsolationForest trees see 256 rows each: fitting on a 20k-row random subset changes nothing but memory."""


@dataclass
class MatrixEvidence:
    """Precomputed gradient vectors (e.g. projected multi-layer gradients), (N, D), with the model's probs."""

    matrix: np.ndarray
    probs: np.ndarray
    labels: np.ndarray

    @property
    def n_classes(self) -> int:
        return self.probs.shape[1]

    def gradients(self, labels: np.ndarray | None = None, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        if labels is not None:
            raise SettingsError("Counterfactual labels need last-layer evidence; projected gradients are fixed.")
        return np.asarray(self.matrix[index], dtype=np.float32)

    def gradient_norms(self, order: int, labels: np.ndarray | None = None) -> np.ndarray:
        if labels is not None:
            raise SettingsError("Counterfactual labels need last-layer evidence; projected gradients are fixed.")
        return np.concatenate(
            [
                np.linalg.norm(self.gradients(index=slice(s, s + SCORE_CHUNK)), ord=order, axis=1)
                for s in range(0, len(self.labels), SCORE_CHUNK)
            ]
        )


class NormDetector:
    """Rank by the gradient's Lp norm (the paper's L1 / L2 variants). Higher = more suspicious."""

    def __init__(self, *, order: int = 2):
        self.order = order

    def fit(self, evidence) -> NormDetector:
        if self.order not in (1, 2):
            raise SettingsError(f"order must be 1 or 2; got {self.order}.")
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        return evidence.gradient_norms(self.order, labels)


class IsolationForestDetector:
    """IsolationForest on the gradient vectors (the paper's default); ``per_class`` fits one forest per given
    class and scores each sample with the forest of its (given or counterfactual) label.

    Score = ``-IsolationForest.score_samples``, in (0, 1): higher = more isolated = more suspicious.
    """

    def __init__(self, *, per_class: bool = False, n_estimators: int = 100, random_state: int = 0):
        self.per_class = per_class
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, evidence) -> IsolationForestDetector:
        rng = np.random.default_rng(self.random_state)
        groups = (
            {c: np.flatnonzero(evidence.labels == c) for c in range(evidence.n_classes)}
            if self.per_class
            else {None: np.arange(len(evidence.labels))}
        )
        self.forests_ = {}
        for key, rows in groups.items():
            if len(rows) < 2:
                continue
            if len(rows) > FIT_ROWS:
                rows = np.sort(rng.choice(rows, FIT_ROWS, replace=False))
            forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=1)
            self.forests_[key] = forest.fit(evidence.gradients(index=rows))
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels_used = evidence.labels if labels is None else labels
        scores = np.empty(len(evidence.labels), dtype=np.float64)
        for start in range(0, len(scores), SCORE_CHUNK):
            rows = slice(start, start + SCORE_CHUNK)
            vectors = evidence.gradients(labels, index=rows)
            if not self.per_class:
                scores[rows] = -self.forests_[None].score_samples(vectors)
                continue
            chunk_labels = labels_used[rows]
            chunk_scores = np.ones(len(chunk_labels))  # a class without a forest: maximally unusual
            for c in np.unique(chunk_labels):
                if int(c) in self.forests_:
                    mask = chunk_labels == c
                    chunk_scores[mask] = -self.forests_[int(c)].score_samples(vectors[mask])
            scores[rows] = chunk_scores
        return scores


class LossDetector:
    """Baseline: the per-sample cross-entropy loss ``-log p(given label)``. Higher = more suspicious."""

    def fit(self, evidence) -> LossDetector:
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = evidence.labels if labels is None else labels
        return -np.log(np.clip(evidence.probs[np.arange(len(labels)), labels], 1e-12, None))


class SelfConfidenceDetector:
    """Baseline in the style of cleanlab's self-confidence: ``1 - p(given label)``. Higher = more suspicious."""

    def fit(self, evidence) -> SelfConfidenceDetector:
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = evidence.labels if labels is None else labels
        return 1.0 - evidence.probs[np.arange(len(labels)), labels]


DETECTORS = {
    "l2": lambda seed: NormDetector(order=2),
    "l1": lambda seed: NormDetector(order=1),
    "iforest": lambda seed: IsolationForestDetector(random_state=seed),
    "iforest-per-class": lambda seed: IsolationForestDetector(per_class=True, random_state=seed),
    "loss": lambda seed: LossDetector(),
    "self-confidence": lambda seed: SelfConfidenceDetector(),
}
GRADIENT_DETECTORS = ("l2", "l1", "iforest", "iforest-per-class")
DEFAULT_DETECTOR = "l2"


def make_detector(name: str, *, seed: int = 0):
    """The detector called ``name``; the error lists the valid names."""
    if name not in DETECTORS:
        raise SettingsError(f"detector {name!r} is not one of {sorted(DETECTORS)}.")
    return DETECTORS[name](seed)


def counterfactual_scores(detector, evidence) -> np.ndarray:
    """(N, C): each sample's outlier score if its label were each class in turn."""
    columns = [detector.outlier_scores(evidence, np.full(len(evidence.labels), c)) for c in range(evidence.n_classes)]
    return np.stack(columns, axis=1)


def flag_budget(scores: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Rank samples (1 = most suspicious) and flag the top ``budget``.

    ``budget`` below 1 is a fraction of the data (0.05 = 5%); 1 or more is a count.
    Returns ``(flagged (N,) bool, rank (N,) int)``; ties keep data order.
    """
    n = len(scores)
    if budget <= 0 or (budget >= 1 and budget != int(budget)):
        raise SettingsError(f"budget must be a fraction in (0, 1) or a whole count ≥ 1; got {budget}.")
    count = int(budget) if budget >= 1 else int(round(budget * n))
    count = min(max(count, 1), n)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    return rank <= count, rank
