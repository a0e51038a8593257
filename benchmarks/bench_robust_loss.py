"""Does a noise-robust training loss make the audit's flags better under human-like noise? (issue 24)

Training on wrong labels costs the model most where the wrong labels are plausible (instance-dependent and
class-pair noise): it fits them. A loss robust to wrong labels (:data:`ogaudit.settings.TRAIN_LOSSES`: generalized
cross-entropy, GCE, Zhang & Sabuncu 2018, q = 0.7; symmetric cross-entropy, SCE, Wang et al. 2019) might keep the
model from fitting them and so raise the detectors' AP. This runs the recipe of ``bench_calibration.py``'s ``gather``
(digits / MNIST 5k 3,000 / Fashion-MNIST 3,000 × 20% symmetric, class-pair and instance-dependent noise; 10 epochs;
seed 0, or ``--seeds``; ``map_method="none"``), once per loss (and label smoothing, ε = 0.1, for comparison), and prints, per run and loss, the AP (average precision of the
scores against the planted wrong labels) and the precision of the flagged 5% for the default detector
(``posterior-auto``, the audit's score) and ``posterior-ratio`` (the counterfactual ratio of the same ``π``:
:func:`ogaudit.detectors.outliers.counterfactual_log_ratio`), with each robust loss's AP minus cross-entropy's.

Evidence is kept in ``$OGAUDIT_CACHE/bench-robust-loss/`` (a rerun reads it back); cross-entropy's is computed
here too (not read from ``bench-calibration/``, which an older release may have written). torch runs on 1 thread.

    OGAUDIT_CACHE=... PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/bench_robust_loss.py \\
        [--runs fashion-mnist-3000-instance ...] [--losses cross-entropy gce ...] [--markdown]
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

from bench_calibration import IMAGE_SETS, RATE, _evidence  # noqa: E402

from ogaudit.cache.artifacts import default_cache_dir  # noqa: E402

KINDS = ("instance", "pairs", "symmetric")
BUDGET = 0.05
RUNS = tuple(f"{data}-{limit or 'all'}-{kind}" for kind in KINDS for data, limit in reversed(IMAGE_SETS))
"""Fashion-MNIST instance first (the target case), then the others."""


def evidence(name: str, loss: str, cache: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The audit's evidence for run ``name`` (``"<data>-<limit>-<kind>"``) trained with ``loss``, cached; ``seed``
    seeds the planted noise, the subset and the training."""
    path = cache / (f"{name}-{loss}.npz" if seed == 0 else f"{name}-{loss}-seed{seed}.npz")
    if path.is_file():
        with np.load(path) as arrays:
            return dict(arrays)
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import AuditSettings

    data, limit, kind = name.rsplit("-", 2)
    settings = AuditSettings(
        noise_rate=RATE,
        noise_kind=kind,
        limit=None if limit == "all" else int(limit),
        epochs=10,
        map_method="none",
        seed=seed,
        loss=loss,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ogaudit-bench-robust-") as tmp:
        result = audit(data, settings, cache_dir=tmp)
    run = _evidence(result, result.scores["is_noisy"].to_numpy(dtype=bool))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **run)
    print(f"audited {name} ({loss}) in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return run


def measure(run: dict[str, np.ndarray]) -> dict[str, float]:
    """AP and flagged precision (top :data:`BUDGET`) of ``posterior-auto`` and ``posterior-ratio``."""
    from sklearn.metrics import average_precision_score

    from ogaudit.detectors.outliers import counterfactual_log_ratio

    wrong = run["wrong"]
    flagged = max(1, int(round(BUDGET * len(wrong))))
    out = {}
    for detector, score in (
        ("auto", run["score"]),
        ("ratio", counterfactual_log_ratio(run["posterior"], run["labels"].astype(np.int64))),
    ):
        top = np.argsort(-score, kind="stable")[:flagged]
        out[f"{detector} AP"] = float(average_precision_score(wrong, score))
        out[f"{detector} flagged"] = float(wrong[top].mean())
    out["fits wrong"] = float((run["probs"].argmax(1) == run["labels"])[wrong].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--losses", nargs="+", default=["cross-entropy", "gce", "sce", "label-smoothing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    cache = default_cache_dir() / "bench-robust-loss"
    columns = ("auto AP", "auto flagged", "ratio AP", "ratio flagged", "fits wrong")
    rows = []
    for name in args.runs:
        for seed in args.seeds:
            base = None
            for loss in args.losses:
                values = measure(evidence(name, loss, cache, seed))
                base = base or values
                delta = {f"Δ {c}": values[c] - base[c] for c in ("auto AP", "ratio AP")}
                rows.append((name if seed == 0 else f"{name} seed {seed}", loss, values, delta))
    header = ("run", "loss", *columns, "Δ auto AP", "Δ ratio AP")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print("  ".join(f"{h:>14}" for h in header))
    for name, loss, values, delta in rows:
        cells = [name, loss] + [f"{values[c]:.3f}" for c in columns] + [f"{v:+.3f}" for v in delta.values()]
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(f"{c:>14}" for c in cells))
    print("fits wrong: the share of the wrong labels the final model predicts (memorised); Δ: minus cross-entropy's")


if __name__ == "__main__":
    main()
