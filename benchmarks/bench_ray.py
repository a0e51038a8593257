"""The per-sample stages of one scan, local engine vs Ray engine, on this one machine.

Run:  .venv/bin/python benchmarks/bench_ray.py [--samples 100000] [--kind vectors|images] [--dim 1024]
(needs ``pip install 'ogaudit[ray]'``)

Data: Fashion-MNIST's 60,000 training images (28×28 grey, uint8), expanded to ``--samples`` by seeded random
shifts of up to ±2 px, written as a memory-mapped ``x.npy`` (so the Ray actors read it by path, as on a cluster
with shared storage): as images (``--kind images``, the small CNN that ``--model auto`` picks, layers
body.conv2 and body.fc) or as 784-float vectors scaled to [0, 1] (``--kind vectors``, the default: the MLP,
layers body.fc1 and body.fc2). The model is built with seed 0, untrained (the per-sample stages cost the same
whatever the weights). Stages timed, each on both engines:

1. the forward pass that gives the closed-form last-layer evidence (penultimate features and logits);
2. the projected gradients of ``--layers`` (D = ``--dim``), written into the resumable store.

The local engine runs twice: with torch's default threads (one per core; what a scan uses) and with one thread,
because each Ray actor runs torch with one thread per CPU it reserves, and on an oversubscribed machine a
multi-threaded torch process can be many times slower than a single-threaded one.

Prints the Ray start-up time (a local instance: ``ray.init(num_cpus=2)``, 512 MiB object store), each stage's wall
time and samples/s on both engines, the Ray overhead, and the largest difference between the engines' results.
Every Ray run starts a fresh actor pool, whose start-up (importing torch, rebuilding the model) is included.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.builtins import load_fashion_mnist
from ogaudit.engines.local import LocalEngine
from ogaudit.gradients.layers import LayerGradientSettings, layer_store
from ogaudit.models.nets import build_model


def expanded_fashion_mnist(folder: Path, samples: int, *, vectors: bool, seed: int = 0):
    """(``x.npy`` memory map, labels (samples,), class names): originals, then shifted copies.

    The map is (samples, 28, 28, 1) uint8 images, or with ``vectors`` (samples, 784) float32 in [0, 1].
    """
    base = load_fashion_mnist("train")
    rng = np.random.default_rng(seed)
    shape, dtype = ((samples, 784), np.float32) if vectors else ((samples, 28, 28, 1), np.uint8)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=dtype, shape=shape)
    y = np.empty(samples, dtype=np.int64)
    for start in range(0, samples, 10_000):
        stop = min(start + 10_000, samples)
        source = rng.integers(0, len(base), stop - start) if start >= len(base) else np.arange(start, stop)
        images = base.x[source]
        if start >= len(base):  # one seeded shift per chunk of 10,000: vectorised, still new images
            images = np.roll(images, tuple(rng.integers(-2, 3, 2)), axis=(1, 2))
        x[start:stop] = images.reshape(len(images), -1) / np.float32(255) if vectors else images
        y[start:stop] = base.y[source]
    x.flush()
    del x
    return np.load(folder / "x.npy", mmap_mode="r"), y, base.class_names


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--kind", choices=("vectors", "images"), default="vectors")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--actors", type=int, help="Ray actors (default: one per CPU of the Ray instance)")
    args = parser.parse_args()

    import ray

    from ogaudit.engines.ray_engine import RayEngine

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        vectors = args.kind == "vectors"
        (x, y, names), seconds = timed(lambda: expanded_fashion_mnist(folder, args.samples, vectors=vectors))
        data = dataset_from_arrays(x, y, class_names=names)
        data.x = x  # the memory map itself, as a streamed .npy folder gives it
        what = "784-float vectors" if vectors else "images 28x28x1 uint8"
        print(f"data: {args.samples:,} Fashion-MNIST-like {what} in x.npy ({seconds:.1f} s to write)")
        model = build_model("mlp" if vectors else "cnn", data, seed=0)
        layers = ("body.fc1", "body.fc2") if vectors else ("body.conv2", "body.fc")
        settings = LayerGradientSettings(layers=layers, dim=args.dim)
        print(f"model: {model.kind}; layers {', '.join(layers)} projected to D = {args.dim}")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

        local = LocalEngine()
        (head_local, t_head_local) = timed(lambda: local.head_outputs(model, data))

        def filled(engine, name: str):
            store = layer_store(folder / name, model, data.y, settings, inputs_fingerprint="b")
            engine.layer_gradients(model, data, settings, store=store)
            return store.rows("gradients")

        grads_local, t_layers_local = timed(lambda: filled(local, "local"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        _, t_head_one = timed(lambda: local.head_outputs(model, data))
        _, t_layers_one = timed(lambda: filled(local, "one"))
        torch.set_num_threads(threads)

        _, t_init = timed(
            lambda: ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False)
        )
        engine = RayEngine(actors=args.actors)
        try:
            head_ray, t_head_ray = timed(lambda: engine.head_outputs(model, data))
            grads_ray, t_layers_ray = timed(lambda: filled(engine, "ray"))
            pool = engine.describe()
        finally:
            ray.shutdown()
        print(f"load average {os.getloadavg()[0]:.2f} at the end (other work shares these CPUs)")

        n = args.samples
        print(f"\nRay start-up (ray.init, local instance, 2 CPUs): {t_init:.1f} s; pool: {pool['actors']} actor(s)")
        print(f"local engine: torch {threads} thread(s); 'local 1t': one thread")
        print(
            f"{'stage':<34}{'local s':>9}{'local 1t s':>11}{'ray s':>9}{'local/s':>10}{'1t/s':>10}{'ray/s':>10}"
            f"{'ray vs 1t':>11}"
        )
        rows = [
            ("forward pass (features, logits)", t_head_local, t_head_one, t_head_ray),
            (f"projected gradients D={grads_local.shape[1]}", t_layers_local, t_layers_one, t_layers_ray),
            ("both stages", t_head_local + t_layers_local, t_head_one + t_layers_one, t_head_ray + t_layers_ray),
        ]
        for name, a, one, b in rows:
            print(
                f"{name:<34}{a:>9.1f}{one:>11.1f}{b:>9.1f}{n / a:>10,.0f}{n / one:>10,.0f}{n / b:>10,.0f}"
                f"{(b / one - 1):>+11.0%}"
            )
        print(
            "largest difference ray vs local: features "
            f"{np.abs(head_ray[0] - head_local[0]).max():.2e}, logits {np.abs(head_ray[1] - head_local[1]).max():.2e}, "
            f"gradients {np.abs(np.asarray(grads_ray) - np.asarray(grads_local)).max():.2e}"
        )


if __name__ == "__main__":
    main()
