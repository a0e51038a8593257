"""Calibration of "the probability that the given label is wrong" on the data at hand (issue 24).

For each noise kind (symmetric, class-pair, instance-dependent, annotator-like: 20% planted, whichever
:data:`ogaudit.settings.NOISE_KINDS` holds) on small real image sets (digits; MNIST and Fashion-MNIST subsets) and
for the real human noise of the built-in tweets (annotator agreement < 0.6 taken as wrong), one audit is run at
the demo's recipe and its per-sample evidence kept in ``$OGAUDIT_CACHE/bench-calibration/`` (a rerun reads it
back). Then, with no audit, it measures the expected calibration error (10 equal bins, over every sample):

* ``packaged``: the curve fitted once on planted MNIST noise (``ogaudit/review/calibration.json``);
* ``data (packaged shape)``: the previous estimate on the data, that curve moved to the confident joint's noise rate
  (:func:`ogaudit.review.calibration.estimate_wrong` with ``shape="packaged"``);
* ``data``: :func:`ogaudit.review.calibration.estimate_wrong` as the audit runs it (Bayes' rule with the data's own
  noise transition, moved to the same rate);
* ``+100 top`` / ``+100 calibrate``: the same after 100 reviewer decisions (the truth as the decision), on the top of
  the queue (the 100 highest scores) or in the queue's "to calibrate P(wrong)" order (mean over :data:`ORDERS`
  orders, and the worst), :func:`ogaudit.review.calibration.update_with_decisions`, measured over the samples not
  decided;
* the 90% intervals' **coverage** (:func:`ogaudit.review.evidence.interval_coverage`: the share of samples whose
  bin's observed wrong rate lies inside the bin's mean interval), with the noise rate's bracket and, for
  comparison, with the band prior alone (the intervals before that bracket, on the same ``p``), before any decision
  and after the 100 decisions; the bracket of noise rates, and the share of samples that read "not yet calibrated"
  before any decision.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration.py            # audits once (~15 min), then seconds
    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration.py --markdown # the table for docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.settings import NOISE_KINDS

RATE = 0.2
IMAGE_SETS = (("digits", None), ("mnist5k", 3000), ("fashion-mnist", 3000))
TWEETS = 3000
SUSPECT_BELOW = 0.6
DECISIONS = 100


def _evidence(result, truth: np.ndarray) -> dict[str, np.ndarray]:
    """What calibration reads from a finished audit, with the truth beside it."""
    from ogaudit.review.evidence import RunEvidence

    head = result.evidence
    review = RunEvidence(head.features, head.probs, head.labels, result.label_evidence, neighbours=result.neighbours)
    rows = np.arange(len(head.labels))
    neighbours, _ = review.nearest(rows)
    return {
        "raw": review.raw_wrong(),
        "posterior": review.posterior(rows, neighbours),
        "probs": np.asarray(head.probs, dtype=np.float64),
        "labels": np.asarray(head.labels),
        "neighbours": neighbours,
        "score": result.scores["score"].to_numpy(dtype=np.float64),
        "wrong": np.asarray(truth, dtype=bool),
    }


def gather(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every run's evidence, audited once and kept in ``cache``."""
    from ogaudit.pipeline.load import prepare_dataset
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import AuditSettings

    cache.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, np.ndarray]] = {}
    wanted = [(data, limit, kind) for data, limit in IMAGE_SETS for kind in NOISE_KINDS] + [("tweets", TWEETS, "real")]
    for data, limit, kind in wanted:
        name = f"{data}-{limit or 'all'}-{kind}"
        path = cache / f"{name}.npz"
        if path.is_file():
            with np.load(path) as saved:
                runs[name] = dict(saved)
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ogaudit-bench-calibration-") as tmp:
            if data == "tweets":
                settings = AuditSettings(limit=limit, map_method="none")
                tweets = prepare_dataset("tweets", settings)
                agreement = tweets.text_origin.extra["agreement"][tweets.rows]
                known = tweets.subset(np.flatnonzero(~np.isnan(agreement)))
                result = audit(known, settings, cache_dir=tmp)
                truth = tweets.text_origin.extra["agreement"][known.rows] < SUSPECT_BELOW
            else:
                settings = AuditSettings(
                    noise_rate=RATE, noise_kind=kind, limit=limit, epochs=10, map_method="none", seed=0
                )
                result = audit(data, settings, cache_dir=tmp)
                truth = result.scores["is_noisy"].to_numpy(dtype=bool)
        runs[name] = _evidence(result, truth)
        np.savez(path, **runs[name])
        print(f"audited {name} in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return runs


ORDERS = 3
"""The "to calibrate" order depends on a hash of the sample ids: the 100 decisions are taken in this many orders
(ids prefixed with 0, 1, 2) and their ECE averaged (the worst one reported beside it)."""


def measure(run: dict[str, np.ndarray], *, decisions: int = DECISIONS) -> dict[str, float]:
    """ECE of the packaged curve, the data-level estimate (its previous shape, the packaged curve moved to the
    noise rate, and today's), and today's after ``decisions`` reviewer decisions (top of the queue, and in the
    "to calibrate" order), the latter over the samples not decided."""
    from ogaudit.review.calibration import calibration_order, estimate_wrong, prior_estimate, update_with_decisions
    from ogaudit.review.evidence import Calibration, expected_calibration_error, interval_coverage

    wrong = run["wrong"]
    base = Calibration.load()(run["raw"])
    before = estimate_wrong(base, run["posterior"], run["labels"], shape="packaged")
    estimate = estimate_wrong(base, run["posterior"], run["labels"])
    out = {
        "samples": len(wrong),
        "wrong": float(wrong.mean()),
        "estimated rate": estimate.noise_rate,
        "packaged": expected_calibration_error(base, wrong),
        "data (packaged shape)": expected_calibration_error(before.p, wrong),
        "data": expected_calibration_error(estimate.p, wrong),
    }

    band_prior = prior_estimate(estimate.p, "")  # the intervals before the noise rate's bracket (same p)
    coverage: dict[str, float] = {
        "cover (band prior)": interval_coverage(band_prior.p, band_prior.low, band_prior.high, wrong),
        "cover": interval_coverage(estimate.p, estimate.low, estimate.high, wrong),
    }

    def after(rows: np.ndarray, start=estimate):
        updated = update_with_decisions(start, rows, wrong[rows])
        rest = np.ones(len(wrong), bool)
        rest[rows] = False
        covered = interval_coverage(updated.p[rest], updated.low[rest], updated.high[rest], wrong[rest])
        return expected_calibration_error(updated.p[rest], wrong[rest]), updated.p, covered

    top = np.argsort(-run["score"], kind="stable")[:decisions]
    out["+100 top"], _, coverage["cover +100 top"] = after(top)
    coverage["cover +100 top (band prior)"] = after(top, band_prior)[2]
    spread, calibrated, covers = [], estimate.p, []
    for order in range(ORDERS):
        ids = np.char.add(f"{order}-", np.arange(len(wrong)).astype(str))
        rows = np.argsort(calibration_order(estimate.p, ids), kind="stable")[:decisions]
        value, p, covered = after(rows)
        spread.append(value)
        covers.append(covered)
        if order == 0:
            calibrated = p
    out["+100 calibrate"] = float(np.mean(spread))
    out["+100 calibrate (worst)"] = float(np.max(spread))
    coverage["cover +100 calibrate"] = float(np.mean(covers))
    lowest, highest = estimate.rate_range if estimate.rate_range is not None else (estimate.noise_rate,) * 2
    coverage["rate low"], coverage["rate high"] = lowest, highest
    coverage["not calibrated"] = float(1 - estimate.calibrated.mean())
    flagged = np.argsort(-run["score"], kind="stable")[: max(1, round(0.05 * len(wrong)))]
    out["flagged wrong"] = float(wrong[flagged].mean())
    out["flagged p (packaged)"] = float(base[flagged].mean())
    out["flagged p (data)"] = float(estimate.p[flagged].mean())
    out["flagged p (+100 calibrate)"] = float(calibrated[flagged].mean())
    out["flagged low (data)"] = float(estimate.low[flagged].mean())
    return {**out, **{f"{INTERVAL}{k}": v for k, v in coverage.items()}}


INTERVAL = "interval: "
"""Columns under this prefix go to the second table (the 90% intervals)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-calibration")
    parser.add_argument("--gather-only", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/BENCHMARKS.md")
    args = parser.parse_args()
    runs = gather(args.cache)
    if args.gather_only:
        return
    rows = {name: measure(run) for name, run in runs.items()}
    every = list(next(iter(rows.values())))
    for keys in ([k for k in every if not k.startswith(INTERVAL)], [k for k in every if k.startswith(INTERVAL)]):
        names = [k.removeprefix(INTERVAL) for k in keys]
        if args.markdown:
            print("\n| run | " + " | ".join(names) + " |")
            print("|---|" + "---:|" * len(keys))
            for name, row in rows.items():
                print(f"| {name} | " + " | ".join(_cell(row[k]) for k in keys) + " |")
            continue
        print(f"\n{'run':36s}" + "".join(f"{k[:14]:>15s}" for k in names))
        for name, row in rows.items():
            print(f"{name:36s}" + "".join(f"{_cell(row[k]):>15s}" for k in keys))


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


if __name__ == "__main__":
    main()
