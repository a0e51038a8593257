"""Seeded label-noise injection for demos, tests and benchmarks: noise the way real data has it.

The given labels are replaced in a copy of the dataset; the clean labels are kept in ``Dataset.true_y`` so that
flags can be scored. Detectors never see ``true_y``. Four kinds (:data:`~ogaudit.settings.NOISE_KINDS`):

* ``symmetric``: a uniformly chosen sample gets a uniformly chosen other class (the easy, planted case);
* ``pairs``: a sample of a class with a partner gets the partner class (class-conditional noise);
* ``instance``: instance-dependent noise that follows a model's confusions. A weak classifier (PCA + linear
  discriminant analysis on coarse pixels or on the feature vectors, cross-fitted so that no sample is scored by a
  classifier that saw it) gives every sample's class probabilities ``p``; samples flip with probability
  proportional to the weak classifier's doubt about the true class (``1 − p(true)``), each to the class the weak
  classifier finds next most plausible. This is how annotators err: on the samples that look like another class,
  to that class (on Fashion-MNIST the flips gather on shirt / T-shirt / pullover / coat);
* ``annotator``: :data:`ANNOTATORS` simulated annotators label every sample; each errs at its own rate, to classes
  drawn from its own confusion matrix, a perturbation of the class similarity the weak classifier sees (the mean
  cross-fitted ``p`` of each true class), and the given label is their majority vote (a three-way split goes to
  the most reliable annotator). The annotators' error rates are scaled so that about ``rate`` of the majority
  labels are wrong; the realised count is the nearest the vote allows (see :func:`inject_label_noise`).

Every kind is deterministic in ``seed`` (the weak classifier too).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ogaudit.data.dataset import Dataset
from ogaudit.errors import SettingsError
from ogaudit.settings import NOISE_KINDS

# The confusions people make on Fashion-MNIST, as pairs of class names.
FASHION_MNIST_PAIRS = [
    ("T-shirt/top", "Shirt"),
    ("Pullover", "Coat"),
    ("Sneaker", "Sandal"),
    ("Dress", "Trouser"),
    ("Bag", "Ankle boot"),
]

ANNOTATORS = 3
"""Simulated annotators per sample for ``annotator`` noise (majority vote)."""
WEAK_SIDE = 16
"""Images are average-pooled to at most this many pixels a side before the weak classifier reads them."""
WEAK_COMPONENTS = 50
"""Principal components the weak classifier reads: weak on purpose, as a hurried annotator is."""
WEAK_FOLDS = 2
"""Cross-fitting folds of the weak classifier: every sample is scored by a classifier fitted on the other fold."""
WEAK_BATCH = 1024
"""Rows read at a time from ``x`` (which may be a memory map or image files) to build the weak features."""


def inject_label_noise(
    dataset: Dataset,
    rate: float,
    *,
    kind: str = "symmetric",
    seed: int = 0,
    pairs: list[tuple[str, str]] | None = None,
) -> Dataset:
    """A copy of ``dataset`` with about ``rate`` of its labels wrong, the clean labels kept in ``true_y``.

    Parameters
    ----------
    dataset : the data; its labels (or ``true_y`` when noise was planted before) are taken as clean.
    rate : share of labels to make wrong, in [0, 1).
    kind : ``symmetric``, ``pairs``, ``instance`` or ``annotator`` (see the module docstring).
        ``symmetric`` and ``instance`` flip exactly ``round(rate * N)`` labels; ``pairs`` as many of those as the
        classes with a partner hold; ``annotator`` the nearest count the majority vote allows (within a few
        samples of it).
    seed : everything random (which samples, which classes, the weak classifier's folds) is drawn from it.
    pairs : for ``pairs``, class-name pairs confused both ways; by default the Fashion-MNIST confusions when the
        classes match, else class ``c`` → ``c + 1`` cyclically. Only samples whose class has a partner flip.

    Returns
    -------
    Dataset with ``y`` (N,) the noisy labels and ``true_y`` (N,) the clean ones.

    Raises
    ------
    SettingsError : an unknown ``kind`` or pair class, or ``rate`` outside [0, 1).
    """
    if kind not in NOISE_KINDS:
        raise SettingsError(f"noise kind {kind!r} is not one of {NOISE_KINDS}.")
    if not 0.0 <= rate < 1.0:
        raise SettingsError(f"noise rate must be in [0, 1); got {rate}.")
    rng = np.random.default_rng(seed)
    clean = np.asarray(dataset.y if dataset.true_y is None else dataset.true_y, dtype=np.int64)
    noisy = clean.copy()
    n_classes = dataset.n_classes
    count = round(rate * len(noisy))
    if count == 0 or n_classes < 2:
        pass
    elif kind == "symmetric":
        flip = rng.choice(len(noisy), size=count, replace=False)
        noisy[flip] = (noisy[flip] + rng.integers(1, n_classes, size=count)) % n_classes
    elif kind == "pairs":
        partner = _partner_map(dataset.class_names, pairs)
        candidates = np.flatnonzero(partner[noisy] >= 0)
        flip = rng.choice(candidates, size=min(count, len(candidates)), replace=False)
        noisy[flip] = partner[noisy[flip]]
    elif kind == "instance":
        noisy = instance_noise(weak_probabilities(dataset.x, clean, n_classes, seed=seed), clean, count, rng)
    else:
        probs = weak_probabilities(dataset.x, clean, n_classes, seed=seed)
        noisy = annotator_noise(class_similarity(probs, clean, n_classes), clean, count, rng)
    return replace(dataset, y=noisy, true_y=clean.copy())


def instance_noise(probs: np.ndarray, clean: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) labels with ``count`` of ``clean`` flipped where ``probs`` doubts them, each to its most plausible
    other class.

    probs : (N, C) a weak classifier's class probabilities (rows summing to 1); clean : (N,) int64.
    Sample ``i`` is drawn (without replacement) with probability ∝ ``1 − probs[i, clean[i]]`` and gets
    ``argmax_{c ≠ clean[i]} probs[i, c]``.
    """
    n = len(clean)
    rows = np.arange(n)
    doubt = np.clip(1.0 - probs[rows, clean], 1e-6, None)
    flip = rng.choice(n, size=min(count, n), replace=False, p=doubt / doubt.sum())
    others = np.array(probs, dtype=np.float64)
    others[rows, clean] = -np.inf
    noisy = clean.copy()
    noisy[flip] = others[flip].argmax(axis=1)
    return noisy


def annotator_noise(
    similarity: np.ndarray,
    clean: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    annotators: int = ANNOTATORS,
) -> np.ndarray:
    """(N,) majority-vote labels of ``annotators`` simulated annotators, about ``count`` of them wrong.

    similarity : (C, C) row ``c`` = how often class ``c`` is taken for each other class (diagonal ignored).
    Annotator ``a`` has a reliability factor ``m_a`` (drawn from [0.5, 1.5]) and its own confusion rows, a
    Dirichlet draw around ``similarity``'s; it errs on a sample with probability ``min(1, s · m_a)``, to a class drawn
    from its row of the true class. The common scale ``s`` is found by bisection so that the number of wrong
    majority labels is the nearest to ``count``: with fixed random draws, more errors per annotator never turn a
    wrong majority right, so the count grows with ``s``.
    """
    n, n_classes = len(clean), len(similarity)
    off = np.array(similarity, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    off = np.clip(off, 0.0, None) + 1e-3 * (1.0 - np.eye(n_classes))
    off /= off.sum(axis=1, keepdims=True)
    factor = rng.uniform(0.5, 1.5, size=annotators)
    confusion = np.stack([np.stack([rng.dirichlet(50.0 * row + 0.05) for row in off]) for _ in range(annotators)])
    confusion[:, np.arange(n_classes), np.arange(n_classes)] = 0.0
    confusion /= confusion.sum(axis=2, keepdims=True)
    draws = rng.random((annotators, n))  # below s · m_a: annotator a errs on sample i
    picks = rng.random((annotators, n))
    wrong_class = np.empty((annotators, n), dtype=np.int64)  # never the true class (its weight is 0)
    for a in range(annotators):
        for c in np.unique(clean):
            members = clean == c
            cumulative = np.cumsum(confusion[a, c])
            found = np.searchsorted(cumulative, picks[a, members] * cumulative[-1], side="right")
            wrong_class[a, members] = np.where(found == c, (c + 1) % n_classes, np.minimum(found, n_classes - 1))
    order = np.argsort(factor)  # most reliable first: it settles a split

    def vote(scale: float) -> np.ndarray:
        labels = np.where(draws < scale * factor[:, None], wrong_class, clean[None, :])[order]  # (A, N)
        agree = (labels[:, None, :] == labels[None, :, :]).sum(axis=1)  # (A, N): annotators sharing each label
        return labels[agree.argmax(axis=0), np.arange(n)]  # the first (most reliable) of the largest group

    low, high = 0.0, 1.0 / factor.min()
    for _ in range(50):
        middle = 0.5 * (low + high)
        if (vote(middle) != clean).sum() < count:
            low = middle
        else:
            high = middle
    below, above = vote(low), vote(high)
    return below if count - (below != clean).sum() <= (above != clean).sum() - count else above


def class_similarity(probs: np.ndarray, clean: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C): row ``c`` = the mean of ``probs`` over the samples of class ``c`` (uniform for an absent class)."""
    total = np.zeros((n_classes, n_classes))
    np.add.at(total, clean, probs)
    counts = np.bincount(clean, minlength=n_classes)[:, None]
    return np.where(counts > 0, total / np.maximum(counts, 1), 1.0 / n_classes)


def weak_probabilities(x: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int = 0) -> np.ndarray:
    """(N, C) float64 class probabilities of a weak classifier, cross-fitted over :data:`WEAK_FOLDS` folds.

    x : (N, H, W, C) images (average-pooled to at most :data:`WEAK_SIDE` pixels a side) or (N, F) vectors, read
    :data:`WEAK_BATCH` rows at a time; standardised, reduced to :data:`WEAK_COMPONENTS` principal components,
    then a linear discriminant analysis (shrunk covariance) per fold, fitted on the other fold: a second
    per fold on Fashion-MNIST 20k, about 0.77 accurate, as weak as intended. A class absent from a training
    fold gets probability 0 there.
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = weak_features(x)
    if features.shape[1] == 0:
        raise SettingsError("instance and annotator noise need samples with features or pixels; these have none.")
    n = len(labels)
    fold = np.random.default_rng(seed).permutation(n) % WEAK_FOLDS
    probs = np.zeros((n, n_classes))
    for f in range(WEAK_FOLDS):
        train, test = fold != f, fold == f
        present = np.unique(labels[train])
        if len(present) < 2 or not test.any():
            probs[test] = np.bincount(labels[train], minlength=n_classes) / max(train.sum(), 1)
            continue
        components = max(1, min(WEAK_COMPONENTS, features.shape[1], int(train.sum()) - 1))
        discriminant = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        model = make_pipeline(StandardScaler(), PCA(components, random_state=seed), discriminant)
        model.fit(features[train], labels[train])
        probs[np.ix_(test, present)] = model.predict_proba(features[test])
    return probs


def weak_features(x: np.ndarray) -> np.ndarray:
    """(N, F) float32: images average-pooled to at most :data:`WEAK_SIDE` a side (channels kept), vectors as
    they are; read :data:`WEAK_BATCH` rows at a time."""
    chunks = []
    for start in range(0, len(x), WEAK_BATCH):
        part = np.asarray(x[start : start + WEAK_BATCH], dtype=np.float32)
        if part.ndim == 4:
            _, height, width, channels = part.shape
            step_h, step_w = -(-height // WEAK_SIDE), -(-width // WEAK_SIDE)
            h, w = height // step_h, width // step_w
            part = part[:, : h * step_h, : w * step_w].reshape(len(part), h, step_h, w, step_w, channels)
            part = part.mean(axis=(2, 4))
        chunks.append(part.reshape(len(part), -1))
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)


def _partner_map(class_names: list[str], pairs: list[tuple[str, str]] | None) -> np.ndarray:
    """``partner[c]`` = the class that ``c`` is confused with, or -1."""
    index = {name: i for i, name in enumerate(class_names)}
    if pairs is None:
        if all(a in index and b in index for a, b in FASHION_MNIST_PAIRS):
            pairs = FASHION_MNIST_PAIRS
        else:
            n = len(class_names)
            return np.array([(c + 1) % n for c in range(n)], dtype=np.int64)
    partner = np.full(len(class_names), -1, dtype=np.int64)
    for a, b in pairs:
        for name in (a, b):
            if name not in index:
                raise SettingsError(f"noise pair class {name!r} is not one of {class_names}.")
        partner[index[a]], partner[index[b]] = index[b], index[a]
    return partner
