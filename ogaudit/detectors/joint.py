"""The estimated joint of given and true labels (confident learning), and how concentrated its confusions are.

:func:`confident_joint` is the one implementation of Northcutt et al. 2021's calibrated confident joint in ogaudit
(the review's noise-rate estimate reads it too). :func:`confusion_concentration` summarises it in one number: how
far the estimated wrong labels of each given class are from spreading uniformly over the other classes (0) towards
all coming from a single partner class (1). The ``posterior-auto`` detector reads that number to choose its score.
No streamlit, no torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confident_joint", "confusion_concentration"]


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


def confusion_concentration(joint: np.ndarray) -> float:
    """How concentrated the estimated wrong labels are, in [0, 1]: 0 = each given class's wrong labels come
    uniformly from the other ``C − 1`` classes (symmetric noise), 1 = each from one partner class (class-pair
    noise).

    Parameters
    ----------
    joint : (C, C) ``[given, true]`` counts, e.g. :func:`confident_joint`; its diagonal is ignored.

    Returns
    -------
    ``Σ_i w_i (1 − H_i / log(C − 1))``: for each given class ``i``, one minus the entropy ``H_i`` of its
    off-diagonal row (normalised to sum to 1) over that of the uniform distribution on the other classes, weighted
    by the row's share ``w_i`` of the off-diagonal mass. 0 when there are fewer than three classes (two classes
    leave a single alternative: nothing to concentrate) or no off-diagonal mass.
    """
    joint = np.array(joint, dtype=np.float64)
    c = joint.shape[0]
    np.fill_diagonal(joint, 0.0)
    mass = joint.sum(axis=1)
    if c < 3 or mass.sum() <= 0:
        return 0.0
    rows = joint / np.maximum(mass[:, None], 1e-300)
    entropy = -np.where(rows > 0, rows * np.log(np.maximum(rows, 1e-300)), 0.0).sum(axis=1)
    concentration = 1.0 - entropy / np.log(c - 1)
    return float(np.clip((concentration * mass).sum() / mass.sum(), 0.0, 1.0))
