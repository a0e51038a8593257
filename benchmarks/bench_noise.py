"""Detection under realistic noise: Fashion-MNIST with 20% noise of each kind, and the tweets' real noise.

For every (noise kind, seed) the audit's model trains **once** (the pipeline's own stages and cache), and every
detector is derived from that one training: the paper's and ogaudit's gradient detectors, and the training-dynamics
detectors that read the trajectory recorded while it trained (``aum``, ``margin``, ``checkpoints``, ``simifeat``,
``dynamics``). The anchor is cleanlab on 5-fold cross-validated probabilities of the same recipe (five more
trainings, same epochs; ``bench_peers.cross_validated_probs`` / ``bench_text.head_cv_probs``).

Sets:

* ``symmetric``, ``pairs``, ``instance`` (and ``annotator`` with ``--kinds``): ``--samples`` Fashion-MNIST images
  drawn per seed (stratified) with 20% of the labels made wrong by ``inject_label_noise(kind, seed)``; the small
  CNN, automatic epochs;
* ``tweets``: the built-in CrowdFlower tweets with a recorded annotator agreement (a stratified ``--tweets``
  subset per seed, since embedding all 38k takes many minutes on two shared cores), the given labels as they are;
  tweets whose annotators agreed less than 0.6 are the (soft) truth; the frozen MiniLM encoder and a linear head.

Metrics per method: AUROC, average precision, precision of the flagged at the default budget (5%), false
negatives at the noise rate (of the ``m`` truly wrong, how many are not among the ``m`` top scores: Pickler et al.
2025's criterion), and wall time: the training (and forward passes) each method needs plus its own scoring.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_noise.py --seeds 0 --out docs/bench_noise.json

Trainings, features and cross-validated probabilities are cached under ``--cache-dir`` with the wall time they took
when they ran, so adding a seed reuses the rest. The machine is shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ogaudit.cache.artifacts import ArtifactCache, default_cache_dir  # noqa: E402
from ogaudit.data.load import load_dataset  # noqa: E402
from ogaudit.data.noise import inject_label_noise  # noqa: E402
from ogaudit.detectors.metrics import detection_metrics  # noqa: E402
from ogaudit.detectors.outliers import DETECTORS, make_detector  # noqa: E402
from ogaudit.pipeline.stages import frozen_features, head_evidence, obtain_model, training_dynamics  # noqa: E402
from ogaudit.settings import DEFAULT_BUDGET, DEFAULT_DETECTOR, DYNAMICS_DETECTORS, AuditSettings  # noqa: E402
from ogaudit.storage import atomic_path  # noqa: E402

NOISE_RATE = 0.2
SUSPECT_BELOW = 0.6
CLEANLAB_CV = "cleanlab (5-fold CV)"


def _timed(path: Path, compute):
    """``compute()``'s seconds, recorded in ``path`` the first time (a cached stage reports the time it took)."""
    start = time.perf_counter()
    value = compute()
    took = time.perf_counter() - start
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps({"seconds": took}))
    return value, json.loads(path.read_text())["seconds"]


def score_all(dataset, truth, settings: AuditSettings, cache_dir: Path, cv) -> dict[str, dict]:
    """Every detector from one training, and cleanlab on cross-validated probabilities (unless ``cv`` is None);
    metrics and wall time."""
    cache = ArtifactCache(cache_dir)
    notes: list[str] = []
    times = cache_dir / "bench-noise"
    (model, info), train_s = _timed(
        times / f"train-{dataset.fingerprint()}-{settings.seed}.json",
        lambda: obtain_model(dataset, settings, cache, None, None, notes.append),
    )
    key = info["key"]

    def gradients():
        frozen = frozen_features(model, dataset, cache, None, None, notes.append, stage="gradients")
        return head_evidence(model, dataset, key, cache, None, None, notes.append, features=frozen)

    head, gradients_s = _timed(times / f"gradients-{key}.json", gradients)
    trajectory, early_s = _timed(
        times / f"early-{key}.json",
        lambda: training_dynamics(model, dataset, settings, head, cache, None, None, notes.append),
    )
    print(
        f"    trained {info['epochs']} epochs in {train_s:.0f} s; forward pass {gradients_s:.0f} s; early {early_s:.0f} s"
    )
    results = {}
    for name in DETECTORS:
        start = time.perf_counter()
        detector = make_detector(name, seed=settings.seed, trajectory=trajectory).fit(head)
        score = detector.outlier_scores(head)
        seconds = train_s + gradients_s + (early_s if name in DYNAMICS_DETECTORS else 0.0)
        results[name] = _metrics(truth, score, seconds + time.perf_counter() - start)
        if hasattr(detector, "concentration_"):  # posterior-auto: what it read from the data, and its blend
            results[name].update(concentration=detector.concentration_, ratio_weight=detector.weight_)
    if cv is None:
        return results
    probs, cv_s = cv(dataset, settings.seed, int(info["epochs"]))
    from cleanlab.rank import get_label_quality_scores

    start = time.perf_counter()
    score = 1.0 - get_label_quality_scores(dataset.y, probs)
    results[CLEANLAB_CV] = _metrics(truth, score, cv_s + time.perf_counter() - start)
    return results


