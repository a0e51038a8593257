"""Outlier detectors over per-sample gradients, and the baselines they are compared with.

One score direction everywhere in ogaudit: **higher = more likely a detrimental (mislabelled) sample.**

Every detector is a :class:`~ogaudit.detectors.base.Detector` (the scikit-learn estimator contract, written down
there with its shapes). ``outlier_scores(evidence, labels)`` with other ``labels`` scores a *counterfactual*
gradient ("what if this sample were class c?"), which is how labels are suggested.
Evidence is any :class:`~ogaudit.gradients.GradientEvidence`: the last layer in closed form
(:class:`~ogaudit.gradients.HeadEvidence`) or projected gradients of chosen layers
(:class:`~ogaudit.gradients.ProjectedEvidence`); detectors read it through that interface only.

``posterior`` (:class:`NeighbourPosteriorDetector`) scores ``−log π(y)`` with ``π`` the model's softmax times the
label histogram of the sample's gradient-direction neighbours; docs/BENCHMARKS.md ("Peers") has the comparison with
cleanlab and the other detectors. The default, ``posterior-auto`` (:class:`AutoPosteriorDetector`), blends it with
``posterior-ratio`` by how concentrated the data's estimated confusions are (docs/BENCHMARKS.md, "Detection under
realistic noise").
"""

from __future__ import annotations

import threading

import numpy as np
from sklearn.ensemble import IsolationForest

from ogaudit.detectors.base import Detector, NeighbourBased, PosteriorDetector
from ogaudit.detectors.dynamics import (
    AumDetector,
    CheckpointEnsembleDetector,
    DynamicsPosteriorDetector,
    EarlyNeighbourDetector,
    MarginDetector,
)
from ogaudit.detectors.joint import concentration_bound, confident_joint, confusion_concentration
from ogaudit.detectors.neighbours import EXACT_CHUNK, nearest_neighbours
from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.settings import DEFAULT_DETECTOR, GRADIENT_DETECTORS

SCORE_CHUNK = 8192
FIT_ROWS = 20_000
"""IsolationForest trees see 256 rows each: fitting on a 20k-row random subset changes nothing but memory."""


class NormDetector:
    """Rank by the gradient's Lp norm (the paper's L1 / L2 variants). Higher = more suspicious."""

    def __init__(self, *, order: int = 2):
        self.order = order

    def fit(self, evidence, *, progress=None, cancel=None) -> NormDetector:
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

    def fit(self, evidence, *, progress=None, cancel=None) -> IsolationForestDetector:
        rng = np.random.default_rng(self.random_state)
        groups = (
            {c: np.flatnonzero(evidence.labels == c) for c in range(evidence.n_classes)}
            if self.per_class
            else {None: np.arange(len(evidence.labels))}
        )
        self.forests_ = {}
        for done, (key, rows) in enumerate(groups.items()):
            check_cancel(cancel)
            report(progress, "detect", done / len(groups), "fitting isolation forests")
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
            rows = slice(start, start + SCORE_CHUNK)  # callers check cancel between calls; a chunk takes < 1 s
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

    def fit(self, evidence, *, progress=None, cancel=None) -> LossDetector:
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = evidence.labels if labels is None else labels
        return -np.log(np.clip(evidence.probs[np.arange(len(labels)), labels], 1e-12, None))


class SelfConfidenceDetector:
    """Baseline in the style of cleanlab's self-confidence: ``1 - p(given label)``. Higher = more suspicious."""

    def fit(self, evidence, *, progress=None, cancel=None) -> SelfConfidenceDetector:
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = evidence.labels if labels is None else labels
        return 1.0 - evidence.probs[np.arange(len(labels)), labels]


def _given_or(evidence, labels: np.ndarray | None) -> np.ndarray:
    return evidence.labels if labels is None else np.asarray(labels)


