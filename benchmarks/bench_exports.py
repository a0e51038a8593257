"""Wall time and size of each export (`ogaudit export FORMAT`) on one audited project, with the cleaned split and
the decisions CSV of the same project as references, measured in one run.

    .venv/bin/python benchmarks/bench_exports.py [--data mnist5k] [--limit N] [--repeat 3]

The audit (one epoch, PCA map) is cached under the temporary folder's cache; only the exports are timed (median
of ``--repeat``). Ratios are to the cleaned split, which also reads and writes every sample.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ogaudit


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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
            jobs[name] = (target, lambda out, name=name: project.export(out, format=name), None)
        print(f"{result.dataset.describe()}; median of {args.repeat}")
        times = {}
        for name, (target, run, _) in jobs.items():
            samples = []
            for attempt in range(args.repeat):
                out = work / f"{attempt}-{target}"
                start = time.perf_counter()
                run(out)
                samples.append(time.perf_counter() - start)
                written = size(out)
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            times[name] = (statistics.median(samples), written)
        base = times["split (reference)"][0]
        print(f"{'export':<20} {'seconds':>8} {'x split':>8} {'MB':>8}")
        for name, (seconds, written) in times.items():
            print(f"{name:<20} {seconds:8.2f} {seconds / base:8.2f} {written / 1e6:8.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
