"""Scale benchmark: a memory-mapped Fashion-MNIST expansion of up to 1,000,000 samples, and a folder of JPEG photos.

Run:  .venv/bin/python benchmarks/bench_scale.py --part data --samples 100000 [--map umap] [--workdir DIR]
      .venv/bin/python benchmarks/bench_scale.py --part photos --photos 2000

Prints, in one run:

* ``--part data``: builds ``--samples`` images from the 60k Fashion-MNIST training images (Debian
  ``dataset-fashion-mnist``): the 60k as they are, then copies with seeded random shifts (±3 px) and rotations
  (±15°), written a chunk at a time into a ``.npy`` folder (``x.npy`` uint8 (N, 28, 28, 1), never all in memory),
  with 20% symmetric planted noise in ``y.npy`` and the true labels beside it in ``true_y.npy``. Then a full default
  scan (``ogaudit scan FOLDER``: training, gradients, detect, map) runs in a fresh process; the script prints
  the wall time of each stage, the scan process's peak resident memory (VmHWM, which counts the pages of the
  memory-mapped ``x.npy`` it touched), AUROC / AP against the true labels, and the AP of the default detector on
  the run's features rounded to float16 against float32 (does a float16 feature store lose anything?).
* ``--part photos``: builds ``--photos`` JPEGs at 160 px (Fashion-MNIST upscaled and coloured: a seeded random
  ink and paper colour per image; no photo set is available offline) in an ImageFolder, then times in fresh
  processes (a) a bare ``DataLoader`` + EfficientNet-Lite0 forward loop over the files and (b) the scan with
  ``--model efficientnet --epochs 1 --map pca``, printing throughput and peak memory of each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
CHUNK = 20_000


def expand_fashion_mnist(folder: Path, n: int, *, noise: float = 0.2, seed: int = 0) -> None:
    """Write ``n`` samples into ``folder`` (x.npy, y.npy, true_y.npy, class_names.json), a chunk at a time."""
    from ogaudit.data.builtins import FASHION_MNIST_CLASSES, load_fashion_mnist

    source = load_fashion_mnist("train")
    base, labels = source.x[..., 0], source.y
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.uint8, shape=(n, 28, 28, 1))
    true_y = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        pick = np.arange(start, stop) % len(base) if stop <= len(base) else rng.integers(0, len(base), stop - start)
        images = torch.as_tensor(base[pick], dtype=torch.float32)[:, None] / 255.0
        if stop > len(base):  # copies beyond the 60k originals: a random rotation and shift each
            angle = torch.as_tensor(rng.uniform(-15, 15, stop - start), dtype=torch.float32) * (np.pi / 180)
            shift = torch.as_tensor(rng.integers(-3, 4, (stop - start, 2)), dtype=torch.float32) * (2 / 28)
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x[start:stop, ..., 0] = np.clip(np.round(images[:, 0].numpy() * 255), 0, 255).astype(np.uint8)
        true_y[start:stop] = labels[pick]
    x.flush()
    del x
    noisy = true_y.copy()
    flip = rng.permutation(n)[: round(noise * n)]
    noisy[flip] = (true_y[flip] + rng.integers(1, 10, len(flip))) % 10  # symmetric: any other class alike
    np.save(folder / "y.npy", noisy)
    np.save(folder / "true_y.npy", true_y)
    (folder / "class_names.json").write_text(json.dumps(FASHION_MNIST_CLASSES), encoding="utf-8")


CHILD = """
import json, sys, time
from ogaudit.cli import main
start = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print("RESULT " + json.dumps({"rc": rc, "wall_s": wall, "vmhwm_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def run_child(code: str, args: list[str]) -> dict:
    """Run ``code`` in a fresh Python process (this tree's ogaudit); return the JSON after ``RESULT``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def data_part(args, work: Path) -> None:
    from ogaudit.detectors.metrics import detection_metrics
    from ogaudit.detectors.outliers import make_detector
    from ogaudit.gradients import HeadEvidence
    from ogaudit.project import Project
    from ogaudit.settings import DEFAULT_DETECTOR

    folder = work / f"fmnist-{args.samples}"
    if not (folder / "true_y.npy").exists():
        start = time.perf_counter()
        expand_fashion_mnist(folder, args.samples)
        print(f"built {args.samples:,} samples in {time.perf_counter() - start:.1f} s -> {folder}", flush=True)
    out, cache = work / f"scan-{args.samples}", work / f"cache-{args.samples}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    extra = ["--map", args.map] + (["--epochs", str(args.epochs)] if args.epochs else [])
    result = run_child(CHILD, ["scan", str(folder), "--out", str(out), "--cache-dir", str(cache), "--quiet", *extra])
    project = Project(out)
    record = project.read_record()
    print(f"scan of {args.samples:,} samples ({' '.join(extra)}): wall {result['wall_s']:.1f} s, rc {result['rc']}")
    print("  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in record["timings_s"].items()))
    print(f"  peak memory (VmHWM of the scan process): {result['vmhwm_mb']:,.0f} MB")
    print(f"  model: {record['model']['kind']}, {record['model'].get('epochs')} epoch(s)")
    true_y = np.load(folder / "true_y.npy")
    import pandas as pd

    scores = pd.read_csv(project.run_files()["scores"])
    rows = scores["sample_id"].astype(int).to_numpy()
    noisy = true_y[rows] != np.load(folder / "y.npy")[rows]
    metrics = detection_metrics(noisy, scores["score"].to_numpy(), budget=0.05)
    print(f"  detection: AUROC {metrics['auroc']:.4f}, AP {metrics['average_precision']:.4f}")
    saved = project.read_head_evidence()
    if saved is not None and args.samples <= 200_000:
        ap = {}
        for dtype in ("float32", "float16"):
            features = saved["features"].astype(dtype).astype(np.float32)
            evidence = HeadEvidence(features, saved["probs"], saved["labels"])
            score = make_detector(DEFAULT_DETECTOR, seed=0).fit(evidence).outlier_scores(evidence)
            ap[dtype] = detection_metrics(noisy, score, budget=0.05)["average_precision"]
        print(f"  features as float16 vs float32: AP {ap['float16']:.5f} vs {ap['float32']:.5f}")


def make_photos(folder: Path, n: int, *, side: int = 160, seed: int = 0) -> None:
    """``n`` JPEGs at ``side`` px in ``folder/<class>/``: Fashion-MNIST upscaled, ink and paper coloured.

    Written by one process per CPU, 500 at a time (each block seeded by ``seed`` and its start)."""
    from concurrent.futures import ProcessPoolExecutor

    from ogaudit.data.builtins import FASHION_MNIST_CLASSES

    for name in FASHION_MNIST_CLASSES:
        (folder / name.replace("/", "-")).mkdir(parents=True, exist_ok=True)
    starts = range(0, n, 500)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_photo_block, [(folder, start, min(start + 500, n), side, seed) for start in starts]))


_SOURCE: dict = {}


def _photo_block(task: tuple) -> None:
    from PIL import Image

    from ogaudit.data.builtins import FASHION_MNIST_CLASSES, load_fashion_mnist

    folder, start, stop, side, seed = task
    torch.set_num_threads(1)
    if "train" not in _SOURCE:  # once per worker process
        _SOURCE["train"] = load_fashion_mnist("train")
    source = _SOURCE["train"]
    rng = np.random.default_rng([seed, start])
    pick = np.arange(start, stop) % len(source.y)
    grey = torch.as_tensor(source.x[pick, ..., 0], dtype=torch.float32)[:, None] / 255
    big = F.interpolate(grey, size=(side, side), mode="bilinear", align_corners=False)[:, 0].numpy()
    ink, paper = rng.uniform(0, 1, (len(pick), 1, 1, 3)), rng.uniform(0, 1, (len(pick), 1, 1, 3))
    rgb = (paper + (ink - paper) * big[..., None]) * 255
    for k, (i, image) in enumerate(zip(pick, np.clip(rgb, 0, 255).astype(np.uint8), strict=True)):
        name = FASHION_MNIST_CLASSES[source.y[i]].replace("/", "-")
        Image.fromarray(image).save(folder / name / f"{start + k:07d}.jpg", quality=90)


BARE = """
import json, sys, time
import numpy as np, torch
from PIL import Image
from pathlib import Path
from ogaudit.models.nets import IMAGENET_MEAN, IMAGENET_STD, EfficientNetFeatures, load_efficientnet_lite0
torch.set_num_threads(int(sys.argv[2]))
files = sorted(Path(sys.argv[1]).rglob("*.jpg"))[: int(sys.argv[4]) or None]
class Files(torch.utils.data.Dataset):
    def __len__(self): return len(files)
    def __getitem__(self, i):
        with Image.open(files[i]) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
body = EfficientNetFeatures(load_efficientnet_lite0()).eval()
mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
loader = torch.utils.data.DataLoader(Files(), batch_size=64, num_workers=int(sys.argv[3]))
start = time.perf_counter()
with torch.no_grad():
    for batch in loader:
        x = batch.permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        body((x - mean) / std)
wall = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print("RESULT " + json.dumps({"wall_s": wall, "vmhwm_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


LOAD = """
import json, sys, time
import numpy as np
import ogaudit.data.dataset
if sys.argv[2] == "in-memory":
    ogaudit.data.imagefiles.STREAM_ABOVE_BYTES = float("inf")
start = time.perf_counter()
dataset = ogaudit.data.load.load_dataset(sys.argv[1])
fingerprint = dataset.fingerprint()
wall = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print("RESULT " + json.dumps({"wall_s": wall, "vmhwm_mb": int(status["VmHWM"].split()[0]) / 1024,
                              "x": type(dataset.x).__name__, "n": len(dataset)}))
"""


def photos_part(args, work: Path) -> None:
    folder = work / f"photos-{args.photos}"
    if not folder.exists():
        start = time.perf_counter()
        make_photos(folder, args.photos)
        print(f"built {args.photos:,} JPEGs at 160 px in {time.perf_counter() - start:.1f} s -> {folder}", flush=True)
    for how in ("streamed",) if args.skip_in_memory else ("in-memory", "streamed"):
        load = run_child(LOAD, [str(folder), how])
        print(
            f"load + fingerprint, {how} ({load['x']}, {load['n']:,} photos): {load['wall_s']:.1f} s, "
            f"peak {load['vmhwm_mb']:,.0f} MB",
            flush=True,
        )
    if args.load_only:
        return
    bare_n = min(args.bare_photos or args.photos, args.photos)
    bare = run_child(BARE, [str(folder), str(torch.get_num_threads()), str(args.workers), str(bare_n)])
    print(
        f"bare DataLoader ({args.workers} workers) + EfficientNet-Lite0 forward over {bare_n:,} of the photos: "
        f"{bare_n / bare['wall_s']:.1f} photos/s ({bare['wall_s']:.1f} s), peak {bare['vmhwm_mb']:,.0f} MB",
        flush=True,
    )
    out, cache = work / f"photo-scan-{args.photos}", work / f"photo-cache-{args.photos}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    flags = ["--model", "efficientnet", "--epochs", "1", "--map", "pca", "--quiet"]
    result = run_child(CHILD, ["scan", str(folder), "--out", str(out), "--cache-dir", str(cache), *flags])
    from ogaudit.project import Project

    record = Project(out).read_record()
    features_s = record["timings_s"]["train"]  # the backbone's one pass over the files, then a head on features
    print(
        f"scan ({' '.join(flags)}): wall {result['wall_s']:.1f} s, stages "
        + ", ".join(f"{k} {v:.1f}" for k, v in record["timings_s"].items())
        + f"; features {args.photos / features_s:.1f} photos/s (train stage); peak {result['vmhwm_mb']:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("data", "photos", "both"), default="data")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=50_000)
    parser.add_argument("--load-only", action="store_true", help="photos: only the load's memory, no forward pass")
    parser.add_argument("--skip-in-memory", action="store_true", help="photos: skip timing the all-in-RAM load")
    parser.add_argument(
        "--bare-photos", type=int, help="photos: time the bare loop over only the first N files (default: all)"
    )
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the bare loop")
    parser.add_argument("--map", default="umap", help="map method of the data scan (default: the default, umap)")
    parser.add_argument("--epochs", type=int, help="training epochs of the data scan (default: automatic)")
    parser.add_argument("--workdir", type=Path, help="keep the built data here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ogaudit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    if args.part in ("data", "both"):
        data_part(args, work)
    if args.part in ("photos", "both"):
        photos_part(args, work)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