def counterfactual_log_ratio(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(‖g(y)‖ / min_{c≠y} ‖g(c)‖)``, (N,): the last-layer gradient norm under the given label relative
    to the smallest gradient any other label would give.

    ``g(c) = (p − e_c) ⊗ h̃``, so ``‖g(c)‖₂ = ‖p − e_c‖₂ ‖h̃‖₂`` and the feature factor cancels: the ratio is
    ``‖p − e_y‖ / min_{c≠y} ‖p − e_c‖``, computed from ``‖p − e_c‖² = ‖p‖² − 2 p_c + 1`` for every ``c`` at once.
    Above 0 = some other label would fit this sample better than the given one.
    """
    rows = np.arange(len(labels))
    squared = np.maximum((probs**2).sum(axis=1, keepdims=True) - 2.0 * probs + 1.0, 1e-12)  # (N, C)
    given = squared[rows, labels]
    squared[rows, labels] = np.inf
    return 0.5 * (np.log(given) - np.log(squared.min(axis=1)))


class CounterfactualRatioDetector:
    """Rank by :func:`counterfactual_log_ratio`: the given label's last-layer gradient norm over the smallest
    counterfactual-label gradient norm, in log. Higher = more suspicious.

    A plain gradient norm is large for every hard sample; the ratio is large only when *another* label would
    make the gradient small, i.e. when the model has a confident alternative. That is what separates a
    mislabelled sample from a merely ambiguous one under class-pair noise.
    """

    def fit(self, evidence, *, progress=None, cancel=None) -> CounterfactualRatioDetector:
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        return counterfactual_log_ratio(evidence.probs, _given_or(evidence, labels))


class NeighbourDetector:
    """Share of a sample's ``k`` nearest neighbours whose given label differs from its (given or counterfactual)
    label, Laplace-smoothed: ``(disagreeing + 1) / (k + 2)``. Higher = more suspicious.

    Neighbours are by cosine between gradient directions: for last-layer evidence, the feature factor ``h̃`` of
    the gradient ``(p − e_y) ⊗ h̃`` (label-free, so one neighbour search serves every counterfactual label); for
    projected gradients, the rows themselves. ``fit`` finds the neighbours of the evidence it is given
    (:func:`~ogaudit.detectors.neighbours.nearest_neighbours`: exact up to
    :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples, an approximate index above); ``outlier_scores`` must
    then be called with that same evidence. ``chunk``: query rows per product of the exact search. ``search``: a
    function with :func:`~ogaudit.detectors.neighbours.nearest_neighbours`' signature to use in its place (the pipeline's
    cached search, say). Fitted: ``neighbours_`` (N, k) positions and ``cosines_`` (N, k) cosines, most similar
    first.
    """

    def __init__(self, *, k: int = 20, chunk: int = EXACT_CHUNK, search=None):
        self.k = k
        self.chunk = chunk
        self.search = search

    def fit(
        self,
        evidence,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> NeighbourDetector:
        if self.k < 1:
            raise SettingsError(f"k must be at least 1; got {self.k}.")
        directions = evidence.directions()
        self.labels_ = np.asarray(evidence.labels).copy()
        if len(directions) < 2:
            self.neighbours_ = np.zeros((len(directions), 0), dtype=np.int64)
            self.cosines_ = np.zeros((len(directions), 0), dtype=np.float32)
            return self
        search = self.search or nearest_neighbours
        self.neighbours_, self.cosines_ = search(
            directions, self.k, progress=progress, cancel=cancel, stage="detect", chunk=self.chunk
        )
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        if len(evidence.labels) != len(self.neighbours_):
            raise SettingsError(
                f"This NeighbourDetector was fitted on {len(self.neighbours_)} samples but is asked to score "
                f"{len(evidence.labels)}; fit it on the evidence you score."
            )
        labels = _given_or(evidence, labels)
        k = self.neighbours_.shape[1]
        disagreeing = (self.labels_[self.neighbours_] != labels[:, None]).sum(axis=1) if k else np.zeros(len(labels))
        return (disagreeing + 1.0) / (k + 2.0)

    def gradient_neighbours(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(neighbours_ (N, k), cosines_ (N, k))`` once fitted, else None."""
        return (self.neighbours_, self.cosines_) if hasattr(self, "cosines_") else None


