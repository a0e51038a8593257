"""Per-sample gradients of the cross-entropy loss w.r.t. the last linear layer, in closed form.

For logits ``z = W h + b`` and ``L = CE(z, y)``: ``dL/dW = (softmax(z) − onehot(y)) hᵀ`` and
``dL/db = softmax(z) − onehot(y)``. Writing ``r = softmax(z) − onehot(y)`` (the *residual*, (N, C)) and
``h̃ = [h, 1]`` ((N, d + 1)), every sample's gradient is the outer product ``r ⊗ h̃``: one batched forward
pass gives all of them. Their norms factorise (``‖r ⊗ h̃‖ₚ = ‖r‖ₚ ‖h̃‖ₚ`` for p = 1, 2), so norm detectors
never build the (N, C·(d + 1)) matrix, and the map projects ``h̃`` before forming any outer product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F


@dataclass
class HeadEvidence:
    """What the last layer saw for every sample: enough to rebuild any last-layer gradient.

    Implements :class:`~ogaudit.gradients.GradientEvidence` with counterfactual labels.

    Attributes
    ----------
    features : (N, d + 1) float32, the penultimate features with a trailing 1 for the bias (``h̃``).
    probs : (N, C) float32, softmax of the logits.
    labels : (N,) int64, the given labels.
    """

    features: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    counterfactual: ClassVar[bool] = True

    @classmethod
    def from_head(cls, features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> HeadEvidence:
        """Build from penultimate features ``h`` (N, d) and logits (N, C)."""
        probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1).numpy()
        ones = np.ones((len(features), 1), dtype=np.float32)
        return cls(np.hstack([features.astype(np.float32), ones]), probs, np.asarray(labels, dtype=np.int64))

    @property
    def n_classes(self) -> int:
        return self.probs.shape[1]

    def residuals(self, labels: np.ndarray | None = None) -> np.ndarray:
        """``softmax(z) − onehot(y)``, (N, C); ``labels`` overrides the given ones (counterfactuals)."""
        labels = self.labels if labels is None else labels
        residual = self.probs.copy()
        residual[np.arange(len(labels)), labels] -= 1.0
        return residual

    def gradients(self, labels: np.ndarray | None = None, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The flattened last-layer gradients ``[dL/dW, dL/db]`` as (n, C·(d + 1)) float32, rows ``index``.

        The layout is ``vec`` of the (C, d + 1) matrix ``r h̃ᵀ``: weight columns then the bias column per class.
        """
        residual = self.residuals(labels)[index]
        features = self.features[index]
        return np.einsum("nc,nd->ncd", residual, features, optimize=False).reshape(len(residual), -1)

    def gradient_norms(self, order: int, labels: np.ndarray | None = None) -> np.ndarray:
        """``‖r ⊗ h̃‖`` for ``order`` 1 or 2 without building the gradients, (N,)."""
        residual = self.residuals(labels)
        return np.linalg.norm(residual, ord=order, axis=1) * np.linalg.norm(self.features, ord=order, axis=1)

    def directions(self) -> np.ndarray:
        """(N, d) float32: the features ``h`` (bias column dropped) scaled to unit length."""
        return _unit_rows(self.features[:, :-1])

    def map_vectors(self, dim: int, *, seed: int = 0, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(n, C·k) float32 gradients of ``rows`` (default: all N) with the feature factor projected to ``k``
        dimensions, C·k ≤ max(dim, C).

        ``cos(r_i ⊗ h̃_i, r_j ⊗ h̃_j) = cos(r_i, r_j) · cos(h̃_i, h̃_j)``, so projecting ``h̃`` with a Gaussian
        matrix (Johnson-Lindenstrauss) keeps the gradients' cosines approximately, and only (n, C·k) is ever
        built. When the full gradient has at most ``dim`` entries (``k = d + 1``) the rows are exact. The
        projection depends on ``seed`` only, so rows asked for in parts equal the rows asked for at once.
        """
        n_classes = self.probs.shape[1]
        width = self.features.shape[1]
        k = width if n_classes * width <= dim else max(1, dim // n_classes)
        projection = None
        if k < width:
            rng = np.random.default_rng(seed)
            projection = (rng.standard_normal((width, k)) / np.sqrt(k)).astype(np.float32)
        positions = np.arange(len(self.labels))[rows]
        out = np.empty((len(positions), n_classes * k), dtype=np.float32)
        for start in range(0, len(positions), MAP_CHUNK):
            part = positions[start : start + MAP_CHUNK]
            residual = self.probs[part].astype(np.float32)
            residual[np.arange(len(part)), self.labels[part]] -= 1.0
            features = self.features[part] if projection is None else self.features[part] @ projection
            out[start : start + len(part)] = np.einsum("nc,nd->ncd", residual, features, optimize=False).reshape(
                len(part), -1
            )
        return out


MAP_CHUNK = 8192


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]  # no (N, d) temporary, unlike linalg.norm
    return vectors / np.maximum(norms, 1e-12)


def reference_last_layer_gradients(model, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The paper's way: one ``autograd.grad`` call per sample (batch size 1), (N, C·(d + 1)).

    Slow on purpose; tests compare the closed form with it.
    """
    model.eval()
    head = model.head
    rows = []
    for i in range(len(labels)):
        logits = model(torch.as_tensor(x[i : i + 1]))
        loss = F.cross_entropy(logits, torch.as_tensor(labels[i : i + 1]))
        weight_grad, bias_grad = torch.autograd.grad(loss, [head.weight, head.bias])
        rows.append(torch.cat([weight_grad, bias_grad[:, None]], dim=1).reshape(-1).numpy())
    return np.stack(rows)
