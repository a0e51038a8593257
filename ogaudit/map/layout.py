"""The gradient map: a 2-D layout of per-sample gradients (UMAP, or PCA as the fast mode).

Rows are L2-normalised first, so the map shows gradient *directions* (which classes a sample pulls between,
from which features) rather than collapsing every well-fitted sample onto the origin; the flags, which come
from the magnitudes and outlyingness, are drawn on top.

The map reads gradients through :meth:`~ogaudit.gradients.GradientEvidence.map_vectors`, which projects them to
at most :data:`MAP_DIM` dimensions without forming the full per-sample gradients. Above :data:`MAP_SAMPLE` samples,
PCA and UMAP are fitted on a seeded random sample of that size; every other sample is placed at the
similarity-weighted mean position of its :data:`PLACE_NEIGHBOURS` nearest fitted samples (the starting point of UMAP's
own ``transform``, without its per-point refinement, which measured ~400 rows/s on 2 cores: 40 min at 10⁶), in
chunks with progress and cancel checks. Results are cached by the pipeline (:mod:`ogaudit.cache.artifacts`), not here.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING

import numpy as np
from sklearn.decomposition import PCA

from ogaudit.detectors.neighbours import anchor_index, exact_neighbours
from ogaudit.errors import SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.settings import MAP_METHODS

if TYPE_CHECKING:
    from ogaudit.gradients import GradientEvidence

PCA_DIMS = 50
MAP_SAMPLE = 50_000
"""Samples above which the map is fitted on a random sample of this size and the rest placed by ``transform``.
A UMAP fit grows faster than linearly and cannot be cancelled midway (~1 min at 50k on 2 cores); its transform
places the rest in chunks (docs/BENCHMARKS.md, "Neighbours at scale")."""
TRANSFORM_CHUNK = 4_096
"""Samples placed per step (a (chunk × MAP_SAMPLE) cosine product), between progress reports and cancel checks."""
PLACE_NEIGHBOURS = 10
"""Fitted samples whose map positions place each other sample."""
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
    Above :data:`MAP_SAMPLE` samples both are fitted on a sample drawn with ``seed`` and the rest transformed (the
    sample keeps the positions of its own fit); at or below it, everything is fitted at once.
    Raises :class:`~ogaudit.errors.SettingsError` for an unknown method; :class:`~ogaudit.errors.Cancelled`.
    """
    if method not in MAP_METHODS:
        raise SettingsError(f"map method {method!r} is not one of {MAP_METHODS}.")
    n = len(evidence) if isinstance(evidence, np.ndarray) else len(evidence.labels)
    if method == "none":
        return np.zeros((n, 2), dtype=np.float32)
    report(progress, "map", 0.02, "projecting gradients")
    dims = PCA_DIMS if method == "umap" else 2
    if n > MAP_SAMPLE:  # rows are projected as they are needed: (N, MAP_DIM) is never held at once

        def vectors_of(rows: np.ndarray) -> np.ndarray:
            if isinstance(evidence, np.ndarray):
                return evidence[rows]
            return evidence.map_vectors(MAP_DIM, seed=seed, rows=rows)

        return _sampled_map(vectors_of, n, method, dims, seed, progress, cancel)
    vectors = evidence if isinstance(evidence, np.ndarray) else evidence.map_vectors(MAP_DIM, seed=seed)
    check_cancel(cancel)
    report(progress, "map", 0.05, "reducing dimensions")
    reduced = _pca(_normalise_rows(vectors), dims, seed)
    check_cancel(cancel)
    if method == "umap" and len(vectors) > 15:
        report(progress, "map", 0.2, "UMAP layout")
        coords = _umap(reduced, seed)
    else:
        coords = reduced[:, :2]
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    report(progress, "map", 1.0, "done")
    return coords


def map_sample(n: int, seed: int) -> np.ndarray:
    """(min(n, MAP_SAMPLE),) sorted positions of the samples the map is fitted on (all of them up to MAP_SAMPLE)."""
    if n <= MAP_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAP_SAMPLE, replace=False))


