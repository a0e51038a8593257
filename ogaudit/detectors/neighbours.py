"""The k nearest neighbours of every row by cosine: exact in chunks up to :data:`APPROXIMATE_ABOVE` rows, an
approximate index above it.

Every all-pairs neighbour search in ogaudit goes through :func:`nearest_neighbours` (the gradient-neighbour
detectors, the review's evidence for a whole run, near duplicates), so that no step costs an (N × N) product once N
is large. The exact path is the reference the approximate one is measured against (``benchmarks/bench_neighbours.py``;
docs/BENCHMARKS.md, "Neighbours at scale"). No streamlit here; torch and faiss are imported when a search runs.
"""

from __future__ import annotations

import threading

import numpy as np

from ogaudit.errors import ModelError, SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report

APPROXIMATE_ABOVE = 50_000
"""Rows above which :func:`nearest_neighbours` uses the approximate index. Below it the exact chunked search takes
seconds (it grows as N²: ~4 s at 50k × 128 on 2 cores, ~150 s at 200k) and its results need no recall caveat;
above it the index is faster and keeps recall@20 ≥ 0.95 (docs/BENCHMARKS.md)."""

EXACT_CHUNK = 4096
"""Query rows per chunk of the exact search, between progress reports and cancel checks: under a second at 50k rows."""

INDEX_BATCH = 16_384
"""Rows added to / searched in the approximate index between progress reports and cancel checks."""

HNSW_LINKS = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32
"""faiss HNSW settings (Malkov & Yashunin 2018): links per node, build-time and query-time beam widths. Measured on
100k gradient directions of the Fashion-MNIST CNN: recall@20 0.997 at about half the time of M = 32 / ef = 64
(recall 1.000); IVF-Flat was as fast at 100k but scans O(√N) rows per query and needs a k-means fit, so it scales
worse to 10⁶ (docs/BENCHMARKS.md, "Neighbours at scale")."""


