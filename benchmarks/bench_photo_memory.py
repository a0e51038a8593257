"""Peak memory of a photo scan against the number of photos: does it stay flat in N?

Run:  .venv/bin/python benchmarks/bench_photo_memory.py [--sizes 4000 16000] [--workdir DIR] [--side 160]

Builds (once; kept in ``--workdir``, default ``$TMPDIR/ogaudit-photo-memory``) an ImageFolder of synthetic
``--side``-px RGB JPEGs per size: a few smooth colour blobs on a coloured background, the blob colours leaning to
the class's hue, seeded (``--seed``) so the same folder is built every time. Then, for each size, runs in a fresh
process under ``/usr/bin/time -v`` (the largest resident set of the scan process or any of its DataLoader workers)

    ogaudit scan FOLDER --out OUT --model efficientnet --epochs 1 --detector l2 --map pca --cache-dir FRESH

and prints the peak RSS, the wall time and the difference between the first and the last size. It also says
whether the loader streams each folder (``ImageFiles``) or decodes it into memory: photos whose stacked pixels
exceed ``ogaudit.data.images.STREAM_ABOVE_BYTES`` (256 MiB; 4,000 x 160 x 160 x 3 = 307 MB) are streamed.

The scan's target: peak RSS grows by at most 300 MB from 4,000 to 16,000 photos at 160 px.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("amber", "azure", "crimson", "jade", "violet")
BLOCK = 500


def make_photos(folder: Path, n: int, *, side: int = 160, seed: int = 0) -> None:
    """``n`` JPEGs at ``side`` px in ``folder/<class>/``, written into a temporary folder then renamed (a folder
    that exists is complete). One process per CPU writes blocks of ``BLOCK`` photos, each seeded by its start."""
    from concurrent.futures import ProcessPoolExecutor

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for name in CLASSES:
        (partial / name).mkdir(parents=True)
    tasks = [(partial, start, min(start + BLOCK, n), side, seed) for start in range(0, n, BLOCK)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_photo_block, tasks))
    partial.rename(folder)


def _photo_block(task: tuple) -> None:
    from PIL import Image

    folder, start, stop, side, seed = task
    rng = np.random.default_rng([seed, start])
    grid = np.linspace(0.0, 1.0, side, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    hues = np.linspace(0.0, 1.0, len(CLASSES), endpoint=False)
    for index in range(start, stop):
        label = int(rng.integers(len(CLASSES)))
        image = np.empty((side, side, 3), dtype=np.float32)
        image[:] = rng.uniform(0.1, 0.9, 3)  # background
        for _ in range(int(rng.integers(3, 7))):
            cy, cx = rng.uniform(0, 1, 2)
            radius = rng.uniform(0.08, 0.3)
            weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[..., None]
            hue = (hues[label] + rng.normal(0, 0.05)) % 1.0
            colour = np.clip(0.5 + 0.5 * np.cos(2 * np.pi * (hue - np.array([0.0, 1 / 3, 2 / 3]))), 0, 1)
            image = image * (1 - weight) + colour * weight
        image += rng.normal(0, 0.02, image.shape).astype(np.float32)  # a little texture
        pixels = np.clip(image * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / CLASSES[label] / f"{index:07d}.jpg", quality=90)


def photo_folder(work: Path, n: int, side: int, seed: int) -> Path:
    folder = work / f"photos-{n}-{side}px-seed{seed}"
    if not folder.is_dir():
        start = time.perf_counter()
        make_photos(folder, n, side=side, seed=seed)
        print(f"built {n:,} JPEGs at {side} px in {time.perf_counter() - start:.1f} s -> {folder}", flush=True)
    return folder


def streams(n: int, side: int) -> bool:
    """Whether the loader reads these photos batch by batch (``ImageFiles``) rather than decoding them at load."""
    from ogaudit.data.images import STREAM_ABOVE_BYTES

    return n * side * side * 3 > STREAM_ABOVE_BYTES


def scan_peak(folder: Path, work: Path, extra: list[str]) -> dict:
    """Run the scan in a fresh process under ``/usr/bin/time -v``; its peak RSS (MB), wall time and output."""
    out, cache = work / f"scan-{folder.name}", work / f"cache-{folder.name}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    flags = ["--model", "efficientnet", "--epochs", "1", "--detector", "l2", "--map", "pca", *extra]
    command = [
        "/usr/bin/time", "-v", sys.executable, "-m", "ogaudit", "scan", str(folder),
        "--out", str(out), "--cache-dir", str(cache), "--quiet", *flags,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or peak is None:
        raise SystemExit(f"scan failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    return {"peak_mb": int(peak.group(1)) / 1024, "wall_s": wall, "stdout": done.stdout, "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000], help="photo counts (default 4000 16000)")
    parser.add_argument("--side", type=int, default=160, help="photo side in px (default 160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ogaudit-photo-memory",
        help="where the photo folders are kept across runs (default: $TMPDIR/ogaudit-photo-memory)",
    )  # fmt: skip
    parser.add_argument("--build-only", action="store_true", help="only build the photo folders")
    parser.add_argument("scan_args", nargs="*", help="extra scan flags, after --")
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time at /usr/bin/time (apt-get install time)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    folders = {n: photo_folder(args.workdir, n, args.side, args.seed) for n in args.sizes}
    if args.build_only:
        return
    print(f"CPUs {os.cpu_count()}, load {os.getloadavg()[0]:.1f}", flush=True)
    peaks = {}
    for n, folder in folders.items():
        how = "streamed (ImageFiles)" if streams(n, args.side) else "decoded into memory"
        result = scan_peak(folder, args.workdir, args.scan_args)
        peaks[n] = result["peak_mb"]
        print(f"{n:>7,} photos at {args.side} px, {how}: peak RSS {result['peak_mb']:,.0f} MB, "
              f"wall {result['wall_s']:.0f} s", flush=True)  # fmt: skip
    if len(peaks) > 1:
        sizes = sorted(peaks)
        first, last = sizes[0], sizes[-1]
        growth = peaks[last] - peaks[first]
        print(
            f"growth {first:,} -> {last:,} photos: {growth:+,.0f} MB "
            f"({growth * 1024 / (last - first):+.1f} KB per photo); target <= 300 MB: "
            f"{'met' if growth <= 300 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
