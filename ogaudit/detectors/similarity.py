"""Gradient-cosine scores (TracIn / LESS style): how well a sample's gradient agrees with the gradients of a
reference set, and the influence of every training sample on one test sample.

A training step on sample ``i`` changes the loss of sample ``j`` by about ``−η ⟨g_i, g_j⟩`` (TracIn, Pruthi et al.,
NeurIPS 2020); LESS (Xia et al., ICML 2024) ranks instruction-tuning data by the cosine of projected LoRA
gradients with a target set's. Here the target of a sample is its class: the mean *direction* of the reference
gradients of the same class (test samples when given, else the training samples of the class, the sample itself
left out). A sample whose gradient points away from what its class asks for is suspicious:

``score_i = −cos(g_i, mean_{j ∈ ref(y_i)} ĝ_j)``, higher = more suspicious, in [−1, 1].

Gradients are read through :class:`~ogaudit.gradients.GradientEvidence` (``directions()``, ``gradients(labels)``).
"""

from __future__ import annotations

import numpy as np

from ogaudit.errors import SettingsError


class GradientCosineDetector:
    """``−cos`` of each sample's gradient with its class's mean reference direction (see the module).

    Parameters
    ----------
    reference : (M, D) reference gradients (e.g. held-out test samples), or None to use the training samples
        themselves (leave-one-out).
    reference_labels : (M,) int class of each reference row; required with ``reference``.
    """

    def __init__(self, *, reference: np.ndarray | None = None, reference_labels: np.ndarray | None = None):
        self.reference = reference
        self.reference_labels = reference_labels

    def fit(self, evidence, *, progress=None, cancel=None) -> GradientCosineDetector:
        directions = evidence.directions()
        n_classes = evidence.n_classes
        if self.reference is None:
            reference, labels = directions, np.asarray(evidence.labels)
            self.leave_one_out_ = True
        else:
            if self.reference_labels is None or len(self.reference_labels) != len(self.reference):
                raise SettingsError("reference_labels must give one class per reference gradient row.")
            reference = _unit(np.asarray(self.reference, dtype=np.float32))
            labels = np.asarray(self.reference_labels)
            if reference.shape[1] != directions.shape[1]:
                raise SettingsError(
                    f"reference gradients have {reference.shape[1]} dimensions, the evidence {directions.shape[1]}; "
                    "project both with the same model and settings."
                )
            self.leave_one_out_ = False
        sums = np.zeros((n_classes, directions.shape[1]), dtype=np.float64)
        np.add.at(sums, labels, reference)
        self.sums_ = sums
        self.counts_ = np.bincount(labels, minlength=n_classes)
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        """(N,) ``−cos`` with the class mean; with ``labels``, each sample's counterfactual gradient under that
        label against that class's mean (last-layer evidence only: projected gradients are fixed to the given
        labels and raise :class:`SettingsError`)."""
        given = np.asarray(evidence.labels)
        own = evidence.directions().astype(np.float64)
        if labels is None:
            used, directions = given, own
        else:
            used = np.asarray(labels)
            directions = _unit(np.asarray(evidence.gradients(used), dtype=np.float64))
        target = self.sums_[used]
        if self.leave_one_out_:  # a training sample is not its own reference
            target = target - np.where((used == given)[:, None], own, 0.0)
        norms = np.linalg.norm(target, axis=1)
        cosine = np.einsum("nd,nd->n", directions, target) / np.maximum(norms, 1e-12)
        return -np.where(norms > 1e-12, cosine, 0.0)


def influence(train: np.ndarray, test: np.ndarray, *, normalise: bool = False) -> np.ndarray:
    """(M, N) TracIn-style influence of each of N training gradients on each of M test gradients:
    ``⟨g_test, g_train⟩`` (``normalise``: the cosine). Positive = a step on that training sample lowers the test
    loss (it *drives* that answer); negative = it pushes the answer away. Shapes: train (N, D), test (M, D)."""
    train = np.asarray(train, dtype=np.float32)
    test = np.atleast_2d(np.asarray(test, dtype=np.float32))
    if normalise:
        train, test = _unit(train), _unit(test)
    return test @ train.T


def class_detection(scores: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray) -> dict:
    """The paper's Table 3 measure (after DataInf, Kwon et al. 2024): for each test sample, do the training samples
    of its own class get the highest influence?

    ``scores`` (M, N) influence of each training sample on each test sample (higher = more influential). Returns
    ``{"auc": mean over test samples of the ROC AUC of scores separating same-class training samples from the
    rest, "recall": mean share of same-class samples among the top n_c (n_c = that class's training size)}``.
    """
    from sklearn.metrics import roc_auc_score

    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    aucs, recalls = [], []
    for row, label in zip(np.asarray(scores), test_labels, strict=True):
        same = train_labels == label
        if same.all() or not same.any():
            continue
        aucs.append(roc_auc_score(same, row))
        top = np.argsort(-row, kind="stable")[: int(same.sum())]
        recalls.append(float(same[top].mean()))
    return {
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
        "recall": float(np.mean(recalls)) if recalls else float("nan"),
        "test_samples": len(aucs),
    }


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
