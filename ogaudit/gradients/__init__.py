"""Per-sample loss gradients, as the evidence every detector and the map read.

Two implementations play one role, :class:`GradientEvidence`:

* :class:`~ogaudit.gradients.closed_form.HeadEvidence`: the last linear layer in closed form,
  ``(softmax(z) − onehot(y)) ⊗ [h, 1]``, kept factored (features and probabilities), so that any sample's gradient
  under any label (a *counterfactual*) can be rebuilt and norms need no outer product;
* :class:`~ogaudit.gradients.layers.ProjectedEvidence`: gradients of chosen layers, randomly projected to ``D``
  dimensions by the hook-based engine in :mod:`ogaudit.gradients.layers`, fixed to the given labels.

Detectors (:mod:`ogaudit.detectors.outliers`) and the map (:mod:`ogaudit.map.layout`) use only this interface.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ogaudit.gradients.closed_form import HeadEvidence, reference_last_layer_gradients
from ogaudit.gradients.layers import ProjectedEvidence

__all__ = ["GradientEvidence", "HeadEvidence", "ProjectedEvidence", "reference_last_layer_gradients"]


@runtime_checkable
class GradientEvidence(Protocol):
    """Per-sample gradients of N samples over C classes, as detectors and the map read them.

    Attributes
    ----------
    labels : (N,) int64, the given labels.
    probs : (N, C) float32, the model's softmax (the factor ``p − e_y`` of a last-layer gradient).
    counterfactual : True when :meth:`gradients` and :meth:`gradient_norms` accept other ``labels`` than the
        given ones (last-layer evidence); False for fixed (projected) gradients, which raise
        :class:`~ogaudit.errors.SettingsError` when asked.
    """

    labels: np.ndarray
    probs: np.ndarray
    counterfactual: bool

    @property
    def n_classes(self) -> int:
        """C, the number of classes."""
        ...

    def gradients(self, labels: np.ndarray | None = None, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(n, D) float32 gradient vectors of rows ``index``, under ``labels`` (default: the given labels)."""
        ...

    def gradient_norms(self, order: int, labels: np.ndarray | None = None) -> np.ndarray:
        """(N,) L1 (``order=1``) or L2 (``order=2``) norms of every sample's gradient, without materialising all."""
        ...

    def directions(self) -> np.ndarray:
        """(N, d) float32 unit rows whose cosines are the label-free part of gradient similarity.

        Neighbour searches run on these: for last-layer evidence the feature factor ``h`` (the same for every
        label, so one search serves all counterfactuals); for projected gradients the rows themselves.
        """
        ...

    def map_vectors(self, dim: int, *, seed: int = 0, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(n, D') float32 rows for ``rows`` (default: all N), D' ≤ max(dim, C), whose cosines approximate those
        of the full gradients; the same for a row asked for alone or with all others.

        What the gradient map lays out. Never builds the full (N, C·(d + 1)) gradients when they exceed ``dim``.
        """
        ...
