"""Seeded label-noise injection for demos and benchmarks.

The given labels are replaced in a copy of the dataset; the clean labels are kept in ``Dataset.true_y`` so that
flags can be scored. Detectors never see ``true_y``.
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


def inject_label_noise(
    dataset: Dataset,
    rate: float,
    *,
    kind: str = "symmetric",
    seed: int = 0,
    pairs: list[tuple[str, str]] | None = None,
) -> Dataset:
    """Flip ``round(rate * N)`` labels chosen at random.

    ``symmetric``: each flipped label becomes another class, uniformly. ``pairs``: each flipped label becomes
    its class's partner (``pairs`` of class names, both directions; by default the Fashion-MNIST confusions when
    the classes match, else class ``c`` → ``c + 1`` cyclically). Only samples whose class has a partner flip.
    """
    if kind not in NOISE_KINDS:
        raise SettingsError(f"noise kind {kind!r} is not one of {NOISE_KINDS}.")
    if not 0.0 <= rate < 1.0:
        raise SettingsError(f"noise rate must be in [0, 1); got {rate}.")
    rng = np.random.default_rng(seed)
    clean = dataset.y if dataset.true_y is None else dataset.true_y
    noisy = dataset.y.copy()
    n_classes = dataset.n_classes
    if kind == "symmetric":
        candidates = np.arange(len(noisy))
        partner = None
    else:
        partner = _partner_map(dataset.class_names, pairs)
        candidates = np.flatnonzero(partner[noisy] >= 0)
    count = min(round(rate * len(noisy)), len(candidates))
    flip = rng.choice(candidates, size=count, replace=False)
    if partner is None:
        shift = rng.integers(1, n_classes, size=count)
        noisy[flip] = (noisy[flip] + shift) % n_classes
    else:
        noisy[flip] = partner[noisy[flip]]
    return replace(dataset, y=noisy, true_y=clean.copy())


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
