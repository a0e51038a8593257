"""Neighbour-search and map benchmark at scale: approximate indexes against exact search, on real gradient
directions.

Run:  .venv/bin/python benchmarks/bench_neighbours.py [--sizes 100000] [--map-sizes 200000] [--skip-ap]

The vectors are the ones the default detector searches: the unit feature factors ``h̃`` (128-d) of the small CNN
trained on Fashion-MNIST (60k, 20% planted noise), computed for the 60k training images, the 10k test images and
copies of the training images shifted by up to 2 pixels (seeded), as many as ``--sizes`` asks.

Prints, in one run:
1. for each size: build + query time and recall@20 against exact search of every candidate library
   (pynndescent, faiss HNSW, faiss IVF-Flat, usearch HNSW), all for the k = 20 neighbours of every row;
2. the default detector's AUROC / AP on the 60k Fashion-MNIST benchmark with exact and with approximate neighbours;
3. the gradient map's time (UMAP fitted on a sample, the rest placed by ``transform``) at ``--map-sizes``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

K = 20


def real_directions(n: int, cache: Path, seed: int = 0) -> tuple[np.ndarray, object]:
    """(n, 128) unit feature rows of the trained CNN, and the 60k audit result (for the AP comparison)."""
    from ogaudit.data import load_dataset, load_fashion_mnist
    from ogaudit.gradients import HeadEvidence
    from ogaudit.models import build_model
    from ogaudit.noise import inject_label_noise
    from ogaudit.pipeline import AuditSettings, audit
    from ogaudit.training import batched_features, load_model_state

    noisy = inject_label_noise(load_dataset("fashion-mnist"), 0.2, seed=seed)
    result = audit(noisy, AuditSettings(seed=seed, map_method="none"), cache_dir=cache)
    if n <= len(noisy):
        return result.evidence.directions()[:n], result
    model = build_model("cnn", noisy, seed=seed)
    load_model_state(model, cache / "models" / f"{result.record['model']['key']}.pt")
    rng = np.random.default_rng(seed)
    parts, total = [result.evidence.directions()], len(noisy)
    test = load_fashion_mnist("test").x
    while total < n:
        x = test if len(parts) == 1 else np.roll(noisy.x, tuple(rng.integers(-2, 3, size=2)), axis=(1, 2))
        x = x[: n - total]
        features = batched_features(model, x)
        parts.append(HeadEvidence(features, np.full((len(x), 10), 0.1), np.zeros(len(x), np.int64)).directions())
        total += len(x)
    return np.concatenate(parts), result


def exact(vectors: np.ndarray) -> np.ndarray:
    from ogaudit.neighbours import exact_neighbours

    return exact_neighbours(vectors, K)[0]


def with_pynndescent(vectors: np.ndarray) -> np.ndarray:
    from pynndescent import NNDescent

    index = NNDescent(vectors, metric="dot", n_neighbors=K + 1, random_state=0, n_jobs=-1, compressed=True)
    return index.neighbor_graph[0]


def with_faiss_hnsw(vectors: np.ndarray, m: int = 32, ef_construction: int = 40, ef_search: int = 64) -> np.ndarray:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    index.add(vectors)
    return index.search(vectors, K + 1)[1]


def with_faiss_ivf(vectors: np.ndarray, nprobe: int = 16) -> np.ndarray:
    import faiss

    nlist = int(4 * np.sqrt(len(vectors)))
    quantiser = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantiser, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0
    index.train(vectors)
    index.add(vectors)
    index.nprobe = nprobe
    return index.search(vectors, K + 1)[1]


def with_usearch(vectors: np.ndarray, connectivity: int = 16, expansion_search: int = 64) -> np.ndarray:
    from usearch.index import Index

    index = Index(
        ndim=vectors.shape[1],
        metric="ip",
        dtype="f32",
        connectivity=connectivity,
        expansion_add=128,
        expansion_search=expansion_search,
    )
    index.add(np.arange(len(vectors)), vectors)
    return np.asarray(index.search(vectors, K + 1).keys, dtype=np.int64)


def with_ogaudit(vectors: np.ndarray) -> np.ndarray:
    from ogaudit.neighbours import approximate_neighbours

    return approximate_neighbours(vectors, K)[0]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true k neighbours found among its returned ones (self removed from both)."""
    n = len(truth)
    hits = 0
    for start in range(0, n, 10_000):
        f, t = found[start : start + 10_000], truth[start : start + 10_000]
        rows = np.arange(start, start + len(t))[:, None]
        f = np.where(f == rows, -2, f)  # self is not a neighbour
        hits += int((t[:, :, None] == f[:, None, :]).any(axis=2).sum())
    return hits / truth.size