def _metrics(truth: np.ndarray, score: np.ndarray, seconds: float) -> dict:
    found = detection_metrics(truth, score, budget=DEFAULT_BUDGET)
    noisy = found["noisy"]
    return {
        "auroc": found["auroc"],
        "average_precision": found["average_precision"],
        "precision_at_budget": found["precision_at_budget"],
        "false_negatives_at_noise_rate": int(round(noisy * (1.0 - found["precision_at_noise_rate"]))),
        "noisy": noisy,
        "seconds": seconds,
    }


def reference(kind: str, seed: int, samples: int, cache_dir: Path, epochs: int | None) -> dict:
    """The metrics of ``bench_noise_bound``'s reference on this set: ``1 − p(y_given | x)`` from two cross-fitted
    trainings on the true labels; its wall time is theirs."""
    import bench_noise_bound

    noisy = bench_noise_bound.noisy_fashion(kind, seed, samples)
    probs, seconds = bench_noise_bound.true_label_probs(noisy, seed, cache_dir, epochs)
    return _metrics(noisy.y != noisy.true_y, bench_noise_bound.reference_scores(noisy, probs), seconds)


def fashion(kind: str, seed: int, samples: int):
    subset = load_dataset("fashion-mnist", limit=samples, seed=seed)
    noisy = inject_label_noise(subset, NOISE_RATE, kind=kind, seed=seed)
    return replace(noisy, true_y=None), noisy.y != noisy.true_y


def tweets(seed: int, limit: int | None, cache_dir: Path):
    from ogaudit.pipeline.load import prepare_dataset

    data = prepare_dataset("tweets", AuditSettings(limit=limit, seed=seed), cache_dir=cache_dir)
    agreement = data.text_origin.extra["agreement"][data.rows]
    known = data.subset(np.flatnonzero(~np.isnan(agreement)))
    return known, data.text_origin.extra["agreement"][known.rows] < SUSPECT_BELOW


def summary(figures: dict) -> str:
    """One table per noise kind: every method's mean ± sample standard deviation over the seeds in ``figures``
    (AUROC, AP, flagged precision, false negatives at the noise rate), by mean AP, the default in bold; a method
    measured on fewer seeds than the kind has says on which."""
    kinds: dict[str, list[dict]] = {}
    for run in figures["runs"].values():
        kinds.setdefault(run["kind"], []).append(run)
    lines = []
    for kind, runs in kinds.items():
        seeds = sorted(run["seed"] for run in runs)
        lines += [
            f"**{kind}**, seeds {', '.join(map(str, seeds))}: mean ± sd over the seeds",
            "",
            "| method | AUROC | AP | P@5% (flagged precision) | FN at the noise rate | seeds |",
            "|---|---|---|---|---|---|",
        ]
        methods: dict[str, dict[int, dict]] = {}
        for run in runs:
            for method, result in run["methods"].items():
                methods.setdefault(method, {})[run["seed"]] = result

        def spread(per_seed: dict[int, dict], key: str, digits: int = 3) -> str:
            values = np.array([r[key] for r in per_seed.values()], dtype=float)
            if len(values) == 1:
                return f"{values[0]:,.{digits}f}"
            return f"{values.mean():,.{digits}f} ± {values.std(ddof=1):,.{digits}f}"

        def mean_ap(per_seed: dict[int, dict]) -> float:
            return float(np.mean([r["average_precision"] for r in per_seed.values()]))

        for method in sorted(methods, key=lambda m: -mean_ap(methods[m])):
            label = f"**{method}** (default)" if method == DEFAULT_DETECTOR else method
            measured = sorted(methods[method])
            lines.append(
                f"| {label} | {spread(methods[method], 'auroc')} | {spread(methods[method], 'average_precision')} | "
                f"{spread(methods[method], 'precision_at_budget')} | "
                f"{spread(methods[method], 'false_negatives_at_noise_rate', 0)} | "
                f"{'all' if measured == seeds else ', '.join(map(str, measured))} |"
            )
        lines.append("")
    return "\n".join(lines)


