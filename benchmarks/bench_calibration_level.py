"""Why P(wrong) before any decision misses ECE ≤ 0.05 on some runs: oracle bounds and the noise-rate estimators tried.

Reads the evidence ``bench_calibration.py`` keeps (``$OGAUDIT_CACHE/bench-calibration/*.npz``, or ``--cache``:
``raw``, ``posterior``, ``probs``, ``labels``, ``neighbours``, ``wrong``) and audits nothing unless asked. Three
tables:

* **oracle** (each column reads the truth, so none is an estimator): the expected calibration error (ECE, 10 equal
  bins) of today's estimate (:func:`ogaudit.review.calibration.estimate_wrong`); of the best monotone map of the
  score, an isotonic regression fitted on the truth of one half and scored on the other (2 folds, :data:`REPEATS`
  random halves; fitted and scored on the same samples it is 0 by construction, since isotonic regression is
  calibrated on its own level sets), of ``raw = 1 − π(given)`` and of today's estimate; of today's shape moved to
  the true noise rate; and to the true rate of each given class. If the first is ≤ 0.05 the target is not mis-set
  for that run: a map of the score that reaches it exists, and what is missing is knowing it without the truth.
* **level**: where the two class-confusion estimators err (shares of all samples, read with the truth: the
  samples the confident joint counts as another class although their label is right, and the wrong ones it does
  not count; the EM's P(wrong) mass on right labels, and the mass it misses on wrong ones); the noise rate each
  estimator reads, and the ECE of today's shape moved to it: the confident joint
  (today's level), the transition EM's own rate, the mixture, their median, the mean of the first two, the
  confident joint recomputed after a backward correction of ``π`` by its own transition (``T⁻¹π``, then the EM),
  Patrini et al. (2017)'s anchor points on the model's softmax (97th percentile per class), and, where the run
  holds the head's features (``--gather-seed`` writes them) and with ``--held-out``, the confident joint and the EM on 5-fold
  cross-fitted probabilities of a logistic regression on those features (held-out probabilities, for the rate only);
  and each given class moved to its own row's rate of the confident joint instead of one global level.
* **clean floor** (``--clean``): the same audits with no planted noise (digits, MNIST 3,000, Fashion-MNIST 3,000,
  the recipe of ``bench_calibration.py`` at ``noise_rate=0``): what each estimator reads where nothing was flipped.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration_level.py                  # seconds, from the cache
    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration_level.py --clean          # + 3 audits (~2 min)
    PYTHONPATH=. .venv/bin/python benchmarks/bench_calibration_level.py --gather-seed 1 --cache /tmp/seed1
        # the 12 image runs audited again at seed 1 (with the head's features) into /tmp/seed1, then the tables
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_calibration  # noqa: E402

from ogaudit.cache.artifacts import default_cache_dir  # noqa: E402
from ogaudit.review import calibration as cal  # noqa: E402
from ogaudit.review.evidence import expected_calibration_error  # noqa: E402

REPEATS = 5
"""Random halves of the cross-fitted isotonic oracle (mean ECE over them)."""
TARGET = 0.05


def isotonic_oracle(score: np.ndarray, wrong: np.ndarray, *, repeats: int = REPEATS, seed: int = 0) -> float:
    """ECE of the best monotone map of ``score`` (N,) out of sample: an isotonic regression of the truth ``wrong``
    (N,) bool fitted on one random half and applied to the other, both ways, mean over ``repeats`` halvings."""
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(seed)
    n, values = len(score), []
    for _ in range(repeats):
        half = rng.permutation(n) < n // 2
        mapped = np.empty(n)
        for part in (half, ~half):
            fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            mapped[part] = fitted.fit(score[~part], wrong[~part]).predict(score[part])
        values.append(expected_calibration_error(mapped, wrong))
    return float(np.mean(values))


def anchor_rate(probs: np.ndarray, labels: np.ndarray, *, quantile: float = 0.97) -> float:
    """Patrini et al. (2017)'s transition from anchor points: column ``j`` of ``T`` is the mean softmax of the samples
    at or above the ``quantile`` of ``p_j``; the rate is ``Σ_j P(true j)(1 − T[j, j])`` with ``P(true)`` solved
    from the given labels' shares (least squares, clipped to the simplex)."""
    n, c = probs.shape
    transition = np.zeros((c, c))
    for j in range(c):
        column = probs[:, j]
        transition[:, j] = probs[column >= np.quantile(column, quantile)].mean(axis=0)
    given = np.bincount(labels, minlength=c) / n
    true = np.clip(np.linalg.lstsq(transition, given, rcond=None)[0], 0, None)
    true /= max(true.sum(), 1e-12)
    return float(np.sum(true * (1 - np.diag(transition))))


