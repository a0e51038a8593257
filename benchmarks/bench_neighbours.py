"""Neighbour-search and map benchmark at scale: approximate indexes against exact search, on real gradient
directions.

Run:  .venv/bin/python benchmarks/bench_neighbours.py [--samples 20000] [--epochs 1] [--sizes 100000]
      [--map-sizes 200000] [--skip-ap]

The vectors are the ones the default detector searches: the unit feature factors ``h̃`` (128-d) of the audit's
small CNN trained on ``--samples`` Fashion-MNIST images (20% symmetric planted noise, seed 0), computed for the
60k training images, the 10k test images and copies of the training images shifted by up to 2 pixels (seeded), as
many as ``--sizes`` asks.

Prints, in one run:
1. for each size: build + query time for the k = 20 neighbours of every row, and recall@20 against exact search on
   ``--recall-queries`` random rows, of every candidate (pynndescent, faiss HNSW, faiss IVF-Flat, usearch HNSW,
   and ogaudit's own approximate path); the exact search's time for all rows is extrapolated from those rows;
2. the default detector's AUROC / AP on the ``--samples`` benchmark with exact and with approximate neighbours;
3. the gradient map's time (UMAP fitted on a sample, the rest placed by ``transform``) at ``--map-sizes``.

``--exact-paths`` instead times the exact search's two backends (faiss flat index, torch products + top-k) on
random unit rows of several sizes, and checks that they find the same neighbours.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

K = 20


def real_directions(n: int, cache: Path, samples: int, epochs: int | None, seed: int = 0) -> tuple[np.ndarray, object]:
    """(n, 128) unit feature rows of the trained CNN, and the audit result (for the AP comparison)."""
    from ogaudit.data.builtins import load_fashion_mnist
    from ogaudit.data.load import load_dataset
    from ogaudit.data.noise import inject_label_noise
    from ogaudit.gradients import HeadEvidence
    from ogaudit.models.nets import build_model
    from ogaudit.models.training import batched_features, load_model_state
    from ogaudit.pipeline.run import AuditSettings, audit

    noisy = inject_label_noise(load_dataset("fashion-mnist", limit=samples, seed=seed), 0.2, seed=seed)
    settings = AuditSettings(model="cnn", seed=seed, epochs=epochs, map_method="none")
    result = audit(noisy, settings, cache_dir=cache)
    print(f"model: small CNN trained {result.record['model']['epochs']} epochs on {len(noisy):,} images", flush=True)
    model = build_model("cnn", noisy, seed=seed)
    model_dir = cache / "v1" / "model" / result.record["model"]["key"]
    load_model_state(model, model_dir / "model.pt")
    rng = np.random.default_rng(seed)
    train = load_fashion_mnist("train").x
    parts, total = [], 0
    sources = [train, load_fashion_mnist("test").x]
    while total < n:
        x = sources[len(parts)] if len(parts) < 2 else np.roll(train, tuple(rng.integers(-2, 3, size=2)), axis=(1, 2))
        x = x[: n - total]
        features = batched_features(model, x)
        parts.append(HeadEvidence(features, np.full((len(x), 10), 0.1), np.zeros(len(x), np.int64)).directions())
        total += len(x)
    return np.concatenate(parts), result


def exact_for(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, K) exact neighbours of the rows ``queries`` (self excluded), by the slow reference product."""
    cosines = vectors[queries] @ vectors.T
    cosines[np.arange(len(queries)), queries] = -np.inf
    return np.argsort(-cosines, axis=1)[:, :K]


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
    from ogaudit.detectors.neighbours import approximate_neighbours

    return approximate_neighbours(vectors, K)[0]


def recall(found: np.ndarray, truth: np.ndarray, queries: np.ndarray) -> float:
    """Mean share of each query row's true K neighbours among its returned ones (self removed)."""
    f = found[queries]
    f = np.where(f == queries[:, None], -2, f)  # self is not a neighbour
    return float((truth[:, :, None] == f[:, None, :]).any(axis=2).mean())


