"""Text benchmark on the built-in ``tweets`` (CrowdFlower sentiment, 38k tweets, real annotator agreement).

Two questions, each scored by AUROC / average precision against a known suspect set:

* **planted**: the unanimously labelled tweets (annotator agreement 1.0), 20% of their labels flipped
  symmetrically (``inject_label_noise``); the flipped ones are the truth.
* **real**: every tweet with a recorded agreement, the given labels as they are; tweets whose annotators agreed
  less than 0.6 are the suspect set (real human label noise, soft ground truth).

Methods, all on the same frozen all-MiniLM-L6-v2 embeddings (computed once, read from the artifact cache), or with
``--model lora`` all on the same LoRA fine-tuning of its top layers (the audit's ``model="lora"``; cleanlab's five
folds fine-tune five times):

* **ogaudit default**: the audit's linear head and its default detector on closed-form last-layer gradients
  (``audit(..., map_method="none")``), wall time of train + gradients + detect: on a fresh cache (a first scan),
  and again with only the gradient-neighbour search left in the cache (a scan after the labels changed, as after
  a review round: the head trains again, the neighbours of the fixed embeddings are read back; same scores);
* **cleanlab, 5-fold CV**: ``cleanlab.rank.get_label_quality_scores`` (and ``cleanlab.filter.find_label_issues``
  for its flag set) on out-of-fold probabilities of the same linear head, five trainings on 4/5 of the data;
* **cleanlab, TF-IDF + LR (5-fold CV)**: the classic text baseline, word 1-2-grams, logistic regression;
* **in-sample loss**: cross-entropy of the audit's head on its own training data.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_text.py [--out docs/bench_text.json]

Wall times depend on the machine's load; the script prints the load average it ran under, and times the audit and
cleanlab-CV ``--repeats`` times (3), reporting the median, since one linear-head training varies by ±30% here. On an oversubscribed
machine run it with ``OMP_NUM_THREADS=1``: two torch threads that wait for each other's turn on a busy CPU make
small linear-head steps ~20x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ogaudit.data.dataset import Dataset
from ogaudit.data.noise import inject_label_noise
from ogaudit.detectors.metrics import detection_metrics
from ogaudit.pipeline.load import prepare_dataset
from ogaudit.pipeline.run import audit
from ogaudit.settings import AuditSettings

FOLDS = 5
NOISE_RATE = 0.2
SUSPECT_BELOW = 0.6


def head_cv_probs(dataset: Dataset, seed: int, epochs: int, kind: str = "linear") -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities of the audit's model ``kind`` (same recipe and epochs: a linear head, or LoRA
    fine-tuning), and the folds' wall time."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from ogaudit.models.nets import build_model
    from ogaudit.models.training import batched_features, train_model

    start = time.perf_counter()
    probs = np.zeros((len(dataset), dataset.n_classes), dtype=np.float32)
    for train_rows, held_rows in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(dataset.y, dataset.y):
        train = dataset.subset(train_rows)
        model = build_model(kind, train, seed=seed)
        train_model(model, train, AuditSettings(model=kind, epochs=epochs, seed=seed).train_settings)
        with torch.no_grad():
            logits = model.head(torch.as_tensor(batched_features(model, dataset.x[held_rows])))
        probs[held_rows] = torch.softmax(logits, dim=1).numpy()
    return probs, time.perf_counter() - start


def tfidf_cv_probs(dataset: Dataset, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    start = time.perf_counter()
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(dataset.texts)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=1000), features, dataset.y, cv=folds, method="predict_proba")
    return probs, time.perf_counter() - start


def cleanlab_scores(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, float]:
    """1 − cleanlab's label quality (higher = more suspicious) and the time of find_label_issues + the scores."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    start = time.perf_counter()
    find_label_issues(labels, probs)
    scores = 1.0 - get_label_quality_scores(labels, probs)
    return scores, time.perf_counter() - start


