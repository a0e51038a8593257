"""Fit the calibration behind "probability that the given label is wrong" and measure it on another seed.

Audits MNIST 5k with planted label noise (symmetric and class-pair, 10% and 20%) at the demo's recipe (10 epochs,
PCA map) on a **fitting seed** and on an **evaluation seed**. The raw evidence ``1 − π(given)`` (model softmax
times the gradient neighbours' label histogram, :mod:`ogaudit.review.evidence`) of every sample of the fitting
runs is mapped to the planted truth by isotonic regression; the expected calibration error (10 bins) of the raw and
of the calibrated probability is then measured on the evaluation runs, which the fit never saw.

    .venv/bin/python benchmarks/calibrate_evidence.py            # fit on seed 0, evaluate on seed 1 (~5 min)
    .venv/bin/python benchmarks/calibrate_evidence.py --write    # also save ogaudit/review/calibration.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project
from ogaudit.review.evidence import CALIBRATION_FILE, Calibration, expected_calibration_error

NOISE = (("symmetric", 0.1), ("symmetric", 0.2), ("pairs", 0.1), ("pairs", 0.2))


def raw_and_truth(data: str, seed: int, kind: str, rate: float, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    settings = AuditSettings(noise_rate=rate, noise_kind=kind, seed=seed, epochs=10, map_method="pca")
    audit(data, settings, out_dir=folder)
    project = Project(folder)
    run = project.open_run()
    evidence = project.open_evidence(run)
    evidence.calibration = Calibration((0.0, 1.0), (0.0, 1.0))
    return evidence.raw_wrong(), run.table["is_noisy"].to_numpy(dtype=bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--fit-seed", type=int, default=0)
    parser.add_argument("--eval-seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help=f"save the fit to {CALIBRATION_FILE}")
    args = parser.parse_args()
    runs: dict[tuple[int, str, float], tuple[np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="ogaudit-calibrate-") as tmp:
        for seed in (args.fit_seed, args.eval_seed):
            for kind, rate in NOISE:
                start = time.perf_counter()
                runs[seed, kind, rate] = raw_and_truth(args.data, seed, kind, rate, Path(tmp) / f"{seed}-{kind}-{rate}")
                print(f"audited {args.data} seed {seed} {kind} {rate:.0%} in {time.perf_counter() - start:.0f} s")
    fit_raw = np.concatenate([runs[args.fit_seed, k, r][0] for k, r in NOISE])
    fit_truth = np.concatenate([runs[args.fit_seed, k, r][1] for k, r in NOISE])
    source = (
        f"isotonic fit on {args.data}, seed {args.fit_seed}, planted noise "
        + ", ".join(f"{kind} {rate:.0%}" for kind, rate in NOISE)
        + " (10 epochs)"
    )
    calibration = Calibration.fit(fit_raw, fit_truth, source=source)
    print(f"\nexpected calibration error (10 bins) on seed {args.eval_seed}, never seen by the fit:")
    print(f"{'noise':<16}{'raw 1-pi(y)':>12}{'calibrated':>12}")
    eces = []
    for kind, rate in NOISE:
        raw, truth = runs[args.eval_seed, kind, rate]
        ece_raw = expected_calibration_error(raw, truth)
        ece_cal = expected_calibration_error(calibration(raw), truth)
        eces.append(ece_cal)
        print(f"{kind + f' {rate:.0%}':<16}{ece_raw:>12.4f}{ece_cal:>12.4f}")
    all_raw = np.concatenate([runs[args.eval_seed, k, r][0] for k, r in NOISE])
    all_truth = np.concatenate([runs[args.eval_seed, k, r][1] for k, r in NOISE])
    pooled = expected_calibration_error(calibration(all_raw), all_truth)
    print(f"{'pooled':<16}{expected_calibration_error(all_raw, all_truth):>12.4f}{pooled:>12.4f}")
    if args.write:
        saved = Calibration(calibration.raw, calibration.calibrated, source, ece=round(pooled, 4))
        import json

        CALIBRATION_FILE.write_text(json.dumps(saved.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