class ConsensusDetector:
    """The default: three views of the same last-layer gradient, added in log space. Higher = more suspicious.

    ``score = log ratio + log neighbours + loss_weight · loss`` where

    * ``log ratio`` = :func:`counterfactual_log_ratio`, the given label's gradient norm over the smallest
      counterfactual-label one (catches confident alternatives: class-pair noise);
    * ``log neighbours`` = log of :class:`NeighbourDetector`'s smoothed disagreement among the ``k`` samples with
      the most similar gradient directions (catches samples whose gradient sits among another class's);
    * ``loss`` = ``−log p(y)``, the cross-entropy this gradient is the gradient of (catches labels the model finds
      near impossible: symmetric noise, where the given label is usually unrelated to the image).

    Everything comes from one training and one forward pass and one neighbour search
    (:func:`~ogaudit.detectors.neighbours.nearest_neighbours`).
    """

    def __init__(self, *, k: int = 20, loss_weight: float = 1.0, search=None):
        self.k = k
        self.loss_weight = loss_weight
        self.search = search

    def fit(self, evidence, *, progress=None, cancel=None) -> ConsensusDetector:
        if self.loss_weight < 0:
            raise SettingsError(f"loss_weight must be ≥ 0; got {self.loss_weight}.")
        self.neighbours_ = NeighbourDetector(k=self.k, search=self.search).fit(
            evidence, progress=progress, cancel=cancel
        )
        return self

    def gradient_neighbours(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.neighbours_.gradient_neighbours() if hasattr(self, "neighbours_") else None

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = _given_or(evidence, labels)
        loss = -np.log(np.clip(evidence.probs[np.arange(len(labels)), labels], 1e-12, None))
        return (
            counterfactual_log_ratio(evidence.probs, labels)
            + np.log(self.neighbours_.outlier_scores(evidence, labels))
            + self.loss_weight * loss
        )


class NeighbourPosteriorDetector:
    """The default: ``−log π(y)``, where ``π`` fuses two views of each sample's true label. Higher = more suspicious.

    ``π ∝ p ⊙ q``, a product of two experts over the classes:

    * ``p``, the model's softmax, the factor ``(p − e_y)`` of the last-layer gradient;
    * ``q``, the Laplace-smoothed label histogram of the ``k`` samples with the most similar gradient directions
      (:class:`NeighbourDetector`'s neighbours): ``q_c = (#neighbours labelled c + 1) / (k + C)``.

    ``π(y)`` reads as "how likely the given label is, by the model and by the gradient neighbours together", so
    ``exp(−score)`` is a probability an annotator can read, and the suggested label (the label with the lowest
    counterfactual score) is ``argmax π``. ``p`` alone misses labels the model partly memorised; ``q`` alone
    misses samples whose neighbours share their wrong label; a flip must fool both to hide. One training, one
    forward pass and one neighbour search (:func:`~ogaudit.detectors.neighbours.nearest_neighbours`: exact up to
    :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` samples, an approximate index above).
    """

    def __init__(self, *, k: int = 20, search=None):
        self.k = k
        self.search = search

    def fit(self, evidence, *, progress=None, cancel=None) -> NeighbourPosteriorDetector:
        self.neighbours_ = NeighbourDetector(k=self.k, search=self.search).fit(
            evidence, progress=progress, cancel=cancel
        )
        return self

    def gradient_neighbours(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.neighbours_.gradient_neighbours() if hasattr(self, "neighbours_") else None

    def posterior(self, evidence) -> np.ndarray:
        """``π`` (N, C), rows summing to 1; independent of the samples' own given labels."""
        n, n_classes = evidence.probs.shape
        neighbours = self.neighbours_.neighbours_
        if len(neighbours) != n:
            raise SettingsError(
                f"This detector was fitted on {len(neighbours)} samples but is asked to score {n}; fit it on the "
                "evidence you score."
            )
        votes = np.arange(n)[:, None] * n_classes + self.neighbours_.labels_[neighbours]
        counts = np.bincount(votes.ravel(), minlength=n * n_classes).reshape(n, n_classes)
        fused = np.asarray(evidence.probs, dtype=np.float64) * (counts + 1.0)
        return fused / fused.sum(axis=1, keepdims=True)

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = _given_or(evidence, labels)
        posterior = self.posterior(evidence)
        return -np.log(np.clip(posterior[np.arange(len(labels)), labels], 1e-12, None))


class PosteriorRatioDetector(NeighbourPosteriorDetector):
    """:func:`counterfactual_log_ratio` of the ``posterior`` detector's ``π`` instead of the softmax: how much
    farther ``π`` lies from the given label's corner than from the nearest other label's. Higher = more
    suspicious.

    ``−log π(y)`` ranks a sample by how unlikely its label is; the ratio ranks it by how much *likelier another
    label* is. Under class-pair and instance-dependent noise the wrong samples are those with a confident
    alternative, while correctly labelled hard samples spread their ``π`` over several classes: the ratio keeps
    the former on top. ``π`` is :class:`NeighbourPosteriorDetector`'s (the same neighbour search), so the
    suggested label is ``argmax π`` as there, and the label evidence is ``−log π``.
    """

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        return counterfactual_log_ratio(self.posterior(evidence), _given_or(evidence, labels))


RATIO_RAMP = (0.2, 0.45)
""":class:`AutoPosteriorDetector`'s weight on ``posterior-ratio`` rises linearly from 0 to 1 as the estimated
confusions' concentration (:func:`~ogaudit.detectors.joint.confusion_concentration`, chance-corrected) goes from the
first value to the second: ``posterior`` alone up to 0.2 (on the scale from wrong labels spread uniformly over the
other classes, 0, to each class's coming from one partner, 1), the ratio alone from 0.45. Set in the gap between the
concentrations measured on Fashion-MNIST 20k (3 seeds): symmetric noise 0.03-0.04 and the tweets' real noise
0.13-0.19 below it, confusion-following noise 0.49-0.54 and class pairs 0.73-0.74 above it, so that each gets the
score that was best for it; a ramp rather than a switch, so data in the gap gets a blend of two scores instead of a
cliff. Chosen on those 20k Fashion seeds; checked on 13 other audits (digits, MNIST and Fashion-MNIST 3k under four
noise kinds, and the tweets) and on 12 small digits sets (300 and 1,000 images), against the previous default (the
uncorrected concentration and 0.25-0.75): at least as good on all 13 and on 11 of the 12 (docs/BENCHMARKS.md,
"Detection under realistic noise"; ``benchmarks/bench_auto_ramp.py``). The chance correction is what keeps small
data right: on the uncorrected concentration this ramp read 300 digits with symmetric noise as concentrated
(``w`` = 1) and lost up to 0.06 AP there. Reading it at ``κ``'s lower confidence bound instead
(``AutoPosteriorDetector(bounded=True)``) was measured and not adopted (see the class)."""


def ratio_weight(concentration: float, ramp: tuple[float, float] | None = None) -> float:
    """:class:`AutoPosteriorDetector`'s weight ``w`` in [0, 1] on ``posterior-ratio`` for a confusion concentration
    ``κ`` in [0, 1]: 0 up to ``ramp[0]``, 1 from ``ramp[1]``, linear between (``ramp`` None: :data:`RATIO_RAMP`).
    Raises :class:`~ogaudit.errors.SettingsError` for a ``ramp`` that is not ``0 ≤ low < high ≤ 1``."""
    low, high = RATIO_RAMP if ramp is None else ramp
    if not 0.0 <= low < high <= 1.0:
        raise SettingsError(f"ramp must be (low, high) with 0 ≤ low < high ≤ 1; got {ramp}.")
    return float(np.clip((concentration - low) / (high - low), 0.0, 1.0))


class AutoPosteriorDetector(NeighbourPosteriorDetector):
    """``posterior`` and ``posterior-ratio`` blended by how concentrated the data's estimated confusions are.
    Higher = more suspicious.

    ``−log π(y)`` (``posterior``) is the better score when a wrong label is unrelated to the sample (symmetric
    noise: the given label is near impossible, wherever the true one lies); the counterfactual ratio of ``π``
    (``posterior-ratio``, :func:`counterfactual_log_ratio`) when wrong labels come from confusable partner classes
    (class-pair and confusion-following noise: the wrong samples are those with one confident alternative, while
    correctly labelled hard samples spread ``π`` over several classes). ``fit`` estimates the joint of given and
    true labels from ``π`` (:func:`~ogaudit.detectors.joint.confident_joint`, confident learning) and its
    concentration ``κ`` (:func:`~ogaudit.detectors.joint.confusion_concentration`: 0 uniform over the other
    classes, 1 one partner per class, measured against what uniform noise with as many wrong labels would show);
    the score is ``(1 − w) · (−log π(y)) + w · ratio`` with ``w`` rising linearly from 0 at ``κ = ramp[0]`` to 1
    at ``κ = ramp[1]`` (``ramp`` None: :data:`RATIO_RAMP`). No true label is read.

    ``bounded=True`` reads ``w`` at ``κ_low``, a 90% lower confidence bound on ``κ``
    (:func:`~ogaudit.detectors.joint.concentration_bound`, a bootstrap over the joint's counts), so that ``w``
    reaches 1 only when ``κ`` is clearly high. Measured and not the default: on 300 digits with class-pair noise,
    where the point ``κ`` (0.56-0.60) gives ``w`` = 1 and the ratio is up to 0.085 AP below ``posterior``, it gives
    ``w`` 0.73-0.79 and gains 0.034-0.035 AP; but on 24 other small sets (digits and MNIST, 300 and 1,000 samples,
    three noise kinds) it lost 0.005 AP on average (worst −0.070), and on the 13 cached 1,800-3,000-sample audits it
    changed nothing clearly (mean −0.0002). On a few hundred samples which of the two scores is better is close to a
    coin flip that ``κ`` cannot call (docs/BENCHMARKS.md, "Small data"; ``benchmarks/bench_auto_ramp.py``).

    Same neighbour search, ``π``, suggested labels (``argmax π``) and label evidence as ``posterior``; only the
    ranking can differ. Fitted: ``joint_`` (C, C) ``[given, true]``, ``concentration_`` ``κ``,
    ``concentration_low_`` ``κ_low`` (= ``κ`` unless ``bounded``), ``weight_`` ``w``, ``ramp_`` the ramp used.

    Raises :class:`~ogaudit.errors.SettingsError` for a ``ramp`` that is not ``0 ≤ low < high ≤ 1``.
    """

    def __init__(self, *, k: int = 20, ramp: tuple[float, float] | None = None, bounded: bool = False, search=None):
        super().__init__(k=k, search=search)
        self.ramp = ramp
        self.bounded = bounded

    def fit(self, evidence, *, progress=None, cancel=None) -> AutoPosteriorDetector:
        self.ramp_ = tuple(RATIO_RAMP if self.ramp is None else self.ramp)
        ratio_weight(0.0, self.ramp_)  # checks the ramp before the neighbour search
        super().fit(evidence, progress=progress, cancel=cancel)
        self.joint_ = confident_joint(self.posterior(evidence), evidence.labels)
        if self.bounded:
            self.concentration_, self.concentration_low_ = concentration_bound(self.joint_)
        else:
            self.concentration_ = self.concentration_low_ = confusion_concentration(self.joint_)
        self.weight_ = ratio_weight(self.concentration_low_, self.ramp_)
        return self

    def outlier_scores(self, evidence, labels: np.ndarray | None = None) -> np.ndarray:
        labels = _given_or(evidence, labels)
        posterior = self.posterior(evidence)
        scores = np.zeros(len(labels))
        if self.weight_ < 1.0:
            scores += (1.0 - self.weight_) * -np.log(np.clip(posterior[np.arange(len(labels)), labels], 1e-12, None))
        if self.weight_ > 0.0:
            scores += self.weight_ * counterfactual_log_ratio(posterior, labels)
        return scores


DETECTORS = {
    "l2": lambda seed: NormDetector(order=2),
    "l1": lambda seed: NormDetector(order=1),
    "iforest": lambda seed: IsolationForestDetector(random_state=seed),
    "iforest-per-class": lambda seed: IsolationForestDetector(per_class=True, random_state=seed),
    "loss": lambda seed: LossDetector(),
    "self-confidence": lambda seed: SelfConfidenceDetector(),
    "cf-ratio": lambda seed: CounterfactualRatioDetector(),
    "neighbours": lambda seed: NeighbourDetector(),
    "consensus": lambda seed: ConsensusDetector(),
    "posterior": lambda seed: NeighbourPosteriorDetector(),
    "posterior-ratio": lambda seed: PosteriorRatioDetector(),
    "posterior-auto": lambda seed: AutoPosteriorDetector(),
    "aum": lambda seed: AumDetector(),
    "margin": lambda seed: MarginDetector(),
    "checkpoints": lambda seed: CheckpointEnsembleDetector(),
    "simifeat": lambda seed: EarlyNeighbourDetector(),
    "dynamics": lambda seed: DynamicsPosteriorDetector(),
}
__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "GRADIENT_DETECTORS",
    "counterfactual_scores",
    "detector_params",
    "detector_state",
    "make_detector",
]


AUTO_VERSION = 2
"""The version of ``posterior-auto``'s concentration measure, in its score cache key: 1 the uncorrected entropy
ratio, 2 chance-corrected (:func:`~ogaudit.detectors.joint.confusion_concentration`). Raise it when ``κ`` or the
way ``w`` is read from it changes (e.g. a default ``bounded=True``)."""


def detector_params(name: str) -> dict:
    """The settings of the detector called ``name`` that change its scores besides its name (part of a score
    cache's key, so that a changed default is not read back from an old entry): ``posterior-auto``'s ramp and the
    version of its concentration measure (:data:`AUTO_VERSION`); {} for the others."""
    return {"ramp": list(RATIO_RAMP), "concentration": AUTO_VERSION} if name == "posterior-auto" else {}


def detector_state(detector: Detector) -> dict:
    """What a fitted detector read from the data that a reviewer may want to see, as JSON-ready numbers; {} for a
    detector that reads nothing beyond its scores. ``posterior-auto``: ``concentration`` (``κ`` in [0, 1]),
    ``concentration_low`` (only for ``bounded=True``: its 90% lower bound ``κ_low``, where ``w`` was read),
    ``ratio_weight`` (``w`` in [0, 1], the weight on ``posterior-ratio``; ``1 − w`` on ``posterior``) and
    ``ramp`` (``[low, high]``, :data:`RATIO_RAMP`)."""
    if isinstance(detector, AutoPosteriorDetector) and hasattr(detector, "weight_"):
        state = {"concentration": float(detector.concentration_)}
        if detector.bounded:
            state["concentration_low"] = float(detector.concentration_low_)
        state["ratio_weight"] = float(detector.weight_)
        state["ramp"] = [float(detector.ramp_[0]), float(detector.ramp_[1])]
        return state
    return {}


def gradient_neighbours(detector: Detector) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(neighbours (N, k), cosines (N, k))`` a fitted neighbour-based detector (``neighbours``,
    ``consensus``, ``posterior``: a :class:`~ogaudit.detectors.base.NeighbourBased`) scored with, or None for a
    detector that searched none."""
    return detector.gradient_neighbours() if isinstance(detector, NeighbourBased) else None


def make_detector(name: str, *, seed: int = 0, search=None, trajectory=None) -> Detector:
    """The detector called ``name``; the error lists the valid names. ``search`` replaces the neighbour search of
    the detectors that make one (those with a ``search`` parameter; see :class:`NeighbourDetector`) and is ignored
    by the others. ``trajectory`` (a :class:`~ogaudit.models.training.Trajectory`) goes to the detectors that read
    one (:data:`~ogaudit.settings.DYNAMICS_DETECTORS`) and is ignored by the others."""
    if name not in DETECTORS:
        raise SettingsError(f"detector {name!r} is not one of {sorted(DETECTORS)}.")
    detector = DETECTORS[name](seed)
    if search is not None and hasattr(detector, "search"):
        detector.search = search
    if trajectory is not None and hasattr(detector, "trajectory"):
        detector.trajectory = trajectory
    return detector


def counterfactual_scores(
    detector: Detector,
    evidence,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """(N, C): each sample's outlier score if its label were each class in turn.

    ``progress("detect", fraction, message)`` is called with fractions inside ``span`` and ``cancel`` checked once
    per class (:class:`~ogaudit.errors.Cancelled`). The posterior detector's columns all come from one ``π``.
    """
    n, n_classes = len(evidence.labels), evidence.n_classes
    if isinstance(detector, PosteriorDetector):
        check_cancel(cancel)
        return -np.log(np.clip(detector.posterior(evidence), 1e-12, None))
    scores = np.empty((n, n_classes), dtype=np.float64)
    for c in range(n_classes):
        check_cancel(cancel)
        report(progress, "detect", span[0] + (span[1] - span[0]) * c / n_classes, f"label evidence: class {c + 1}")
        scores[:, c] = detector.outlier_scores(evidence, np.full(n, c))
    return scores
