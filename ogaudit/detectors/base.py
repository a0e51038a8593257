"""What a detector is: the :class:`Detector` contract every outlier score follows, and the one flag-budget rule.

One score direction everywhere in ogaudit: **higher = more likely a detrimental (mislabelled) sample.** The contract
is scikit-learn's estimator contract (``sklearn.ensemble.IsolationForest``) written down as a
:class:`typing.Protocol`, so a user's own detector needs no base class: ``__init__`` only stores keyword arguments;
``fit`` validates, learns what it needs (learned state ends in ``_``) and returns ``self``; ``outlier_scores``
scores every sample of the evidence it was fitted on.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np

from ogaudit.gradients import GradientEvidence
from ogaudit.progress import ProgressCallback
from ogaudit.settings import budget_count

__all__ = ["Detector", "NeighbourBased", "PosteriorDetector", "flag_budget"]


@runtime_checkable
class Detector(Protocol):
    """An outlier score over per-sample gradient evidence (:class:`~ogaudit.gradients.GradientEvidence`)."""

    def fit(
        self,
        evidence: GradientEvidence,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Detector:
        """Learn from the evidence of N samples; returns ``self``.

        ``progress("detect", fraction, message)`` is called and ``cancel`` checked between chunks of work
        (:class:`~ogaudit.errors.Cancelled`). Raises :class:`~ogaudit.errors.SettingsError` for a bad parameter.
        """
        ...

    def outlier_scores(self, evidence: GradientEvidence, labels: np.ndarray | None = None) -> np.ndarray:
        """(N,) float64 scores, higher = more suspicious, of the evidence ``fit`` saw.

        ``labels`` (N,) int64 class indices in place of the given labels: the score of the counterfactual
        gradient "if this sample were labelled ``labels[i]``" (evidence with ``counterfactual`` True only).
        """
        ...


@runtime_checkable
class PosteriorDetector(Detector, Protocol):
    """A detector whose score is ``−log π(label)`` of a posterior ``π`` over the classes: every counterfactual
    score comes from one ``π`` instead of a pass per class."""

    def posterior(self, evidence: GradientEvidence) -> np.ndarray:
        """``π`` (N, C) float64, rows summing to 1."""
        ...


@runtime_checkable
class NeighbourBased(Detector, Protocol):
    """A detector that searched each sample's nearest gradient neighbours; the review shows them as evidence."""

    def gradient_neighbours(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(positions (N, k) int64, cosines (N, k) float32)``, most similar first; None before ``fit``."""
        ...


def flag_budget(scores: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Rank samples (1 = most suspicious) and flag the top ``budget``.

    ``budget`` below 1 is a fraction of the data (0.05 = 5%); 1 or more is a count.
    Returns ``(flagged (N,) bool, rank (N,) int)``; ties keep data order.
    """
    n = len(scores)
    count = budget_count(budget, n)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    return rank <= count, rank