def time_library(name: str, function, vectors: np.ndarray, truth: np.ndarray) -> tuple[str, float, float]:
    start = time.perf_counter()
    found = function(vectors)
    seconds = time.perf_counter() - start
    return name, seconds, recall(found, truth)


def library_table(vectors: np.ndarray, *, libraries: list[str]) -> None:
    n = len(vectors)
    start = time.perf_counter()
    truth = exact(vectors)
    exact_s = time.perf_counter() - start
    print(f"\n## k = {K} neighbours of every row, {n:,} x {vectors.shape[1]} directions")
    print("| method | build + query s | recall@20 |\n|---|---:|---:|")
    print(f"| exact (ogaudit chunked torch top-k) | {exact_s:.1f} | 1.000 |")
    candidates = {
        "ogaudit approximate (the default above the threshold)": with_ogaudit,
        "faiss HNSW M=32 efC=40 efS=64": with_faiss_hnsw,
        "faiss HNSW M=16 efC=40 efS=32": lambda v: with_faiss_hnsw(v, 16, 40, 32),
        "faiss IVF-Flat nlist=4sqrtN nprobe=16": with_faiss_ivf,
        "faiss IVF-Flat nlist=4sqrtN nprobe=8": lambda v: with_faiss_ivf(v, 8),
        "usearch HNSW M=16 ef=64": with_usearch,
        "pynndescent (first call includes numba compile)": with_pynndescent,
        "pynndescent (compiled)": with_pynndescent,
    }
    for name, function in candidates.items():
        if not any(name.startswith(prefix) for prefix in libraries):
            continue
        label, seconds, hit = time_library(name, function, vectors, truth)
        print(f"| {label} | {seconds:.1f} | {hit:.3f} |", flush=True)


def detector_comparison(result) -> None:
    """The default detector's AUROC / AP with exact and with approximate neighbours, same evidence."""
    from ogaudit import neighbours
    from ogaudit.detectors import make_detector
    from ogaudit.metrics import detection_metrics

    evidence = result.evidence
    is_noisy = result.scores["is_noisy"].to_numpy()
    print(f"\n## Default detector, Fashion-MNIST {len(is_noisy):,}, 20% planted noise, exact vs approximate neighbours")
    print("| neighbours | AUROC | average precision | detect s |\n|---|---:|---:|---:|")
    rows = {}
    for label, threshold in (("exact", 10**12), ("approximate", 0)):
        saved = neighbours.APPROXIMATE_ABOVE
        neighbours.APPROXIMATE_ABOVE = threshold
        try:
            start = time.perf_counter()
            scores = make_detector("posterior").fit(evidence).outlier_scores(evidence)
            seconds = time.perf_counter() - start
        finally:
            neighbours.APPROXIMATE_ABOVE = saved
        rows[label] = detection_metrics(is_noisy, scores)
        print(f"| {label} | {rows[label]['auroc']:.4f} | {rows[label]['average_precision']:.4f} | {seconds:.1f} |")
    gap = rows["approximate"]["average_precision"] - rows["exact"]["average_precision"]
    print(f"AP approximate − exact: {gap:+.4f} (target within ±0.005)")


def map_table(vectors: np.ndarray, sizes: list[int]) -> None:
    from ogaudit.embedding import MAP_SAMPLE, gradient_map

    print(f"\n## Gradient map: UMAP fitted on {MAP_SAMPLE:,} rows, the rest placed by transform")
    print("| rows | PCA + fit s | transform s | total s |\n|---|---:|---:|---:|")
    gradient_map(vectors[:2000], method="umap")  # numba compiles once per process; not counted
    for n in sizes:
        rows = vectors[np.resize(np.arange(len(vectors)), n)] if n > len(vectors) else vectors[:n]
        marks: dict[str, float] = {}
        start = time.perf_counter()

        def progress(stage, fraction, message, marks=marks, start=start):
            if message.startswith("placing") and "transform" not in marks:
                marks["transform"] = time.perf_counter() - start

        gradient_map(rows, method="umap", progress=progress)
        total = time.perf_counter() - start
        fit = marks.get("transform", total)
        print(f"| {n:,} | {fit:.0f} | {total - fit:.0f} | {total:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--map-sizes", type=int, nargs="*", default=[200_000])
    parser.add_argument("--libraries", nargs="*", default=["ogaudit", "faiss", "usearch", "pynndescent"])
    parser.add_argument("--skip-ap", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ogaudit-bench-cache")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    vectors, result = real_directions(max(args.sizes + [60_000]), args.cache_dir)
    for n in args.sizes:
        library_table(np.ascontiguousarray(vectors[:n]), libraries=args.libraries)
    if not args.skip_ap:
        detector_comparison(result)
    if args.map_sizes:
        map_table(vectors, args.map_sizes)


if __name__ == "__main__":
    main()
