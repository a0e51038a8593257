"""Duplicates and conflicts: the same content under several ids, above all with different labels.

* **Exact** duplicates have byte-identical inputs (one hash per sample), or for text identical texts.
* **Near** duplicates are pairs whose coarse pictures (:func:`pixel_directions`: grey, 16 × 16, mean removed)
  have a cosine of at least ``threshold``: a re-encoded, resized or re-exposed copy. (The model's features are not
  used: confident samples of one class have nearly parallel features without being copies.) For text they are
  different texts whose sentence embeddings have that cosine: texts the frozen encoder reads alike, such as two
  long documents that share their first 256 tokens (:func:`duplicate_inputs`).

A group whose members carry different given labels is a **conflict**: at least one of its labels is wrong, whatever
the detector's score says. No streamlit and no torch here.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ogaudit.detectors import neighbours as _neighbours

COLUMNS = ["group", "kind", "sample_id", "given_label", "conflict", "size"]


def exact_groups(x: np.ndarray) -> np.ndarray:
    """(N,) group number per sample (-1 when it has no exact duplicate): equal texts for a 1-D array of strings
    (``pandas.factorize``), else a hash of each input's bytes."""
    x = np.asarray(x)
    if x.ndim == 1 and x.dtype.kind in "OUS":
        inverse = pd.factorize(pd.Series(x, dtype=object))[0]
        counts = np.bincount(inverse)
        return _renumber(np.where(counts[inverse] > 1, inverse, -1))
    rows = np.ascontiguousarray(x.reshape(len(x), -1))
    digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in rows])
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    groups = np.where(counts[inverse] > 1, inverse, -1)
    return _renumber(groups)


NEAR_CANDIDATES = 10
"""Nearest rows per row examined for near duplicates above :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` rows: a
group of more copies still joins up through chains of pairs."""


def near_pairs(directions: np.ndarray, *, threshold: float = 0.999, chunk: int = 1024) -> np.ndarray:
    """(P, 2) index pairs ``i < j`` whose unit rows have a cosine ≥ ``threshold``.

    Exact search in chunks of ``chunk`` rows up to :data:`~ogaudit.detectors.neighbours.APPROXIMATE_ABOVE` rows; above it, the
    pairs among each row's :data:`NEAR_CANDIDATES` nearest rows from the approximate index
    (:func:`~ogaudit.detectors.neighbours.nearest_neighbours`), sorted.
    """
    directions = np.asarray(directions, dtype=np.float32)
    if len(directions) > _neighbours.APPROXIMATE_ABOVE:
        found, cosines = _neighbours.nearest_neighbours(directions, NEAR_CANDIDATES, approximate=True)
        rows = np.repeat(np.arange(len(directions)), found.shape[1])
        keep = (cosines.ravel() >= threshold) & (found.ravel() >= 0)
        pairs = np.sort(np.column_stack([rows[keep], found.ravel()[keep]]), axis=1)
        return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    pairs = []
    for start in range(0, len(directions), chunk):
        block = directions[start : start + chunk] @ directions.T  # (b, N)
        rows, cols = np.nonzero(block >= threshold)
        rows = rows + start
        keep = rows < cols
        pairs.append(np.column_stack([rows[keep], cols[keep]]))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """(N,) connected component of each node under ``pairs`` (-1 for nodes in no pair)
    (``scipy.sparse.csgraph.connected_components``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, roots = connected_components(graph, directed=False)
    paired = np.zeros(n, dtype=bool)
    paired[pairs.ravel()] = True
    return _renumber(np.where(paired, roots, -1))


def _renumber(groups: np.ndarray) -> np.ndarray:
    out = np.full(len(groups), -1, dtype=np.int64)
    inside = groups >= 0
    if inside.any():
        _, out[inside] = np.unique(groups[inside], return_inverse=True)
    return out


def find_duplicates(
    sample_ids: np.ndarray,
    given_labels: np.ndarray,
    *,
    x: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    threshold: float = 0.999,
) -> pd.DataFrame:
    """Duplicate groups, one row per member: group, kind ("exact" or "near"), sample_id, given_label, conflict
    (the group's members disagree on the label) and size. Conflicting groups first, then by size.

    ``x`` (N, ...) the inputs, for exact duplicates; ``directions`` (N, d) unit rows (:func:`pixel_directions`),
    for near ones (pairs inside one exact group are not listed again as near).
    """
    sample_ids = np.asarray(sample_ids, dtype=object)
    given_labels = np.asarray(given_labels, dtype=object)
    n = len(sample_ids)
    frames = []
    exact = exact_groups(x) if x is not None else np.full(n, -1)
    if (exact >= 0).any():
        frames.append(pd.DataFrame({"kind": "exact", "raw": exact, "position": np.arange(n)})[exact >= 0])
    if directions is not None:
        pairs = near_pairs(directions, threshold=threshold)
        pairs = pairs[(exact[pairs[:, 0]] < 0) | (exact[pairs[:, 0]] != exact[pairs[:, 1]])] if len(pairs) else pairs
        near = _components(n, pairs) if len(pairs) else np.full(n, -1)
        if (near >= 0).any():
            frames.append(pd.DataFrame({"kind": "near", "raw": near, "position": np.arange(n)})[near >= 0])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["sample_id"] = sample_ids[table["position"]]
    table["given_label"] = given_labels[table["position"]]
    key = table["kind"] + ":" + table["raw"].astype(str)
    table["conflict"] = table.groupby(key)["given_label"].transform("nunique") > 1
    table["size"] = table.groupby(key)["sample_id"].transform("size")
    order = table.assign(key=key).sort_values(
        ["conflict", "size", "key"], ascending=[False, False, True], kind="stable"
    )
    order["group"] = pd.factorize(order["key"])[0] + 1
    return order[COLUMNS].reset_index(drop=True)


def duplicate_inputs(dataset, *, near_limit: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(x, directions)`` for :func:`find_duplicates` on a :class:`~ogaudit.data.dataset.Dataset`.

    Text: its texts (exact = the same text) and its unit sentence embeddings (near = read alike by the encoder).
    Images and vectors in memory: their arrays and :func:`pixel_directions`. Images read lazily from files:
    (None, None), no pass over the pixels. ``directions`` is None above ``near_limit`` samples (the near search is
    an N × N product).
    """
    if dataset.is_text:
        x = dataset.texts
        embedded = isinstance(dataset.x, np.ndarray) and dataset.x.ndim == 2 and dataset.x.shape[1] > 0
        near = None
        if embedded and dataset.x.dtype.kind == "f" and len(dataset) <= near_limit:
            vectors = np.asarray(dataset.x, dtype=np.float32)
            near = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return x, near
    if not isinstance(dataset.x, np.ndarray):
        return None, None
    return dataset.x, pixel_directions(dataset.x) if len(dataset) <= near_limit else None


def pixel_directions(x: np.ndarray, *, side: int = 16) -> np.ndarray:
    """(N, side²) unit rows for near-duplicate search: each input in grey, sampled on a ``side`` × ``side`` grid,
    its mean removed (so brightness and contrast changes do not matter). Vectors (N, d) are centred as they are."""
    x = np.asarray(x)
    if x.ndim >= 3:
        grey = x.astype(np.float32) if x.ndim == 3 else x.astype(np.float32).mean(axis=3)
        rows = np.linspace(0, grey.shape[1] - 1, min(side, grey.shape[1])).round().astype(int)
        cols = np.linspace(0, grey.shape[2] - 1, min(side, grey.shape[2])).round().astype(int)
        flat = grey[:, rows][:, :, cols].reshape(len(x), -1)
    else:
        flat = x.reshape(len(x), -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
