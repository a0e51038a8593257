"""Wall time and size of each export (`ogaudit export FORMAT`) on one audited project, with the cleaned split and
the decisions CSV of the same project as references, measured in one run.

    .venv/bin/python benchmarks/bench_exports.py [--data mnist5k] [--limit N] [--repeat 3]

The audit (one epoch, PCA map) is cached under the temporary folder's cache; only the exports are timed (median
of ``--repeat``). Ratios are to the cleaned split, which also reads and writes every sample. FiftyOne and Label
Studio, which write one PNG per sample, are timed with their images written by one thread (``MEDIA_THREADS = 1``,
the default: the rows marked "1 thread") and by a pool of max(2, cores) threads (the rows without a mark),
alternating in each repeat, and their files are checked to be the same bytes both ways.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ogaudit
from ogaudit.review import exports

THREADS = max(2, os.cpu_count() or 1)  # the pool timed against one thread (exports.MEDIA_THREADS's default)


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def same_files(a: Path, b: Path) -> bool:
    """Whether two export folders hold the same files with the same bytes."""
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def threads(count: int, run):
    """``run`` with the export's images written by ``count`` threads."""

    def call(out):
        default = exports.MEDIA_THREADS
        exports.MEDIA_THREADS = count
        try:
            return run(out)
        finally:
            exports.MEDIA_THREADS = default

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ogaudit-bench-exports-"))
    try:
        settings = ogaudit.AuditSettings(epochs=1, map_method="pca", limit=args.limit)
        result = ogaudit.audit(args.data, settings, out_dir=work / "p", cache_dir=work / "cache", progress=False)
        project = ogaudit.Project(work / "p")
        ids = result.scores.sort_values("rank")["sample_id"].tolist()
        project.decide("remove", ids[:10], annotator="bench")
        jobs = {
            "split (reference)": ("split", lambda out: project.export_split(out), "split"),
            "decisions CSV": ("decisions.csv", lambda out: project.export_decisions(out), None),
        }
        for name, target in [
            ("fiftyone", "fo"),
            ("label-studio", "ls"),
            ("hf", "hf"),
            ("parquet", "t.parquet"),
            ("cleanlab", "t.csv"),
        ]:
            run = lambda out, name=name: project.export(out, format=name)  # noqa: E731
            if name in ("fiftyone", "label-studio"):
                jobs[f"{name} (1 thread)"] = (f"{target}-1", threads(1, run), None)
                run = threads(THREADS, run)
            jobs[name] = (target, run, None)
        print(f"{result.dataset.describe()}; median of {args.repeat}; images written by {THREADS} threads")
        samples = {name: [] for name in jobs}
        written = {}
        for attempt in range(args.repeat):
            for name, (target, run, _) in jobs.items():
                out = work / f"{attempt}-{target}"
                start = time.perf_counter()
                run(out)
                samples[name].append(time.perf_counter() - start)
                written[name] = size(out)
            for name in ("fiftyone", "label-studio"):
                one, pool = work / f"{attempt}-{jobs[f'{name} (1 thread)'][0]}", work / f"{attempt}-{jobs[name][0]}"
                if not same_files(one, pool):
                    raise SystemExit(f"{name}: the threaded export's files differ from the one-thread export's")
            for target, _, _ in jobs.values():
                out = work / f"{attempt}-{target}"
                shutil.rmtree(out) if out.is_dir() else out.unlink()
        times = {name: (statistics.median(samples[name]), written[name]) for name in jobs}
        base = times["split (reference)"][0]
        print(f"{'export':<24} {'seconds':>8} {'x split':>8} {'MB':>8}")
        for name, (seconds, written) in times.items():
            print(f"{name:<24} {seconds:8.2f} {seconds / base:8.2f} {written / 1e6:8.1f}")
        for name in ("fiftyone", "label-studio"):
            ratio = times[f"{name} (1 thread)"][0] / times[name][0]
            print(f"{name}: one thread / {THREADS} threads = {ratio:.2f}x (files identical)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