def backward_rate(posterior: np.ndarray, labels: np.ndarray) -> float:
    """The EM's rate on ``π`` corrected backward by the confident joint's transition: ``p = T⁻¹π`` (clipped to the
    simplex), for ``π`` as an estimate of the *noisy*-label posterior rather than the clean one."""
    joint = cal.confident_joint(posterior, labels) + 1.0 / len(labels)
    transition = joint / joint.sum(axis=0, keepdims=True)
    clean = np.clip(np.linalg.solve(transition, posterior.T).T, 1e-6, None)
    clean /= clean.sum(axis=1, keepdims=True)
    return cal.noise_rates(clean, labels)["transition EM"]


def confidently_other(posterior: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: the samples the confident joint counts off its diagonal (``π_j ≥ t_j`` for some class, and the
    most probable such class is not the given one; the thresholds of :func:`ogaudit.detectors.joint.confident_joint`)."""
    n, c = posterior.shape
    counts = np.bincount(labels, minlength=c)
    threshold = np.bincount(labels, weights=posterior[np.arange(n), labels], minlength=c) / np.maximum(counts, 1)
    above = posterior >= threshold[None, :] - 1e-12
    best = np.where(above, posterior, -1.0).argmax(axis=1)
    return above.any(axis=1) & (best != labels)


def cross_fitted_probs(features: np.ndarray, labels: np.ndarray, *, folds: int = 5) -> np.ndarray:
    """(N, C) held-out probabilities of a standardised logistic regression on ``features`` (N, D), ``folds``-fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    out = np.zeros((len(labels), int(labels.max()) + 1))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, labels):
        model = LogisticRegression(max_iter=300).fit(x[train], labels[train])
        out[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return out


def measure(run: dict[str, np.ndarray], *, held_out_lr: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """(oracle row, level row) for one run's evidence; ``held_out_lr``: also the rates on cross-fitted logistic
    regression probabilities, where the run holds ``features`` (a minute or more per run on 2 loaded cores)."""
    from ogaudit.review.evidence import Calibration

    wrong, posterior, labels = run["wrong"], run["posterior"], run["labels"]
    estimate = cal.estimate_wrong(Calibration.load()(run["raw"]), posterior, labels)
    log_odds, joint = cal.true_label_posterior(posterior, labels)
    z = np.clip(log_odds, -60.0, 60.0)

    def at(rate: float) -> float:
        return expected_calibration_error(cal._shift_to_mean(None, rate, log_odds=z), wrong)

    per_class = np.empty(len(labels))
    for i in np.unique(labels):
        rows = labels == i
        per_class[rows] = cal._shift_to_mean(None, wrong[rows].mean(), log_odds=z[rows])
    oracle = {
        "true rate": float(wrong.mean()),
        "data (today)": expected_calibration_error(estimate.p, wrong),
        "isotonic of raw (2-fold)": isotonic_oracle(run["raw"], wrong),
        "isotonic of data (2-fold)": isotonic_oracle(estimate.p, wrong),
        "shape at true rate": at(float(wrong.mean())),
        "shape at true rate per class": expected_calibration_error(per_class, wrong),
    }
    rates = cal.noise_rates(posterior, labels, joint=joint)
    tried = {
        "confident joint": rates["confident joint"],
        "transition EM": rates["transition EM"],
        "mixture": rates["mixture"],
        "median of 3": float(np.median(list(rates.values()))),
        "mean CJ, EM": (rates["confident joint"] + rates["transition EM"]) / 2,
        "backward EM": backward_rate(posterior, labels),
        "anchors (softmax)": anchor_rate(run["probs"], labels),
    }
    if held_out_lr and "features" in run:
        held_out = cal.noise_rates(cross_fitted_probs(run["features"], labels), labels)
        tried["CJ held-out LR"] = held_out["confident joint"]
        tried["EM held-out LR"] = held_out["transition EM"]
    em = 1.0 / (1.0 + np.exp(-z))
    other = confidently_other(posterior, labels)
    level = {
        "true rate": float(wrong.mean()),
        "CJ: clean counted": float((other & ~wrong).mean()),
        "CJ: wrong missed": float((~other & wrong).mean()),
        "EM: on clean": float(em[~wrong].sum() / len(em)),
        "EM: wrong missed": float((1 - em[wrong]).sum() / len(em)),
    }
    for name, rate in tried.items():
        level[name] = rate
        level[f"ECE @ {name}"] = at(rate)
    class_rate = np.empty(len(labels))  # each given class moved to its own row of the confident joint
    shares = cal.confident_joint(posterior, labels)
    for i in np.unique(labels):
        rows = labels == i
        row = shares[i]
        class_rate[rows] = cal._shift_to_mean(None, (row.sum() - row[i]) / max(row.sum(), 1e-12), log_odds=z[rows])
    level["ECE @ CJ per class"] = expected_calibration_error(class_rate, wrong)
    return oracle, level


def gather_seed(seed: int, cache: Path) -> None:
    """The 12 image runs of ``bench_calibration.gather`` at ``seed``, with the head's features, into ``cache``."""
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import NOISE_KINDS, AuditSettings

    cache.mkdir(parents=True, exist_ok=True)
    for data, limit in bench_calibration.IMAGE_SETS:
        for kind in NOISE_KINDS:
            path = cache / f"{data}-{limit or 'all'}-{kind}.npz"
            if path.is_file():
                continue
            start = time.perf_counter()
            settings = AuditSettings(
                noise_rate=bench_calibration.RATE, noise_kind=kind, limit=limit, epochs=10, map_method="none", seed=seed
            )
            with tempfile.TemporaryDirectory(prefix="ogaudit-bench-level-") as tmp:
                result = audit(data, settings, cache_dir=tmp)
                evidence = bench_calibration._evidence(result, result.scores["is_noisy"].to_numpy(dtype=bool))
                evidence["features"] = np.asarray(result.evidence.features, dtype=np.float32)
            np.savez(path, **evidence)
            print(f"audited {path.stem} in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})")


def clean_floor() -> dict[str, dict[str, float]]:
    """Each rate estimator on the image sets audited with no planted noise (``bench_calibration``'s recipe)."""
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import AuditSettings

    rows = {}
    for data, limit in bench_calibration.IMAGE_SETS:
        start = time.perf_counter()
        settings = AuditSettings(noise_rate=0.0, limit=limit, epochs=10, map_method="none", seed=0)
        with tempfile.TemporaryDirectory(prefix="ogaudit-bench-level-") as tmp:
            result = audit(data, settings, cache_dir=tmp)
            run = bench_calibration._evidence(result, np.zeros(len(result.scores), bool))
        rates = cal.noise_rates(run["posterior"], run["labels"])
        agreement = float((run["posterior"].argmax(axis=1) == run["labels"]).mean())
        rows[f"{data}-{limit or 'all'}-clean"] = {**rates, "π agrees with label": agreement}
        print(f"audited {data} (clean) in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})")
    return rows


def _table(rows: dict[str, dict[str, float]], markdown: bool) -> None:
    keys = list(next(iter(rows.values())))
    if markdown:
        print("\n| run | " + " | ".join(keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for name, row in rows.items():
            print(f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys) + " |")
        return
    print(f"\n{'run':32s}" + "".join(f"{k[:13]:>14s}" for k in keys))
    for name, row in rows.items():
        print(f"{name:32s}" + "".join(f"{row.get(k, float('nan')):14.3f}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-calibration")
    parser.add_argument("--gather-seed", type=int, default=None, help="audit the 12 image runs at this seed first")
    parser.add_argument("--clean", action="store_true", help="also audit the image sets with no planted noise")
    parser.add_argument("--held-out", action="store_true", help="also the rates on held-out logistic regression")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.gather_seed is not None:
        gather_seed(args.gather_seed, args.cache)
    runs = {path.stem: dict(np.load(path)) for path in sorted(args.cache.glob("*.npz"))}
    if not runs:
        raise SystemExit(f"no evidence in {args.cache}: run benchmarks/bench_calibration.py first.")
    measured = {name: measure(run, held_out_lr=args.held_out) for name, run in runs.items()}
    oracle = {name: row for name, (row, _) in measured.items()}
    level = {name: row for name, (_, row) in measured.items()}
    _table(oracle, args.markdown)
    _table({n: {k: v for k, v in r.items() if not k.startswith("ECE")} for n, r in level.items()}, args.markdown)
    _table({n: {k: v for k, v in r.items() if k.startswith("ECE")} for n, r in level.items()}, args.markdown)
    for column in [k for k in next(iter(level.values())) if k.startswith("ECE")]:
        met = sum(row[column] <= TARGET for row in level.values())
        print(f"{column}: ≤ {TARGET} on {met} of {len(level)}")
    met = sum(row["isotonic of raw (2-fold)"] <= TARGET for row in oracle.values())
    print(f"isotonic of raw (2-fold): ≤ {TARGET} on {met} of {len(oracle)}")
    if args.clean:
        _table(clean_floor(), args.markdown)


if __name__ == "__main__":
    main()
