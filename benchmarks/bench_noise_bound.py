"""A reference for ``bench_noise.py``: how well could a detector do on this noise if it knew the clean labels?

For one (noise kind, seed) of ``bench_noise.py`` (the same 20k Fashion-MNIST images, the same planted noise), the
audit's recipe (small CNN, the same epochs) is trained on the **true** labels, cross-fitted in two folds (each
half scored by the model trained on the other half), and each sample's *given* label is scored by
``1 − p(y_given | x)``. No detector sees the clean labels, so this is not a baseline to beat but a bound to read the
detectors against: when even a model that never saw a wrong label finds the flipped samples as plausible in their
given class as in their true one (instance-dependent noise flips exactly the samples a classifier doubts), no
score computed from the image and the noisy labels can separate them much better.

Run (it caches the two folds' probabilities under ``--cache-dir``; ``bench_noise.py --reference`` then reads them)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_noise_bound.py --kinds instance pairs --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ogaudit.cache.artifacts import default_cache_dir  # noqa: E402
from ogaudit.data.load import load_dataset  # noqa: E402
from ogaudit.data.noise import inject_label_noise  # noqa: E402

FOLDS = 2
NOISE_RATE = 0.2
REFERENCE = "reference: true labels (2-fold)"
"""The method name the reference carries in ``bench_noise.py``'s tables."""


def noisy_fashion(kind: str, seed: int, samples: int):
    """``bench_noise.fashion``'s set with its clean labels kept: the noisy Dataset (``true_y`` set)."""
    subset = load_dataset("fashion-mnist", limit=samples, seed=seed)
    return inject_label_noise(subset, NOISE_RATE, kind=kind, seed=seed)


def true_label_probs(noisy, seed: int, cache_dir: Path, epochs: int | None = None) -> tuple[np.ndarray, float]:
    """(N, C) probabilities of the small CNN trained on the clean labels ``noisy.true_y``, each sample scored by
    the fold that did not train on it (``FOLDS`` folds stratified by the clean label); and the folds' total wall
    time in seconds: ``bench_peers.cross_validated_probs`` on the clean labels, cached by their fingerprint."""
    import bench_peers

    return bench_peers.cross_validated_probs(_with_labels(noisy, noisy.true_y), seed, cache_dir, epochs, folds=FOLDS)


def _with_labels(dataset, labels: np.ndarray):
    from dataclasses import replace

    return replace(dataset, y=np.asarray(labels, dtype=dataset.y.dtype), true_y=None)


def reference_scores(noisy, probs: np.ndarray) -> np.ndarray:
    """``1 − p(y_given | x)`` (N,): higher = the clean-label model finds the given label less plausible."""
    return 1.0 - probs[np.arange(len(noisy.y)), noisy.y]


def main() -> None:
    from ogaudit.detectors.metrics import detection_metrics
    from ogaudit.settings import DEFAULT_BUDGET

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["instance", "pairs"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    for seed in args.seeds:
        for kind in args.kinds:
            start = time.perf_counter()
            noisy = noisy_fashion(kind, seed, args.samples)
            print(f"[{kind}, seed {seed}] load {os.getloadavg()}", flush=True)
            probs, seconds = true_label_probs(noisy, seed, args.cache_dir, args.epochs)
            found = detection_metrics(noisy.y != noisy.true_y, reference_scores(noisy, probs), budget=DEFAULT_BUDGET)
            print(
                f"  {REFERENCE}: AUROC {found['auroc']:.3f}  AP {found['average_precision']:.3f}  "
                f"P@5% {found['precision_at_budget']:.3f}  clean-label accuracy "
                f"{(probs.argmax(axis=1) == noisy.true_y).mean():.3f}  ({seconds:.0f} s training, "
                f"{time.perf_counter() - start:.0f} s in all)",
                flush=True,
            )


if __name__ == "__main__":
    main()