def nearest_neighbours(
    directions: np.ndarray,
    k: int,
    *,
    approximate: bool | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stage: str = "detect",
    span: tuple[float, float] = (0.0, 1.0),
    chunk: int = EXACT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most cosine-similar to each row of ``directions``, the row itself excluded.

    ``directions`` (N, d) unit rows (cosine = dot product). ``approximate``: None chooses by size (above
    :data:`APPROXIMATE_ABOVE` rows, :func:`approximate_neighbours`), True / False forces a path.
    ``progress(stage, fraction, message)`` is called with fractions inside ``span`` at least every chunk, and
    ``cancel`` is checked as often (:class:`~ogaudit.errors.Cancelled`). ``chunk``: query rows per product on the
    exact path.

    Returns ``(indices (N, k') int64, cosines (N, k') float32)``, most similar first, ``k' = min(k, N − 1)``.
    Raises :class:`~ogaudit.errors.SettingsError` for ``k < 1``, :class:`~ogaudit.errors.ModelError` for a row
    with NaN or infinite values (faiss would leave it without neighbours).
    """
    if k < 1:
        raise SettingsError(f"k must be at least 1; got {k}.")
    directions = np.ascontiguousarray(directions, dtype=np.float32)
    finite = np.isfinite(directions).all(axis=1)
    if not finite.all():
        raise ModelError(
            f"{int((~finite).sum()):,} of {len(directions):,} rows to search (the first at position "
            f"{int(np.flatnonzero(~finite)[0])}) hold NaN or infinite values: the model's features or gradients "
            "overflowed. Check the checkpoint, or scale the data down."
        )
    if approximate is None:
        approximate = len(directions) > APPROXIMATE_ABOVE
    if approximate:
        return approximate_neighbours(
            directions, k, seed=seed, progress=progress, cancel=cancel, stage=stage, span=span
        )
    return exact_neighbours(directions, k, progress=progress, cancel=cancel, stage=stage, span=span, chunk=chunk)


def exact_neighbours(
    directions: np.ndarray,
    k: int,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stage: str = "detect",
    span: tuple[float, float] = (0.0, 1.0),
    chunk: int = EXACT_CHUNK,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact search, O(N² d). Same contract as :func:`nearest_neighbours`.

    ``backend``: ``"faiss"``, a flat inner-product index (Johnson et al. 2019: BLAS products and a heap per query)
    searched ``chunk`` query rows at a time; ``"torch"``, (chunk × N) products and a top-k per chunk; None takes
    faiss when it is installed. faiss took 0.57-0.75 of torch's time at 10k-50k rows of 128-1,152 dimensions on 2
    cores (``benchmarks/bench_neighbours.py --exact-paths``). Both are exact: rows whose cosines tie (repeated
    samples) may list the tied neighbours in another order.
    """
    if backend not in (None, "faiss", "torch"):
        raise SettingsError(f"backend must be 'faiss', 'torch' or None; got {backend!r}.")
    directions = np.ascontiguousarray(directions, dtype=np.float32)
    n = len(directions)
    k = min(k, n - 1)
    indices = np.zeros((n, max(k, 0)), dtype=np.int64)
    cosines = np.zeros((n, max(k, 0)), dtype=np.float32)
    if k < 1:
        return indices, cosines
    faiss = None
    if backend != "torch":
        try:
            import faiss
        except ImportError:
            if backend == "faiss":
                raise
    if faiss is not None:
        index = faiss.IndexFlatIP(directions.shape[1])
        index.add(directions)
    else:
        import torch  # imported here: the review modules use this module without needing torch for small searches

        table = torch.from_numpy(directions)
    for start in range(0, n, chunk):
        check_cancel(cancel)
        stop = min(start + chunk, n)
        if faiss is not None:
            found_cos, found = index.search(directions[start:stop], k + 1)
            indices[start:stop], cosines[start:stop] = _drop_self(found, found_cos, np.arange(start, stop), k)
        else:
            block = table[start:stop] @ table.T  # (b, N) cosines
            block[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
            top = torch.topk(block, k, dim=1, sorted=True)
            indices[start:stop], cosines[start:stop] = top.indices.numpy(), top.values.numpy()
        _report(progress, stage, span, stop / n, f"exact neighbours: {stop:,}/{n:,}")
    return indices, cosines


def approximate_neighbours(
    directions: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stage: str = "detect",
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search with a faiss HNSW graph on inner products (Johnson et al. 2019; Malkov & Yashunin
    2018), built and queried in batches of :data:`INDEX_BATCH` rows. Same contract as :func:`nearest_neighbours`.

    Rows whose search returns fewer than ``k`` other rows are searched exactly, so every row gets ``k``.
    faiss draws node levels from a fixed seed (``seed`` is accepted for a future index that takes one); the graph is
    built by all of faiss's threads, so with more than one thread a run can differ from another by a few
    neighbours of a few rows (recall stays as measured). Raises ImportError naming ``faiss-cpu`` when it is missing.
    """
    try:
        import faiss
    except ImportError as error:  # a core dependency; a broken install should still say what to do
        raise ImportError(
            f"Searching {len(directions):,} rows needs the approximate index of faiss-cpu (above "
            f"{APPROXIMATE_ABOVE:,} rows); install it with `pip install faiss-cpu`."
        ) from error

    directions = np.ascontiguousarray(directions, dtype=np.float32)
    n, dim = directions.shape
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, max(k, 0)), dtype=np.int64), np.zeros((n, max(k, 0)), dtype=np.float32)
    index = _hnsw_index(faiss, dim, k)
    build = span[0] + 0.5 * (span[1] - span[0])
    for start in range(0, n, INDEX_BATCH):
        check_cancel(cancel)
        index.add(directions[start : start + INDEX_BATCH])
        _report(progress, stage, (span[0], build), min(start + INDEX_BATCH, n) / n, "building the neighbour index")
    indices = np.empty((n, k), dtype=np.int64)
    cosines = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, INDEX_BATCH):
        check_cancel(cancel)
        stop = min(start + INDEX_BATCH, n)
        found_cos, found = index.search(directions[start:stop], k + 1)
        indices[start:stop], cosines[start:stop] = _drop_self(found, found_cos, np.arange(start, stop), k)
        _report(progress, stage, (build, span[1]), stop / n, f"approximate neighbours: {stop:,}/{n:,}")
    short = np.flatnonzero(indices.min(axis=1) < 0)
    if len(short):  # a graph search that came back short: search those rows exactly
        cos_all = directions[short] @ directions.T
        cos_all[np.arange(len(short)), short] = -np.inf
        top = np.argpartition(-cos_all, k - 1, axis=1)[:, :k]
        top_cos = np.take_along_axis(cos_all, top, axis=1)
        order = np.argsort(-top_cos, axis=1, kind="stable")
        indices[short] = np.take_along_axis(top, order, axis=1)
        cosines[short] = np.take_along_axis(top_cos, order, axis=1)
    return indices, cosines


def _drop_self(found: np.ndarray, found_cos: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of ``k + 1`` search results per row, without the row itself (kept in order); missing
    results (index −1) sort last and stay −1."""
    found_cos = np.where((found == rows[:, None]) | (found < 0), -np.inf, found_cos)
    order = np.argsort(-found_cos, axis=1, kind="stable")[:, :k]
    indices = np.take_along_axis(found, order, axis=1)
    cosines = np.take_along_axis(found_cos, order, axis=1)
    indices[~np.isfinite(cosines)] = -1
    return indices, cosines.astype(np.float32)


def _report(progress, stage: str, span: tuple[float, float], fraction: float, message: str) -> None:
    report(progress, stage, span[0] + (span[1] - span[0]) * fraction, message)


def anchor_index(anchors: np.ndarray):
    """A search over ``anchors`` (M, d unit rows) for other rows: returns ``search(queries (b, d) unit rows, k)
    -> (indices (b, k) int64, cosines (b, k) float32)``, most similar first.

    A faiss HNSW graph on inner products (as :func:`approximate_neighbours`; the queries are usually many), or an
    exact (b × M) product when faiss is missing. Rows faiss cannot fill come back as index −1.
    """
    anchors = np.ascontiguousarray(anchors, dtype=np.float32)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is None:
        import torch

        table = torch.from_numpy(anchors)

        def exact(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            top = torch.topk(torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) @ table.T, k, dim=1)
            return top.indices.numpy(), top.values.numpy()

        return exact
    index = _hnsw_index(faiss, anchors.shape[1], 1)
    index.add(anchors)

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k + 1)
        cosines, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return indices.astype(np.int64), cosines

    return search


def _hnsw_index(faiss, dim: int, k: int):
    """An empty faiss HNSW graph on inner products with this module's settings, searching for ``k`` neighbours."""
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, k + 1)
    return index