def library_table(vectors: np.ndarray, *, libraries: list[str], queries: int) -> None:
    from ogaudit.detectors.neighbours import exact_neighbours

    n = len(vectors)
    rows = np.sort(np.random.default_rng(0).choice(n, min(queries, n), replace=False))
    truth = exact_for(vectors, rows)
    start = time.perf_counter()
    exact_neighbours(vectors[: min(n, 8192)], K)  # warm-up
    probe = vectors[:4096]
    start = time.perf_counter()
    for chunk in range(0, len(probe), 1024):
        block = probe[chunk : chunk + 1024] @ vectors.T
        np.argpartition(-block, K, axis=1)
    exact_s = (time.perf_counter() - start) * n / len(probe)
    print(f"\n## k = {K} neighbours of every row, {n:,} x {vectors.shape[1]} directions")
    print(f"recall@20 on {len(rows):,} random query rows against the exact product")
    print("| method | build + query s | recall@20 |\n|---|---:|---:|")
    print(f"| exact chunked product (extrapolated from 4,096 rows) | {exact_s:.0f} | 1.000 |", flush=True)
    candidates = {
        "ogaudit approximate (the default above the threshold)": with_ogaudit,
        "faiss HNSW M=32 efC=40 efS=64": with_faiss_hnsw,
        "faiss HNSW M=16 efC=40 efS=32": lambda v: with_faiss_hnsw(v, 16, 40, 32),
        "faiss IVF-Flat nlist=4sqrtN nprobe=16": with_faiss_ivf,
        "faiss IVF-Flat nlist=4sqrtN nprobe=8": lambda v: with_faiss_ivf(v, 8),
        "usearch HNSW M=16 ef=64": with_usearch,
        "pynndescent (numba compiled beforehand)": with_pynndescent,
    }
    for name, function in candidates.items():
        if not any(name.startswith(prefix) for prefix in libraries):
            continue
        if name.startswith("pynndescent"):
            with_pynndescent(vectors[:3000])  # numba compiles on first use: not counted
        start = time.perf_counter()
        found = function(vectors)
        seconds = time.perf_counter() - start
        print(f"| {name} | {seconds:.1f} | {recall(found, truth, rows):.3f} |", flush=True)


def detector_comparison(result) -> None:
    """The default detector's AUROC / AP with exact and with approximate neighbours, same evidence."""
    from ogaudit.detectors import neighbours
    from ogaudit.detectors.metrics import detection_metrics
    from ogaudit.detectors.outliers import make_detector

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
    from ogaudit.map.layout import MAP_SAMPLE, gradient_map

    print(f"\n## Gradient map: UMAP fitted on {MAP_SAMPLE:,} rows, the rest placed by transform")
    print(f"rows: the {len(vectors):,} directions above, repeated with N(0, 0.01²) jitter where more are asked")
    print("| rows | PCA + fit s | transform s | total s |\n|---|---:|---:|---:|")
    gradient_map(vectors[:2000], method="umap")  # numba compiles once per process; not counted
    for n in sizes:
        rows = vectors[np.resize(np.arange(len(vectors)), n)] if n > len(vectors) else vectors[:n]
        if n > len(vectors):  # repeated rows, jittered so that no two are equal
            rows = rows + 0.01 * np.random.default_rng(0).normal(size=rows.shape).astype(np.float32)
        marks: dict[str, float] = {}
        start = time.perf_counter()

        def progress(stage, fraction, message, marks=marks, start=start):
            if message.startswith("placing") and "transform" not in marks:
                marks["transform"] = time.perf_counter() - start

        gradient_map(rows, method="umap", progress=progress)
        total = time.perf_counter() - start
        fit = marks.get("transform", total)
        print(f"| {n:,} | {fit:.0f} | {total - fit:.0f} | {total:.0f} |", flush=True)


EXACT_SHAPES = ((10_000, 384), (18_000, 384), (38_000, 384), (20_000, 1152), (50_000, 128))


def exact_paths() -> None:
    """Seconds of the exact search's faiss and torch backends, the same rows searched by both, k = 20."""
    from ogaudit.detectors.neighbours import exact_neighbours

    rng = np.random.default_rng(0)
    exact_neighbours(rng.normal(size=(2000, 64)).astype(np.float32), K, backend="torch")  # first-call costs
    print("| rows × dims | faiss flat (s) | torch (s) | faiss ÷ torch | same neighbours |")
    print("|---|---:|---:|---:|---:|")
    for n, dim in EXACT_SHAPES:
        rows = rng.normal(size=(n, dim)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        seconds, found = {}, {}
        for backend in ("faiss", "torch"):
            start = time.perf_counter()
            found[backend], _ = exact_neighbours(rows, K, backend=backend)
            seconds[backend] = time.perf_counter() - start
        same = float((np.sort(found["faiss"], axis=1) == np.sort(found["torch"], axis=1)).all(axis=1).mean())
        print(
            f"| {n:,} × {dim} | {seconds['faiss']:.2f} | {seconds['torch']:.2f} | "
            f"{seconds['faiss'] / seconds['torch']:.2f} | {same:.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="training images (and the AP benchmark)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the automatic choice)")
    parser.add_argument("--recall-queries", type=int, default=5000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--map-sizes", type=int, nargs="*", default=[200_000])
    parser.add_argument("--libraries", nargs="*", default=["ogaudit", "faiss", "usearch", "pynndescent"])
    parser.add_argument("--skip-ap", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ogaudit-bench-cache")
    parser.add_argument("--exact-paths", action="store_true", help="only time the exact search's two backends")
    args = parser.parse_args()
    if args.exact_paths:
        exact_paths()
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    vectors, result = real_directions(max(args.sizes), args.cache_dir, args.samples, args.epochs)
    for n in args.sizes:
        library_table(np.ascontiguousarray(vectors[:n]), libraries=args.libraries, queries=args.recall_queries)
    if not args.skip_ap:
        detector_comparison(result)
    if args.map_sizes:
        map_table(vectors, args.map_sizes)


if __name__ == "__main__":
    main()
