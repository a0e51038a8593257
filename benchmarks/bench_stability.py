"""Does a flag's stability tell right flags from wrong ones? Neighbour resampling vs checkpoints (issue 24).

For each noise kind (:data:`ogaudit.settings.NOISE_KINDS`, 20% planted) on digits and MNIST / Fashion-MNIST subsets
(and the built-in tweets' real noise: annotator agreement < 0.6 taken as wrong, with ``--tweets``), one audit runs
at the demo's recipe (10 epochs, the default detector and budget); its evidence and the training's per-epoch
margins are kept in ``$OGAUDIT_CACHE/bench-stability/`` (a rerun reads them back). Then, among the flagged samples,
for each stability it reports how many read stable (≥ :data:`~ogaudit.review.calibration.STABLE_AT`) and
unstable, the precision (share whose label is truly wrong) of each group, and the AUROC of the stability share for
telling true flags from false alarms (> 0.5: the stabler a flag, the likelier its label is wrong; 0.5: no signal):

* ``neighbours``: :func:`ogaudit.review.calibration.flag_stability`, 30 bootstrap resamples of the gradient
  neighbours (what a run without a trajectory shows);
* ``checkpoints``: :func:`ogaudit.review.calibration.checkpoint_stability` with its defaults, and variants of the
  window (``from``: the share of training from which epochs count) and the slack;
* ``both``: stable when both are.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stability.py            # audits once (minutes), then seconds
    PYTHONPATH=. .venv/bin/python benchmarks/bench_stability.py --markdown # the table for docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.settings import NOISE_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calibration import IMAGE_SETS, RATE, SUSPECT_BELOW, TWEETS  # noqa: E402  (the same 13 audits)

OTHER_SEED = 1
"""Each run is trained again with this seed (same samples, same labels): is a stable flag flagged again?"""


def _audit(data, settings, cache: Path, truth: np.ndarray | None = None) -> dict[str, np.ndarray]:
    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.pipeline.run import audit
    from ogaudit.pipeline.stages import training_trajectory
    from ogaudit.review.evidence import RunEvidence

    result = audit(data, settings, cache_dir=cache)
    head = result.evidence
    review = RunEvidence(head.features, head.probs, head.labels, result.label_evidence, neighbours=result.neighbours)
    neighbours = review.all_neighbours()
    trajectory = training_trajectory(
        result.dataset, settings, ArtifactCache(cache), model_key=result.record["model"]["key"]
    )
    if trajectory is None:
        raise RuntimeError("the audit kept no training trajectory")
    truth = result.scores["is_noisy"].to_numpy(dtype=bool) if truth is None else truth
    return {
        "probs": np.asarray(head.probs, dtype=np.float64),
        "labels": np.asarray(head.labels),
        "neighbours": neighbours,
        "flagged": result.scores["flagged"].to_numpy(dtype=bool),
        "margins": trajectory.margins,
        "wrong": np.asarray(truth, dtype=bool),
    }


def _tweets():
    """The built-in tweets (the first :data:`TWEETS`) with a known annotator agreement, and which of them are
    "wrong" (agreement under :data:`SUSPECT_BELOW`)."""
    from ogaudit.pipeline.load import prepare_dataset
    from ogaudit.settings import AuditSettings

    loaded = prepare_dataset("tweets", AuditSettings(limit=TWEETS, map_method="none"))
    agreement = loaded.text_origin.extra["agreement"][loaded.rows]
    known = loaded.subset(np.flatnonzero(~np.isnan(agreement)))
    return known, loaded.text_origin.extra["agreement"][known.rows] < SUSPECT_BELOW


def gather(cache: Path, *, tweets: bool) -> dict[str, dict[str, np.ndarray]]:
    """Every run's evidence and margins, audited once and kept in ``cache``."""
    from ogaudit.settings import AuditSettings

    cache.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, np.ndarray]] = {}
    wanted = [(data, limit, kind) for data, limit in IMAGE_SETS for kind in NOISE_KINDS]
    if tweets:
        wanted.append(("tweets", TWEETS, "real"))
    for data, limit, kind in wanted:
        name = f"{data}-{limit or 'all'}-{kind}"
        path = cache / f"{name}.npz"
        if path.is_file():
            with np.load(path) as saved:
                runs[name] = dict(saved)
            continue
        start = time.perf_counter()
        if data == "tweets":
            known, truth = _tweets()
            runs[name] = _audit(known, AuditSettings(map_method="none"), cache / "audits", truth=truth)
        else:
            settings = AuditSettings(noise_rate=RATE, noise_kind=kind, limit=limit, epochs=10, map_method="none")
            runs[name] = _audit(data, settings, cache / "audits")
        np.savez(path, **runs[name])
        print(f"audited {name} in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    for data, limit, kind in wanted:  # the same samples and labels, trained again with another seed
        name = f"{data}-{limit or 'all'}-{kind}"
        path = cache / f"{name}-seed{OTHER_SEED}.npz"
        if path.is_file():
            with np.load(path) as saved:
                runs[name]["flagged_again"] = saved["flagged"]
            continue
        from ogaudit.pipeline.load import prepare_dataset
        from ogaudit.pipeline.run import audit

        start = time.perf_counter()
        if data == "tweets":
            noisy, settings = _tweets()[0], AuditSettings(map_method="none", seed=OTHER_SEED)
        else:
            noisy = prepare_dataset(data, AuditSettings(noise_rate=RATE, noise_kind=kind, limit=limit))
            settings = AuditSettings(epochs=10, map_method="none", seed=OTHER_SEED)
        flagged = audit(noisy, settings, cache_dir=cache / "audits").scores["flagged"].to_numpy(dtype=bool)
        if flagged.shape != runs[name]["flagged"].shape or noisy.y.tolist() != runs[name]["labels"].tolist():
            raise RuntimeError(f"{name}: the rebuilt data differ from the audited data")
        runs[name]["flagged_again"] = flagged
        np.savez(path, flagged=flagged)
        print(f"retrained {name} in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return runs


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``score`` for ``positive`` (ties count half); NaN without both classes."""
    from scipy.stats import rankdata

    p, n = int(positive.sum()), int((~positive).sum())
    if p == 0 or n == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - p * (p + 1) / 2) / (p * n))


def stabilities(run: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each stability's (N,) share for the run's flags (NaN where not flagged)."""
    from ogaudit.review.calibration import STABLE_AT, checkpoint_stability, flag_stability

    out = {"neighbours": flag_stability(run["probs"], run["labels"], run["neighbours"], run["flagged"], seed=0)}
    out["checkpoints"] = checkpoint_stability(run["margins"], run["flagged"])
    for start in (0.0, 0.5, 0.8):
        for slack in (1.0, 2.0):
            out[f"ckpt from {start:.1f} x{slack:.0f}"] = checkpoint_stability(
                run["margins"], run["flagged"], start=start, slack=slack
            )
    both = (out["neighbours"] >= STABLE_AT) & (out["checkpoints"] >= STABLE_AT)
    out["both"] = np.where(run["flagged"], both.astype(float), np.nan)
    return out


def measure(run: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per stability: flagged, stable / unstable counts and precision, AUROC of the share for wrong flags."""
    from ogaudit.review.calibration import STABLE_AT

    flagged = run["flagged"]
    wrong = run["wrong"][flagged]
    rows: dict[str, dict[str, float]] = {}
    for name, share in stabilities(run).items():
        share = share[flagged]
        stable = share >= STABLE_AT
        rows[name] = {
            "flagged": int(flagged.sum()),
            "precision": float(wrong.mean()),
            "stable": int(stable.sum()),
            "prec stable": float(wrong[stable].mean()) if stable.any() else float("nan"),
            "unstable": int((~stable).sum()),
            "prec unstable": float(wrong[~stable].mean()) if (~stable).any() else float("nan"),
            "auroc": _auroc(share, wrong),
        }
        if "flagged_again" in run:
            again = run["flagged_again"][flagged]
            rows[name].update(
                {
                    "again stable": float(again[stable].mean()) if stable.any() else float("nan"),
                    "again unstable": float(again[~stable].mean()) if (~stable).any() else float("nan"),
                    "auroc again": _auroc(share, again),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-stability")
    parser.add_argument("--tweets", action="store_true", help="also the tweets' real noise (encodes 3,000 tweets)")
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/BENCHMARKS.md")
    parser.add_argument("--all-variants", action="store_true", help="also the checkpoint windows and slacks")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # others share the machine
    runs = gather(args.cache, tweets=args.tweets)
    shown = None if args.all_variants else ("neighbours", "checkpoints", "both")
    keys = ("flagged", "precision", "stable", "prec stable", "unstable", "prec unstable", "auroc")
    keys += ("again stable", "again unstable", "auroc again")
    if args.markdown:
        print("| run | stability | " + " | ".join(keys) + " |")
        print("|---|---|" + "---:|" * len(keys))
    else:
        print(f"{'run':30s}{'stability':22s}" + "".join(f"{k:>14s}" for k in keys))
    totals: dict[str, list[dict[str, float]]] = {}
    for name, run in runs.items():
        for stability, row in measure(run).items():
            if shown is not None and stability not in shown:
                continue
            totals.setdefault(stability, []).append(row)
            cells = [_cell(row.get(k, float("nan"))) for k in keys]
            if args.markdown:
                print(f"| {name} | {stability} | " + " | ".join(cells) + " |")
            else:
                print(f"{name:30s}{stability:22s}" + "".join(f"{c:>14s}" for c in cells))
    print("\nover all runs (pooled flags; AUROC averaged over runs):")
    for stability, rows in totals.items():
        stable = sum(r["stable"] for r in rows)
        unstable = sum(r["unstable"] for r in rows)
        right_stable = sum(r["stable"] * r["prec stable"] for r in rows if r["stable"])
        right_unstable = sum(r["unstable"] * r["prec unstable"] for r in rows if r["unstable"])
        auroc = np.nanmean([r["auroc"] for r in rows])
        again = [r for r in rows if "again stable" in r]
        kept_stable = sum(r["stable"] * r["again stable"] for r in again if r["stable"])
        kept_unstable = sum(r["unstable"] * r["again unstable"] for r in again if r["unstable"])
        n_stable, n_unstable = sum(r["stable"] for r in again), sum(r["unstable"] for r in again)
        print(
            f"  {stability:22s} stable {stable:5d} (precision {right_stable / max(stable, 1):.3f})  "
            f"unstable {unstable:5d} (precision {right_unstable / max(unstable, 1):.3f})  mean AUROC {auroc:.3f}"
            f"  | flagged again by seed {OTHER_SEED}: stable {kept_stable / max(n_stable, 1):.3f}, unstable "
            f"{kept_unstable / max(n_unstable, 1):.3f}, mean AUROC {np.nanmean([r['auroc again'] for r in again]):.3f}"
        )


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


if __name__ == "__main__":
    main()