def evaluate(
    name: str,
    dataset: Dataset,
    suspect: np.ndarray,
    seed: int,
    kind: str = "linear",
    epochs: int | None = None,
    repeats: int = 1,
) -> dict:
    """Every method on ``dataset`` against ``suspect``; rows of {method, auroc, ap, seconds}. The audit's two scans
    and (for the linear head) cleanlab's cross-validation run ``repeats`` times: their seconds are the median."""
    print(f"[{name}] {len(dataset):,} tweets, {int(suspect.sum()):,} suspect", flush=True)
    rows = []

    def report(method: str, score: np.ndarray, seconds: float) -> None:
        rows.append((method, score, seconds))
        metrics = detection_metrics(suspect, score)
        print(f"  {method:<44} AUROC {metrics['auroc']:.3f}  AP {metrics['average_precision']:.3f}  {seconds:.1f} s")

    settings = AuditSettings(model=kind, seed=seed, epochs=epochs, map_method="none")
    firsts, rescans = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:  # a fresh model cache: the audit's time includes its training
            start = time.perf_counter()
            result = audit(dataset, settings, cache_dir=cache)
            firsts.append(time.perf_counter() - start)
            kept = Path(cache) / "v1" / "neighbours"
            for folder in (Path(cache) / "v1").iterdir():  # what changed labels invalidate: all but the neighbours
                if folder != kept:
                    shutil.rmtree(folder)
            searched_once = kept.is_dir()  # a detector that searched gradient neighbours in fixed features
            start = time.perf_counter()
            again = audit(dataset, settings, cache_dir=cache)
            rescans.append(time.perf_counter() - start)
    ours, rescan = float(np.median(firsts)), float(np.median(rescans))
    epochs = int(result.record["model"]["epochs"])
    print(f"  audit: {epochs} epochs, stages (s) {result.record['timings_s']}", flush=True)
    scores = result.scores["score"].to_numpy()
    detector = result.record["settings"]["detector"]
    report(f"ogaudit default ({detector}), first scan", scores, ours)
    if searched_once:
        print(f"  scan with cached neighbours: stages (s) {again.record['timings_s']}", flush=True)
        np.testing.assert_allclose(again.scores["score"].to_numpy(), scores, rtol=1e-6)
        report(f"ogaudit default ({detector}), neighbours cached", scores, rescan)
    probs = result.evidence.probs
    loss = -np.log(np.clip(probs[np.arange(len(dataset)), dataset.y], 1e-12, None))
    train_time = result.record["timings_s"]["train"]
    same = "same head" if kind == "linear" else "same LoRA fine-tuning"
    report(f"in-sample loss ({same})", loss, train_time)
    cv_times = []
    for _ in range(repeats if kind == "linear" else 1):  # five LoRA fine-tunings take long enough to time once
        cv_probs, cv_time = head_cv_probs(dataset, seed, epochs, kind)
        cl_scores, cl_time = cleanlab_scores(dataset.y, cv_probs)
        cv_times.append(cv_time + cl_time)
    report(f"cleanlab, 5-fold CV of the {same}", cl_scores, float(np.median(cv_times)))
    tf_probs, tf_time = tfidf_cv_probs(dataset, seed)
    tf_scores, tf_cl = cleanlab_scores(dataset.y, tf_probs)
    report("cleanlab, TF-IDF + LR (5-fold CV)", tf_scores, tf_time + tf_cl)
    out = []
    for method, score, seconds in rows:
        metrics = detection_metrics(suspect, score)
        out.append(
            {
                "method": method,
                "auroc": metrics["auroc"],
                "average_precision": metrics["average_precision"],
                "seconds": round(seconds, 1),
            }
        )
    return {"samples": len(dataset), "suspect": int(suspect.sum()), "epochs": epochs, "methods": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--limit", type=int, help="a stratified subset of the tweets (a quick look; not the figures)")
    parser.add_argument(
        "--model",
        choices=("linear", "lora"),
        default="linear",
        help="linear: a head on frozen embeddings (the default audit); lora: fine-tune the encoder's top layers",
    )
    parser.add_argument("--epochs", type=int, help="training epochs of every model (default: the audit's automatic)")
    parser.add_argument("--only", choices=("planted", "real"), help="run one of the two suspect sets")
    parser.add_argument(
        "--repeats", type=int, default=3, help="time the audit and cleanlab-CV this many times; report the median"
    )
    args = parser.parse_args()
    load = os.getloadavg()
    start = time.perf_counter()
    model = "lora" if args.model == "lora" else "auto"
    tweets = prepare_dataset("tweets", AuditSettings(limit=args.limit, seed=args.seed, model=model))
    print(f"loaded and embedded (or read from the cache) in {time.perf_counter() - start:.1f} s", flush=True)
    agreement = tweets.text_origin.extra["agreement"][tweets.rows]
    unanimous = tweets.subset(np.flatnonzero(agreement == 1.0))
    planted = inject_label_noise(unanimous, NOISE_RATE, kind="symmetric", seed=args.seed)
    planted_suspect = planted.y != planted.true_y
    planted = replace(planted, true_y=None)  # the audit must not see the truth
    with tempfile.TemporaryDirectory() as cache:  # first-call costs (imports, allocator) charged to no method
        warm = AuditSettings(model=args.model, map_method="none", epochs=1)
        audit(tweets.subset(np.arange(min(300, len(tweets)))), warm, cache_dir=cache)
    known = tweets.subset(np.flatnonzero(~np.isnan(agreement)))
    real_suspect = tweets.text_origin.extra["agreement"][known.rows] < SUSPECT_BELOW
    sets = {
        "planted": ("planted 20% among unanimous", planted, planted_suspect),
        "real": (f"real: agreement < {SUSPECT_BELOW}", known, real_suspect),
    }
    figures = {
        key: evaluate(name, data, suspect, args.seed, args.model, args.epochs, args.repeats)
        for key, (name, data, suspect) in sets.items()
        if args.only in (None, key)
    }
    figures |= {
        "model": args.model,
        "load_average_at_start": [round(x, 2) for x in load],
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
    }
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
