"""Detectors that read how training went, not only where it ended: the training trajectory
(:class:`~ogaudit.models.training.Trajectory`, recorded per epoch at no extra pass) and the features of an early
checkpoint, which have not fitted the wrong labels yet.

One score direction everywhere in ogaudit: **higher = more likely a detrimental (mislabelled) sample.**

* ``aum`` (:class:`AumDetector`): minus the area under the margin, the logit margin of the given label averaged
  over the epochs (Pleiss et al. 2020, "Identifying mislabeled data using the area under the margin ranking");
* ``margin`` (:class:`MarginDetector`): minus the in-training probability margin averaged over the epochs
  (Pickler et al. 2025, arXiv 2510.16211, who rank detectors by false negatives at the noise rate);
* ``checkpoints`` (:class:`CheckpointEnsembleDetector`): ``−log p̄(y)``, ``p̄`` the softmax averaged over the
  epochs' checkpoints, each sample scored in the batch that trained on it (an ensemble of checkpoints, as TracIn
  sums over several);
* ``simifeat`` (:class:`EarlyNeighbourDetector`): neighbour voting on features that did not fit the noise
  (SimiFeat, Zhu et al. 2022): the labels of each sample's ``k`` nearest neighbours in the early checkpoint's
  features (or a frozen pretrained backbone's);
* ``dynamics`` (:class:`DynamicsPosteriorDetector`): the two last fused as ``posterior`` fuses the final softmax
  and the gradient neighbours: ``π ∝ p̄ ⊙ q_early``.

Each takes the trajectory as a constructor argument (the pipeline passes the one of the training that made the
model: :func:`~ogaudit.pipeline.stages.training_dynamics`); a model with none (a user's checkpoint) is refused by
``fit`` with the fix. Every score comes from the one training that made the audited model.
"""

from __future__ import annotations

import numpy as np

from ogaudit.detectors.neighbours import EXACT_CHUNK, nearest_neighbours
from ogaudit.errors import SettingsError

__all__ = [
    "AumDetector",
    "CheckpointEnsembleDetector",
    "DynamicsPosteriorDetector",
    "EarlyNeighbourDetector",
    "MarginDetector",
]

NO_TRAJECTORY = (
    "The {name!r} detector reads the training trajectory, which this model does not have (a user's checkpoint, or "
    "more samples × classes than a trajectory is kept for). Choose a detector that needs no training run, such as "
    "'posterior'."
)


def _labels(evidence, labels) -> np.ndarray:
    return np.asarray(evidence.labels if labels is None else labels)


def _checked(trajectory, evidence, name: str, *, features: bool = False):
    if trajectory is None or (features and trajectory.early_features is None):
        raise SettingsError(NO_TRAJECTORY.format(name=name))
    if trajectory.margins.shape[1] != len(evidence.labels):
        raise SettingsError(
            f"The trajectory holds {trajectory.margins.shape[1]} samples but the evidence {len(evidence.labels)}; "
            "pass the trajectory of the training that made this evidence."
        )
    return trajectory


class AumDetector:
    """Minus the area under the margin: ``−mean_e (z_y − max_{k≠y} z_k)`` over the epochs' in-training logits.

    A wrong label is learnt late and against the clean majority's pull, so its margin stays low or negative for
    most of training even when the final model has memorised it. Higher = more suspicious; (N,) float64.
    """

    name = "aum"

    def __init__(self, *, trajectory=None):
        self.trajectory = trajectory

    def fit(self, evidence, *, progress=None, cancel=None) -> AumDetector:
        self.trajectory_ = _checked(self.trajectory, evidence, self.name)
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        return -self.trajectory_.aum(_labels(evidence, labels))


class MarginDetector(AumDetector):
    """Minus the probability margin ``p_y − max_{k≠y} p_k`` averaged over the epochs, in [−1, 1] before the sign
    flip. Higher = more suspicious; (N,) float64."""

    name = "margin"

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        return -self.trajectory_.mean_margin(_labels(evidence, labels))