def _sampled_map(vectors_of, n: int, method: str, dims: int, seed: int, progress, cancel) -> np.ndarray:
    """Fit PCA (and UMAP) on :func:`map_sample` and place the other rows, chunk by chunk; ``vectors_of(rows)``
    gives the map vectors of the (sorted) positions ``rows``."""
    sample = map_sample(n, seed)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    fitted = _normalise_rows(vectors_of(sample))
    check_cancel(cancel)
    report(progress, "map", 0.05, "reducing dimensions")
    pca = None
    if fitted.shape[1] > dims:
        pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(fitted)
        fitted = pca.transform(fitted)
    check_cancel(cancel)
    coords = np.empty((n, 2), dtype=np.float32)
    if method == "umap":
        report(progress, "map", 0.2, f"UMAP layout of a {len(sample):,}-sample fit")
        coords[sample] = _umap(fitted, seed)
    else:
        coords[sample] = fitted[:, :2]
    search = anchor_index(_normalise_rows(fitted)) if method == "umap" else None
    for start in range(0, len(rest), TRANSFORM_CHUNK):
        check_cancel(cancel)
        report(progress, "map", 0.6 + 0.4 * start / len(rest), f"placing the other samples: {start:,}/{len(rest):,}")
        rows = rest[start : start + TRANSFORM_CHUNK]
        part = _normalise_rows(vectors_of(rows))
        part = pca.transform(part) if pca is not None else part
        coords[rows] = part[:, :2] if search is None else place_by_neighbours(search, coords[sample], part)
    report(progress, "map", 1.0, "done")
    return coords


def place_by_neighbours(search, positions: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(b, 2) map positions for ``queries`` (b, d): the mean position of each one's :data:`PLACE_NEIGHBOURS` most
    cosine-similar fitted samples (``search`` from :func:`~ogaudit.detectors.neighbours.anchor_index` over them; ``positions``
    (M, 2) where they lie), weighted by ``1 / (1 − cos)`` so a near-copy of a fitted sample lands on it."""
    k = min(PLACE_NEIGHBOURS, len(positions))
    indices, cosines = search(_normalise_rows(queries), k)
    found = indices >= 0
    weights = np.where(found, 1.0 / (1.0 - np.minimum(cosines, 1.0) + 1e-3), 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return np.einsum("bk,bkc->bc", weights, positions[np.where(found, indices, 0)]).astype(np.float32)


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _pca(vectors: np.ndarray, dims: int, seed: int) -> np.ndarray:
    dims = min(dims, vectors.shape[1], len(vectors))
    if vectors.shape[1] <= dims:
        return vectors
    return PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit_transform(vectors)


UMAP_NEIGHBOURS = 15
"""UMAP's ``n_neighbors`` (its default): the size of the local neighbourhood each point's layout keeps."""


def _umap(vectors: np.ndarray, seed: int) -> np.ndarray:
    """(N, 2) float32: UMAP (McInnes et al. 2018) of the unit rows of ``vectors`` (N, d), on their exact
    neighbour graph.

    The ``UMAP_NEIGHBOURS``-nearest-neighbour graph comes from :func:`~ogaudit.detectors.neighbours.exact_neighbours` (faiss)
    and is handed to umap-learn as ``precomputed_knn``, with the Euclidean distances of the unit rows
    (``√(2 − 2 cos)``). umap-learn then skips its own approximate search (pynndescent), whose numba kernels took
    ~40 s to compile in every new process on 2 cores, and the graph is exact. umap-learn's ``transform`` is not
    available on the result; the map places new rows with :func:`place_by_neighbours` instead.
    """
    import umap

    unit = _normalise_rows(vectors)
    n = len(unit)
    k = min(UMAP_NEIGHBOURS, n - 1)
    found, cosines = exact_neighbours(unit, k - 1)  # umap-learn counts each row as its own first neighbour
    indices = np.concatenate([np.arange(n, dtype=np.int64)[:, None], found], axis=1).astype(np.int32)
    distances = np.concatenate(
        [np.zeros((n, 1), dtype=np.float32), np.sqrt(np.maximum(2.0 - 2.0 * cosines, 0.0))], axis=1
    ).astype(np.float32)
    reducer = umap.UMAP(n_neighbors=k, min_dist=0.1, random_state=seed, n_jobs=1, precomputed_knn=(indices, distances))
    with warnings.catch_warnings():  # "transform will be unavailable": the map never calls it
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return reducer.fit_transform(unit).astype(np.float32)


def start_umap_warm_up() -> threading.Thread:
    """Fit a tiny UMAP in a background thread, so that numba compiles its kernels (~8 s on 2 cores, once per
    process) while the model trains instead of during the first real map."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    thread = threading.Thread(target=_umap, args=(vectors, 0), name="ogaudit-umap-warm-up", daemon=True)
    thread.start()
    return thread
