"""The gradient map: a 2-D layout of per-sample gradients (UMAP, or PCA as the fast mode).

Rows are L2-normalised first, so the map shows gradient *directions* (which classes a sample pulls between,
from which features) rather than collapsing every well-fitted sample onto the origin; the flags, which come
from the magnitudes and outlyingness, are drawn on top.

The map reads gradients through :meth:`~ogaudit.gradients.GradientEvidence.map_vectors`, which projects them to
at most :data:`MAP_DIM` dimensions without forming the full per-sample gradients. Results are cached by the
pipeline (:mod:`ogaudit.cache`), not here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
from sklearn.decomposition import PCA

from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.settings import MAP_METHODS

if TYPE_CHECKING:
    from ogaudit.gradients import GradientEvidence

PCA_DIMS = 50
MAP_DIM = 512
"""Gradients are projected to at most this many dimensions before PCA (Johnson-Lindenstrauss: the cosines
between samples move by about ``1/sqrt(MAP_DIM / C)``, unbiased)."""


def gradient_map(
    evidence: GradientEvidence | np.ndarray,
    *,
    method: str = "umap",
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Lay out every sample's gradient in 2-D: (N, 2) float32.

    ``evidence`` is a :class:`~ogaudit.gradients.GradientEvidence` (its :meth:`map_vectors` at :data:`MAP_DIM`
    are laid out) or an (N, D) array of gradient vectors. ``method``: "umap" (PCA to 50 dimensions, then UMAP,
    McInnes et al. 2018), "pca" (the first two principal components) or "none" (all zeros).
    Raises :class:`~ogaudit.errors.SettingsError` for an unknown method; :class:`~ogaudit.errors.Cancelled`.
    """
    if method not in MAP_METHODS:
        raise SettingsError(f"map method {method!r} is not one of {MAP_METHODS}.")
    n = len(evidence) if isinstance(evidence, np.ndarray) else len(evidence.labels)
    if method == "none":
        return np.zeros((n, 2), dtype=np.float32)
    report(progress, "map", 0.02, "projecting gradients")
    vectors = evidence if isinstance(evidence, np.ndarray) else evidence.map_vectors(MAP_DIM, seed=seed)
    check_cancel(cancel)
    report(progress, "map", 0.05, "reducing dimensions")
    reduced = _pca(_normalise_rows(vectors), PCA_DIMS if method == "umap" else 2, seed)
    check_cancel(cancel)
    if method == "umap" and len(vectors) > 15:
        report(progress, "map", 0.2, "UMAP layout")
        coords = _umap(reduced, seed)
    else:
        coords = reduced[:, :2]
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    report(progress, "map", 1.0, "done")
    return coords


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _pca(vectors: np.ndarray, dims: int, seed: int) -> np.ndarray:
    dims = min(dims, vectors.shape[1], len(vectors))
    if vectors.shape[1] <= dims:
        return vectors
    return PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit_transform(vectors)


def _umap(vectors: np.ndarray, seed: int, *, approximate: bool = False) -> np.ndarray:
    import umap

    n_neighbors = min(15, len(vectors) - 1)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_jobs=1, force_approximation_algorithm=approximate
    )
    return reducer.fit_transform(vectors)


def start_umap_warm_up() -> threading.Thread:
    """Fit a tiny UMAP in a background thread, so that numba compiles its kernels (~30 s on 2 cores, once per
    process) while the model trains instead of during the first real map."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    # Maps above 4,096 points find neighbours with pynndescent, whose kernels compile separately: force that path.
    thread = threading.Thread(
        target=_umap, args=(vectors, 0), kwargs={"approximate": True}, name="ogaudit-umap-warm-up", daemon=True
    )
    thread.start()
    return thread
