"""Does a per-class (given label) adjustment of P(wrong)'s update help? Measured on the 13 cached audits of
``bench_calibration.py`` (``$OGAUDIT_CACHE/bench-calibration/``; run that first), seconds.

:func:`ogaudit.review.calibration.update_with_decisions` pools the reviewer decisions over all classes. A class
whose labels are much noisier than the others keeps the pooled figure. Tried on top of the pooled update, each
class's decided samples fit a log-odds shift ``δ_c`` of the pooled estimate (``σ(logit p + δ_c)`` for every sample
given ``c``), shrunk towards the pooled fit:

* ``beta τ=0.5``: a Gaussian prior of standard deviation 0.5 on ``δ_c`` (MAP by Newton), i.e. a prior centred on the
  pooled estimate worth a few decisions;
* ``EB``: empirical Bayes, the classes' raw shifts (MAP with a wide prior, τ = 3) and their variances
  ``1 / Σ q(1 − q)`` give the between-class variance ``τ²`` by DerSimonian–Laird; each shift is scaled by
  ``τ² / (τ² + v_c)``, so where the classes do not differ beyond their sampling noise nothing moves;
* ``EB in range``: the same, applied only to samples at or above the class's lowest decided estimate (decisions from
  the top of the queue are not carried down to the bulk).

After 100 decisions (the truth as the decision) from the top of the queue or in the "to calibrate P(wrong)" order
(mean over the 3 orders of ``bench_calibration``), over the samples not decided: the expected calibration error
(10 bins) over all of them and class-wise (each given class's ECE, weighted by its size: what a per-class
adjustment should improve).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration_per_class.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import default_cache_dir


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p) - np.log1p(-p)


def class_shift(z: np.ndarray, wrong: np.ndarray, tau: float) -> float:
    """MAP ``δ`` of ``Σ log P(wrong_i | σ(z_i + δ)) − δ² / (2τ²)`` (Newton; the objective is concave)."""
    shift = 0.0
    for _ in range(50):
        q = _sigmoid(z + shift)
        step = (np.sum(wrong - q) - shift / tau**2) / (-np.sum(q * (1 - q)) - 1 / tau**2)
        shift -= step
        if abs(step) < 1e-8:
            break
    return shift


def per_class(p, rows, wrong, labels, *, tau: float | None, in_range: bool = False) -> np.ndarray:
    """``p`` (N,) moved by each given class's shift fitted to its decisions (``rows``, ``wrong``); ``tau`` None:
    empirical Bayes."""
    z = _logit(p)
    out = z.copy()
    fits = []
    for c in np.unique(labels[rows]):
        mine = labels[rows] == c
        if tau is not None:
            fits.append((c, class_shift(z[rows][mine], wrong[mine], tau), 0.0))
        elif mine.sum() >= 2:
            shift = class_shift(z[rows][mine], wrong[mine], 3.0)
            q = _sigmoid(z[rows][mine] + shift)
            fits.append((c, shift, 1 / max(float(np.sum(q * (1 - q))), 1e-6)))
    if tau is None:
        if len(fits) < 2:
            return p
        shifts, variances = np.array([f[1] for f in fits]), np.array([f[2] for f in fits])
        w = 1 / variances
        centre = np.sum(w * shifts) / np.sum(w)
        q_stat = np.sum(w * (shifts - centre) ** 2)
        tau2 = max(0.0, (q_stat - (len(fits) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
        fits = [(c, s * tau2 / (tau2 + v) if tau2 > 0 else 0.0, v) for c, s, v in fits]
    for c, shift, _ in fits:
        inside = labels == c
        if in_range:
            inside &= z >= z[rows][labels[rows] == c].min()
        out[inside] += shift
    return _sigmoid(out)


VARIANTS = {
    "pooled": None,
    "beta τ=0.5": dict(tau=0.5),
    "EB": dict(tau=None),
    "EB in range": dict(tau=None, in_range=True),
}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_calibration import DECISIONS, ORDERS, gather

    from ogaudit.review.calibration import calibration_order, estimate_wrong, update_with_decisions
    from ogaudit.review.evidence import Calibration, expected_calibration_error

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-calibration")
    args = parser.parse_args()

    def classwise(p, wrong, labels):
        classes = np.unique(labels)
        values = [expected_calibration_error(p[labels == c], wrong[labels == c]) for c in classes]
        return float(np.average(values, weights=[np.sum(labels == c) for c in classes]))

    names = list(VARIANTS)
    print(
        f"{'run':30s} {'decisions':10s}"
        + "".join(f"{n:>13s}" for n in names)
        + " |"
        + "".join(f"{n:>13s}" for n in names)
    )
    print(f"{'':41s}{'ECE over all':>26s}{'':26s} |{'class-wise ECE':>26s}")
    totals: dict[str, list[np.ndarray]] = {}
    for name, run in gather(args.cache).items():
        wrong, labels = run["wrong"], run["labels"]
        estimate = estimate_wrong(Calibration.load()(run["raw"]), run["posterior"], labels)
        orders = {"top": [np.argsort(-run["score"], kind="stable")[:DECISIONS]], "calibrate": []}
        for order in range(ORDERS):
            ids = np.char.add(f"{order}-", np.arange(len(wrong)).astype(str))
            orders["calibrate"].append(np.argsort(calibration_order(estimate.p, ids), kind="stable")[:DECISIONS])
        for mode, row_sets in orders.items():
            cells = np.zeros((len(row_sets), 2, len(names)))
            for k, rows in enumerate(row_sets):
                pooled = update_with_decisions(estimate, rows, wrong[rows]).p
                rest = np.ones(len(wrong), bool)
                rest[rows] = False
                for j, variant in enumerate(VARIANTS.values()):
                    p = (
                        pooled
                        if variant is None
                        else per_class(pooled, rows, wrong[rows].astype(float), labels, **variant)
                    )
                    cells[k, 0, j] = expected_calibration_error(p[rest], wrong[rest])
                    cells[k, 1, j] = classwise(p[rest], wrong[rest], labels[rest])
            mean = cells.mean(axis=0)
            totals.setdefault(mode, []).append(mean)
            print(
                f"{name:30s} {mode:10s}"
                + "".join(f"{v:13.3f}" for v in mean[0])
                + " |"
                + "".join(f"{v:13.3f}" for v in mean[1])
            )
    for mode, means in totals.items():
        mean = np.mean(means, axis=0)
        print(
            f"{'mean of 13':30s} {mode:10s}"
            + "".join(f"{v:13.3f}" for v in mean[0])
            + " |"
            + "".join(f"{v:13.3f}" for v in mean[1])
        )


if __name__ == "__main__":
    main()