def markdown(figures: dict) -> str:
    """A summary over the seeds (:func:`summary`), then one table per (kind, seed) run in ``figures``, methods by
    average precision, the default in bold."""
    lines = [summary(figures)]
    for run in figures["runs"].values():
        lines += [
            f"**{run['kind']}**, seed {run['seed']}: {run['samples']:,} samples, "
            f"{next(iter(run['methods'].values()))['noisy']:,} wrong; load average at the start "
            f"{run['load_average'][0]:.1f} (2 cores)",
            "",
            "| method | AUROC | AP | P@5% (flagged precision) | FN at the noise rate | wall time (s) |",
            "|---|---|---|---|---|---|",
        ]
        methods = run["methods"]
        for method in sorted(methods, key=lambda m: -methods[m]["average_precision"]):
            r = methods[method]
            label = f"**{method}** (default)" if method == DEFAULT_DETECTOR else method
            lines.append(
                f"| {label} | {r['auroc']:.3f} | {r['average_precision']:.3f} | {r['precision_at_budget']:.3f} | "
                f"{r['false_negatives_at_noise_rate']:,} | {r['seconds']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--tweets", type=int, default=6_000, help="tweets per seed (stratified subset)")
    parser.add_argument("--kinds", nargs="+", default=["pairs", "instance", "symmetric", "tweets"])
    parser.add_argument("--epochs", type=int, help="training epochs (default: the audit's automatic; a quick look)")
    parser.add_argument("--no-cv", nargs="*", default=[], help="kinds to run without cleanlab's five CV trainings")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, help="write every figure as JSON here (merged with what it holds)")
    parser.add_argument(
        "--reference",
        nargs="*",
        default=[],
        help="image kinds to score with a model trained on the true labels too (bench_noise_bound.py: a bound, "
        "not a detector; two more half-size trainings, cached)",
    )
    parser.add_argument("--report", action="store_true", help="print --out's figures as markdown tables and stop")
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads(args.out.read_text())))
        return
    import bench_noise_bound
    import bench_peers
    import bench_text

    def image_cv(dataset, seed, epochs):
        return bench_peers.cross_validated_probs(dataset, seed, args.cache_dir, epochs)

    def text_cv(dataset, seed, epochs):
        path = args.cache_dir / "bench-noise" / f"cv-text-{dataset.fingerprint()}-{seed}-{epochs}.npz"
        if path.exists():
            with np.load(path) as saved:
                return saved["probs"], float(saved["seconds"])
        probs, seconds = bench_text.head_cv_probs(dataset, seed, epochs, "linear")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, probs=probs, seconds=seconds)
        return probs, seconds

    figures = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    figures.setdefault("runs", {})
    for seed in args.seeds:
        for kind in args.kinds:
            load = os.getloadavg()
            start = time.perf_counter()
            if kind == "tweets":
                dataset, truth = tweets(seed, args.tweets, args.cache_dir)
                settings, cv = AuditSettings(seed=seed, map_method="none", epochs=args.epochs), text_cv
            else:
                dataset, truth = fashion(kind, seed, args.samples)
                settings = AuditSettings(model="cnn", seed=seed, map_method="none", epochs=args.epochs)
                cv = image_cv
            cv = None if kind in args.no_cv else cv
            print(
                f"[{kind}, seed {seed}] {len(dataset):,} samples, {int(truth.sum()):,} wrong; load {load}", flush=True
            )
            results = score_all(dataset, truth, settings, args.cache_dir, cv)
            if kind in args.reference and kind != "tweets":
                results[bench_noise_bound.REFERENCE] = reference(kind, seed, args.samples, args.cache_dir, args.epochs)
            figures["runs"][f"{kind}/{seed}"] = {
                "kind": kind,
                "seed": seed,
                "samples": len(dataset),
                "load_average": [round(x, 2) for x in load],
                "seconds": round(time.perf_counter() - start, 1),
                "methods": results,
            }
            ordered = sorted(results, key=lambda name: -results[name]["average_precision"])
            for name in ordered:
                r = results[name]
                mark = " (default)" if name == DEFAULT_DETECTOR else ""
                print(
                    f"  {name + mark:<32} AUROC {r['auroc']:.3f}  AP {r['average_precision']:.3f}  "
                    f"P@5% {r['precision_at_budget']:.3f}  FN@rate {r['false_negatives_at_noise_rate']:>5}  "
                    f"{r['seconds']:.0f} s",
                    flush=True,
                )
            if args.out:
                args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