class CheckpointEnsembleDetector:
    """``−log p̄(y)``: ``p̄`` (N, C) the in-training softmax averaged over the epochs' checkpoints. Higher = more
    suspicious. A :class:`~ogaudit.detectors.base.PosteriorDetector` (``posterior`` = ``p̄``)."""

    name = "checkpoints"

    def __init__(self, *, trajectory=None):
        self.trajectory = trajectory

    def fit(self, evidence, *, progress=None, cancel=None) -> CheckpointEnsembleDetector:
        self.trajectory_ = _checked(self.trajectory, evidence, self.name)
        return self

    def posterior(self, evidence) -> np.ndarray:
        return self.trajectory_.mean_probs()

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = _labels(evidence, labels)
        probs = self.posterior(evidence)
        return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


class EarlyNeighbourDetector:
    """Neighbour voting on features that did not fit the noise: ``−log q(y)``, ``q`` the Laplace-smoothed label
    histogram of the ``k`` nearest samples (cosine) in the early checkpoint's features,
    ``q_c = (#neighbours labelled c + 1) / (k + C)``. Higher = more suspicious.

    A :class:`~ogaudit.detectors.base.PosteriorDetector` (``posterior`` = ``q``). Fitted: ``neighbours_`` (N, k)
    positions and ``cosines_`` (N, k), most similar first. ``chunk``: rows per product of the exact search.
    """

    name = "simifeat"

    def __init__(self, *, k: int = 20, trajectory=None, chunk: int = EXACT_CHUNK):
        self.k = k
        self.trajectory = trajectory
        self.chunk = chunk

    def fit(self, evidence, *, progress=None, cancel=None):
        if self.k < 1:
            raise SettingsError(f"k must be at least 1; got {self.k}.")
        trajectory = self.trajectory_ = _checked(self.trajectory, evidence, self.name, features=True)
        features = np.asarray(trajectory.early_features, dtype=np.float32)
        directions = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        self.labels_ = np.asarray(evidence.labels).copy()
        self.n_classes_ = evidence.n_classes
        if len(directions) < 2:
            self.neighbours_ = np.zeros((len(directions), 0), dtype=np.int64)
            self.cosines_ = np.zeros((len(directions), 0), dtype=np.float32)
            return self
        self.neighbours_, self.cosines_ = nearest_neighbours(
            directions, self.k, progress=progress, cancel=cancel, stage="detect", chunk=self.chunk
        )
        return self

    def posterior(self, evidence) -> np.ndarray:
        n = len(self.neighbours_)
        if len(evidence.labels) != n:
            raise SettingsError(
                f"This detector was fitted on {n} samples but is asked to score {len(evidence.labels)}; fit it on "
                "the evidence you score."
            )
        votes = np.arange(n)[:, None] * self.n_classes_ + self.labels_[self.neighbours_]
        counts = np.bincount(votes.ravel(), minlength=n * self.n_classes_).reshape(n, self.n_classes_) + 1.0
        return counts / counts.sum(axis=1, keepdims=True)

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = _labels(evidence, labels)
        return -np.log(self.posterior(evidence)[np.arange(len(labels)), labels])


class DynamicsPosteriorDetector(EarlyNeighbourDetector):
    """``−log π(y)`` with ``π ∝ p̄ ⊙ q``: the checkpoint ensemble's softmax ``p̄``
    (:class:`CheckpointEnsembleDetector`) times the early-feature neighbours' smoothed label histogram ``q``
    (:class:`EarlyNeighbourDetector`). Neither view has fitted the wrong labels as the final model has: ``p̄``
    remembers the epochs before memorisation, ``q`` comes from features learnt before it. Higher = more
    suspicious; a :class:`~ogaudit.detectors.base.PosteriorDetector`."""

    name = "dynamics"

    def posterior(self, evidence) -> np.ndarray:
        fused = super().posterior(evidence) * self.trajectory_.mean_probs()
        return fused / np.maximum(fused.sum(axis=1, keepdims=True), 1e-300)
