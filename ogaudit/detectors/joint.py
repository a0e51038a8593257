"""The estimated joint of given and true labels (confident learning), and how concentrated its confusions are.

:func:`confident_joint` is the one implementation of Northcutt et al. 2021's calibrated confident joint in ogaudit
(the review's noise-rate estimate reads it too). :func:`confusion_concentration` summarises it in one number: how
far the estimated wrong labels of each given class are from spreading uniformly over the other classes (0) towards
all coming from a single partner class (1). The ``posterior-auto`` detector reads that number to choose its score.
No streamlit, no torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["concentration_bound", "confident_joint", "confusion_concentration", "uniform_entropy"]


def confident_joint(posterior: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The calibrated confident joint of given and true labels, (C, C) float64, ``[given, true]``.

    Parameters
    ----------
    posterior : (N, C) each sample's class probabilities (rows sum to 1), e.g. the fused ``π`` of the
        ``posterior`` detector.
    labels : (N,) int given labels in ``[0, C)``.

    Returns
    -------
    Row ``i`` counts the samples labelled ``i`` by the class they confidently belong to (Northcutt et al. 2021,
    "Confident learning", eq. 2-3): a sample counts towards the most probable class ``j`` among those whose
    probability reaches ``t_j``, the mean probability of ``j`` over the samples labelled ``j``; samples above no
    threshold are not counted; each row is then scaled to its given class's count (a class nobody is labelled
    with has a zero row). The off-diagonal sum over N estimates the noise rate.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = posterior.shape
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    sums = np.zeros(c)
    np.add.at(sums, labels, posterior[np.arange(n), labels])
    threshold = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    above = posterior >= threshold[None, :] - 1e-12
    masked = np.where(above, posterior, -1.0)
    best = masked.argmax(axis=1)
    counted = above.any(axis=1)
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[counted], best[counted]), 1.0)
    rows = joint.sum(axis=1, keepdims=True)
    return np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)


EXACT_ENTROPY_UP_TO = 5000
"""Up to this many wrong labels in a row, :func:`uniform_entropy` sums the binomial distribution exactly; above,
it uses the Miller-Madow expansion ``log k − (k − 1) / 2n`` (off by under 1e-6 nats there)."""


def uniform_entropy(counts: np.ndarray, k: int) -> np.ndarray:
    """The expected entropy (nats) of the empirical distribution of ``n`` labels drawn uniformly from ``k`` classes,
    for each ``n`` in ``counts`` (shape kept, float64): ``k · E[−(X/n) log(X/n)]`` with ``X ~ Binomial(n, 1/k)``.
    Below ``log k`` for any finite ``n`` (a few labels look concentrated by chance: 4 labels over 9 classes give
    1.17 nats, not 2.20); 0 for ``n ≤ 1`` or ``k ≤ 1``. ``counts`` are rounded to whole labels."""
    from scipy.stats import binom

    counts = np.rint(np.asarray(counts, dtype=np.float64))
    out = np.zeros(counts.shape)
    if k <= 1:
        return out
    large = counts > EXACT_ENTROPY_UP_TO
    out[large] = np.log(k) - (k - 1) / (2.0 * counts[large])
    for n in np.unique(counts[(counts > 1) & ~large]):
        share = np.arange(1, int(n) + 1) / n
        value = k * float((binom.pmf(np.arange(1, int(n) + 1), int(n), 1.0 / k) * -share * np.log(share)).sum())
        out[counts == n] = value
    return out


def confusion_concentration(joint: np.ndarray, *, chance_corrected: bool = True) -> float:
    """How concentrated the estimated wrong labels are, in [0, 1]: 0 = each given class's wrong labels come
    uniformly from the other ``C − 1`` classes (symmetric noise), 1 = each from one partner class (class-pair
    noise).

    Parameters
    ----------
    joint : (C, C) ``[given, true]`` counts, e.g. :func:`confident_joint`; its diagonal is ignored.
    chance_corrected : measure each row's entropy against what uniform noise with the row's own count of wrong
        labels would show (:func:`uniform_entropy`), not against ``log(C − 1)``. A class with 4 estimated wrong
        labels over 9 other classes shows an entropy well below ``log 9`` even when they are spread uniformly: the
        uncorrected measure read 0.52-0.59 on 300 digits with 10% symmetric noise (about 3 wrong labels a class),
        the corrected one 0.08-0.25 (``benchmarks/bench_auto_ramp.py --small``). False: the uncorrected measure
        (``posterior-auto`` before the correction).

    Returns
    -------
    ``Σ_i w_i (1 − H_i / H*_i)``, clipped to [0, 1]: for each given class ``i``, one minus the entropy ``H_i`` of its
    off-diagonal row (normalised to sum to 1) over ``H*_i``, the expected entropy of as many labels drawn
    uniformly from the other classes (``log(C − 1)`` when not ``chance_corrected``), weighted by the row's share
    ``w_i`` of the off-diagonal mass; a row with at most one wrong label counts as 0 (nothing to tell). Rows are
    not clipped one by one, so uniform noise averages to about 0 rather than above it. 0 when there are fewer than
    three classes (two classes leave a single alternative: nothing to concentrate) or no off-diagonal mass.
    """
    return float(_concentrations(np.asarray(joint, dtype=np.float64)[None], chance_corrected)[0])


def _concentrations(joints: np.ndarray, chance_corrected: bool = True) -> np.ndarray:
    """:func:`confusion_concentration` of each of ``joints`` (B, C, C), vectorised: (B,) float64."""
    joints = np.array(joints, dtype=np.float64)
    b, c = joints.shape[:2]
    joints[:, np.arange(c), np.arange(c)] = 0.0
    mass = joints.sum(axis=2)
    total = mass.sum(axis=1)
    if c < 3:
        return np.zeros(b)
    rows = joints / np.maximum(mass[..., None], 1e-300)
    entropy = -np.where(rows > 0, rows * np.log(np.maximum(rows, 1e-300)), 0.0).sum(axis=2)
    reference = uniform_entropy(mass, c - 1) if chance_corrected else np.full(mass.shape, np.log(c - 1))
    concentration = np.where(reference > 0, 1.0 - entropy / np.where(reference > 0, reference, 1.0), 0.0)
    weighted = (concentration * mass).sum(axis=1) / np.maximum(total, 1e-300)
    return np.where(total > 0, np.clip(weighted, 0.0, 1.0), 0.0)


BOUND_LEVEL = 0.9
"""The one-sided confidence of :func:`concentration_bound`'s lower bound (``posterior-auto`` reads its ``w`` there)."""
BOUND_DRAWS = 200
"""How many joints :func:`concentration_bound` draws."""


