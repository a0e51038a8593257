"""The gradient map: a 2-D layout of per-sample gradients (UMAP, or PCA as the fast mode).

Rows are L2-normalised first, so the map shows gradient *directions* (which classes a sample pulls between,
from which features) rather than collapsing every well-fitted sample onto the origin; the flags, which come
from the magnitudes and outlyingness, are drawn on top.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.storage import atomic_path

MAP_METHODS = ("umap", "pca", "none")
PCA_DIMS = 50


def gradient_map(
    vectors: np.ndarray,
    *,
    method: str = "umap",
    seed: int = 0,
    cache_path: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Embed (N, D) gradient vectors into (N, 2) float32; read from / write to ``cache_path`` when given."""
    if method not in MAP_METHODS:
        raise SettingsError(f"map method {method!r} is not one of {MAP_METHODS}.")
    if cache_path is not None and cache_path.exists():
        return np.load(cache_path)
    if method == "none":
        return np.zeros((len(vectors), 2), dtype=np.float32)
    report(progress, "map", 0.05, "reducing dimensions")
    reduced = _pca(_normalise_rows(vectors), PCA_DIMS if method == "umap" else 2, seed)
    check_cancel(cancel)
    if method == "umap" and len(vectors) > 15:
        report(progress, "map", 0.2, "UMAP layout")
        coords = _umap(reduced, seed)
    else:
        coords = reduced[:, :2]
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    if cache_path is not None:
        with atomic_path(cache_path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, coords)
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