def concentration_bound(
    joint: np.ndarray, *, level: float = BOUND_LEVEL, draws: int = BOUND_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """A lower confidence bound on :func:`confusion_concentration` ``κ`` from how many wrong labels it rests on.

    ``κ`` read from a few estimated wrong labels is uncertain: 300 samples with 10% noise leave about 3 a class, and
    3 labels fall on one or two classes by chance as often as not. This draws ``draws`` joints as the data could
    have given them — each given class's samples spread again over the true classes in the joint's proportions
    (a parametric bootstrap: row ``i`` ~ Multinomial(round(Σ_j joint[i, j]), joint[i] / Σ_j joint[i, j])) — and
    takes the basic (reverse-percentile) bootstrap bound ``2κ − q_level(κ*)``, clipped to [0, κ]: below ``κ`` by
    about the ``level`` one-sided spread of ``κ`` (so 0.1 under it for ``κ`` ≈ 0.6 on 300 digits, under 0.01 on
    Fashion-MNIST 20k's thousands of wrong labels), and corrected for the upward drift of a concentration
    recomputed from resampled counts.

    Parameters
    ----------
    joint : (C, C) ``[given, true]`` counts, e.g. :func:`confident_joint`.
    level : the one-sided confidence in (0.5, 1); :data:`BOUND_LEVEL`.
    draws : the number of joints drawn (≥ 10); :data:`BOUND_DRAWS`. Cost O(draws · C²), milliseconds.
    seed : seeds the draws (the same joint gives the same bound).

    Returns
    -------
    ``(κ, κ_low)``, both in [0, 1], ``κ_low ≤ κ``. Raises ``ValueError`` for a ``level`` or ``draws`` out of
    range, or a joint that is not square with finite counts ≥ 0.
    """
    joint = np.asarray(joint, dtype=np.float64)
    if joint.ndim != 2 or joint.shape[0] != joint.shape[1] or not np.isfinite(joint).all() or (joint < 0).any():
        raise ValueError(f"joint must be a (C, C) array of finite counts ≥ 0; got shape {joint.shape}.")
    if not 0.5 < level < 1.0:
        raise ValueError(f"level must be in (0.5, 1); got {level}.")
    if int(draws) < 10:
        raise ValueError(f"draws must be at least 10; got {draws}.")
    kappa = confusion_concentration(joint)
    totals = joint.sum(axis=1)
    samples = np.rint(totals).astype(np.int64)
    shares = np.where(totals[:, None] > 0, joint / np.maximum(totals[:, None], 1e-300), 0.0)
    shares[totals <= 0, 0] = 1.0  # an empty row draws nothing; multinomial wants probabilities that sum to 1
    shares /= shares.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(samples, shares, size=(int(draws), len(samples)))
    again = _concentrations(drawn.astype(np.float64))
    low = 2.0 * kappa - float(np.quantile(again, level))
    return kappa, float(np.clip(low, 0.0, kappa))
