"""``posterior-auto``'s ramp and concentration checked on audits they were not chosen on (issue 24).

The ramp (:data:`ogaudit.detectors.outliers.RATIO_RAMP`: the confusion concentration ``κ`` at which the weight ``w``
on ``posterior-ratio`` starts to rise from 0, and where it reaches 1) was set on Fashion-MNIST 20k (three seeds of
``bench_noise.py``). This script scores, with no training, the 13 audits ``bench_calibration.py`` keeps in
``$OGAUDIT_CACHE/bench-calibration/`` (digits, MNIST 3k, Fashion-MNIST 3k × symmetric, class-pair,
instance-dependent and annotator-like 20% noise, and the tweets' real noise; their ``π``, given labels and truth):
``κ`` (:func:`ogaudit.detectors.joint.confusion_concentration` of the confident joint of ``π``, chance-corrected
and not), and the AP, AUROC and flagged precision at the default budget of ``posterior`` (``−log π(y)``),
``posterior-ratio`` and the blend ``(1 − w) · posterior + w · ratio`` under each scheme of :data:`SCHEMES`.
With ``--small`` it also audits small digits sets (300 and 1,000 images, 10% symmetric or class-pair noise, seeds
0-2, one minute or two; cached), where a concentration measured without the chance correction reads symmetric
noise as concentrated. ``--small-more`` adds 24 more (:data:`SMALL_MORE`: digits with instance-dependent noise,
MNIST 5k with each kind; about 20 minutes the first time on 2 loaded cores, cached), on which reading ``w`` at
``κ``'s lower confidence bound (:data:`BOUND`) was checked and not adopted.

Then it reads ``docs/bench_noise.json`` (the 20k runs; the trainings are not cached) and says what the current ramp
gives there: where ``w`` is 0 or 1 the blend *is* ``posterior`` or ``posterior-ratio``, whose figures the file
holds per seed; a ``w`` strictly between is reported as not recomputable.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_auto_ramp.py             # seconds; needs bench_calibration's cache
    PYTHONPATH=. .venv/bin/python benchmarks/bench_auto_ramp.py --markdown  # the tables for docs/BENCHMARKS.md
    PYTHONPATH=. .venv/bin/python benchmarks/bench_auto_ramp.py --small --small-more --markdown  # + 36 small sets
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.detectors.joint import concentration_bound, confident_joint, confusion_concentration
from ogaudit.detectors.metrics import detection_metrics
from ogaudit.detectors.outliers import RATIO_RAMP, counterfactual_log_ratio, ratio_weight
from ogaudit.settings import DEFAULT_BUDGET

PREVIOUS = "0.25→0.75 raw"
POINT = CURRENT = "0.2→0.45"
BOUND = "κ_low 0.2→0.45"
SCHEMES = {
    PREVIOUS: ("raw", (0.25, 0.75)),
    "0.2→0.45 raw": ("raw", (0.2, 0.45)),
    POINT: ("point", RATIO_RAMP),
    "0.25→0.5": ("point", (0.25, 0.5)),
    "0.3→0.5": ("point", (0.3, 0.5)),
    "0.2→0.6": ("point", (0.2, 0.6)),
    BOUND: ("low", RATIO_RAMP),
    "κ_low95 0.2→0.45": ("low95", RATIO_RAMP),
}
"""``name: (which κ, ramp)``: the first ``posterior-auto`` (``raw``: uncorrected ``κ``, 0.25→0.75), the ramp on the
uncorrected ``κ``, the current default: the chance-corrected point ``κ`` (``point``, :data:`POINT`) with
:data:`RATIO_RAMP`, and other ramps (not chosen: see docs/BENCHMARKS.md), and ``w`` read at the 90% lower bound of
``κ`` (``low``, :func:`ogaudit.detectors.joint.concentration_bound`, ``AutoPosteriorDetector(bounded=True)``:
:data:`BOUND`) and at the 95% bound (``low95``): measured, not adopted (docs/BENCHMARKS.md, *Small data*)."""
SMALL = [
    ("digits", limit, kind, seed) for limit in (300, 1000) for kind in ("symmetric", "pairs") for seed in (0, 1, 2)
]
"""The small digits sets ``--small`` audits: ``(data, samples, noise kind, seed)``, 10% noise."""
SMALL_MORE = [
    (data, limit, kind, seed)
    for data, kinds in (("digits", ("instance",)), ("mnist5k", ("symmetric", "pairs", "instance")))
    for limit in (300, 1000)
    for kind in kinds
    for seed in (0, 1, 2)
]
"""What ``--small-more`` adds: digits with instance-dependent noise and MNIST (``mnist5k``) with each kind, 300 and
1,000 samples, 10% noise, seeds 0-2 (where ``posterior-ratio``'s advantage on class pairs was measured to need more
data than 300 samples give)."""
NOISE_JSON = Path(__file__).resolve().parent.parent / "docs" / "bench_noise.json"


def held_out(run: dict[str, np.ndarray]) -> dict:
    """``κ`` (raw and chance-corrected), and each score's metrics (``w`` beside the blends') on one audit."""
    posterior, labels, wrong = run["posterior"], run["labels"], run["wrong"].astype(bool)
    joint = confident_joint(posterior, labels)
    kappa = {
        "raw": confusion_concentration(joint, chance_corrected=False),
        "point": confusion_concentration(joint),
        "low": concentration_bound(joint)[1],
        "low95": concentration_bound(joint, level=0.95)[1],
    }
    plain = -np.log(np.clip(posterior[np.arange(len(labels)), labels], 1e-12, None))
    ratio = counterfactual_log_ratio(posterior, labels)
    out = {"κ raw": kappa["raw"], "κ": kappa["point"], "κ_low": kappa["low"], "samples": len(labels)}
    out["wrong"] = float(wrong.mean())
    out["posterior"] = detection_metrics(wrong, plain, budget=DEFAULT_BUDGET)
    out["posterior-ratio"] = detection_metrics(wrong, ratio, budget=DEFAULT_BUDGET)
    for name, (which, ramp) in SCHEMES.items():
        w = ratio_weight(kappa[which], ramp)
        out[name] = {**detection_metrics(wrong, (1 - w) * plain + w * ratio, budget=DEFAULT_BUDGET), "w": w}
    return out


def small_sets(cache_dir: Path, sets: list[tuple[str, int, str, int]]) -> dict[str, dict[str, np.ndarray]]:
    """The ``π``, labels and truth of the audits ``sets`` (:data:`SMALL`, :data:`SMALL_MORE`; 10 epochs, 10%
    planted noise; the audit's cache keeps their trainings)."""
    from ogaudit.detectors.outliers import NeighbourPosteriorDetector
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import AuditSettings

    runs = {}
    for data, limit, kind, seed in sets:
        settings = AuditSettings(
            noise_rate=0.1, noise_kind=kind, limit=limit, epochs=10, map_method="none", seed=seed, detector="posterior"
        )
        result = audit(data, settings, cache_dir=cache_dir)
        head = result.evidence
        runs[f"{data}-{limit}-{kind}-seed{seed}"] = {
            "posterior": NeighbourPosteriorDetector().fit(head).posterior(head),
            "labels": np.asarray(head.labels),
            "wrong": result.scores["is_noisy"].to_numpy(dtype=bool),
        }
    return runs


def fashion_20k(path: Path, ramp: tuple[float, float]) -> dict[str, dict]:
    """Per 20k run: the recorded ``κ``, ``w`` under ``ramp``, and the blend's AP / flagged precision where ``w`` is
    0 or 1 (then it is ``posterior`` / ``posterior-ratio``, recorded per seed), else None; the previous
    ``posterior-auto``'s beside it."""
    runs = json.loads(path.read_text())["runs"]
    out = {}
    for name, run in runs.items():
        methods = run["methods"]
        kappa = methods["posterior-auto"]["concentration"]
        w = ratio_weight(kappa, ramp)
        same = {0.0: "posterior", 1.0: "posterior-ratio"}.get(w)
        new = methods[same] if same else None
        best = max(
            (m for m in methods if m != "posterior-auto" and not m.startswith("reference")),
            key=lambda m: methods[m]["average_precision"],
        )
        out[name] = {
            "κ": kappa,
            "w": w,
            "ap": new["average_precision"] if new else None,
            "precision": new["precision_at_budget"] if new else None,
            "previous w": methods["posterior-auto"]["ratio_weight"],
            "previous ap": methods["posterior-auto"]["average_precision"],
            "previous precision": methods["posterior-auto"]["precision_at_budget"],
            "best other": best,
            "best other ap": methods[best]["average_precision"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-calibration")
    parser.add_argument("--noise-json", type=Path, default=NOISE_JSON)
    parser.add_argument("--markdown", action="store_true", help="print the tables for docs/BENCHMARKS.md")
    parser.add_argument("--small", action="store_true", help="also audit small digits sets (SMALL; cached)")
    parser.add_argument("--small-more", action="store_true", help="also audit SMALL_MORE (cached; ~10 min first)")
    args = parser.parse_args()
    paths = sorted(args.cache.glob("*.npz"))
    if not paths:
        raise SystemExit(f"No cached audits in {args.cache}: run benchmarks/bench_calibration.py --gather-only first.")
    groups = {"the 13 held-out audits": {}}
    for path in paths:
        with np.load(path, allow_pickle=False) as saved:
            groups["the 13 held-out audits"][path.stem] = held_out(dict(saved))
    if args.small:
        runs = small_sets(default_cache_dir(), SMALL)
        groups["small digits sets"] = {name: held_out(run) for name, run in runs.items()}
    if args.small_more:
        runs = small_sets(default_cache_dir(), SMALL_MORE)
        groups["more small sets"] = {name: held_out(run) for name, run in runs.items()}
    for title, rows in groups.items():
        _report(title, rows, args.markdown)

    if not args.noise_json.is_file():
        return
    current = CURRENT
    sep = " | " if args.markdown else "  "
    print(f"\nFashion-MNIST 20k ({args.noise_json.name}), the current ramp {current} (on the raw κ recorded there):")
    found = fashion_20k(args.noise_json, RATIO_RAMP)
    head = ["run", "κ", "w (prev)", "AP (prev)", "flagged prec. (prev)", "best other AP"]
    if args.markdown:
        print("\n| " + " | ".join(head) + " |\n|---|" + "---:|" * (len(head) - 1))
    for run, row in found.items():
        ap = "n/a" if row["ap"] is None else f"{row['ap']:.4f}"
        precision = "n/a" if row["precision"] is None else f"{row['precision']:.3f}"
        cells = [
            run,
            f"{row['κ']:.3f}",
            f"{row['w']:.2f} ({row['previous w']:.2f})",
            f"{ap} ({row['previous ap']:.4f})",
            f"{precision} ({row['previous precision']:.3f})",
            f"{row['best other']} {row['best other ap']:.4f}",
        ]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  " + sep.join(f"{c:>22s}" for c in cells))
    runs = json.loads(args.noise_json.read_text())["runs"]
    for kind in dict.fromkeys(run.split("/")[0] for run in found):
        seeds = [run for run in found if run.split("/")[0] == kind]
        aps = [found[run]["ap"] for run in seeds]
        precisions = [found[run]["precision"] for run in seeds]
        if None in aps:
            print(f"  {kind}: w strictly between 0 and 1 on some seed, not recomputable without the trainings")
            continue
        means = {
            method: np.mean([runs[run]["methods"][method]["average_precision"] for run in seeds])
            for method in runs[seeds[0]]["methods"]
            if method != "posterior-auto" and all(method in runs[run]["methods"] for run in seeds)
        }
        means.pop("posterior-ratio" if found[seeds[0]]["w"] == 1.0 else "posterior")  # what the default now is
        best = max((m for m in means if not m.startswith("reference")), key=means.get)
        print(
            f"  {kind}: AP {np.mean(aps):.3f} ± {np.std(aps, ddof=1):.3f}, flagged precision"
            f" {np.mean(precisions):.3f} ± {np.std(precisions, ddof=1):.3f}; best other by mean AP: {best}"
            f" {means[best]:.3f}"
        )


def _report(title: str, rows: dict[str, dict], markdown: bool) -> None:
    """AP per run and scheme, then each scheme against the previous default, run by run."""
    names = list(SCHEMES)
    sep = " | " if markdown else "  "
    head = ["run", "κ raw", "κ", "κ_low", "posterior", "posterior-ratio"] + [f"{n} (w)" for n in names]
    print(f"\nAP on {title} (the blend's w in brackets; 'raw': κ without the chance correction)")
    if markdown:
        print("\n| " + " | ".join(head) + " |\n|---|" + "---:|" * (len(head) - 1))
    else:
        print(sep.join(f"{h:>16s}" for h in head))
    for run, row in rows.items():
        cells = [run, f"{row['κ raw']:.3f}", f"{row['κ']:.3f}", f"{row['κ_low']:.3f}"]
        cells.append(f"{row['posterior']['average_precision']:.4f}")
        cells.append(f"{row['posterior-ratio']['average_precision']:.4f}")
        cells += [f"{row[n]['average_precision']:.4f} ({row[n]['w']:.2f})" for n in names]
        print(("| " + " | ".join(cells) + " |") if markdown else sep.join(f"{c:>16s}" for c in cells))
    compact = [POINT, BOUND, "κ_low95 0.2→0.45"]
    print(f"\nThe bound against the point κ on {title}: AP (w), and flagged precision {POINT} / {BOUND}")
    head = ["run", "κ", "κ_low", "posterior", "posterior-ratio", *compact, "flagged precision"]
    print(("| " + " | ".join(head) + " |\n|---|" + "---:|" * (len(head) - 1)) if markdown else sep.join(head))
    for run, row in rows.items():
        cells = [run, f"{row['κ']:.3f}", f"{row['κ_low']:.3f}", f"{row['posterior']['average_precision']:.4f}"]
        cells.append(f"{row['posterior-ratio']['average_precision']:.4f}")
        cells += [f"{row[n]['average_precision']:.4f} ({row[n]['w']:.2f})" for n in compact]
        cells.append(f"{row[POINT]['precision_at_budget']:.3f} / {row[BOUND]['precision_at_budget']:.3f}")
        print(("| " + " | ".join(cells) + " |") if markdown else sep.join(cells))
    for base in (PREVIOUS, POINT):
        print(f"\nagainst {base}, per run (≥ 0 on all = at least as good):")
        for n in names:
            if n == base:
                continue
            diff = np.array([row[n]["average_precision"] - row[base]["average_precision"] for row in rows.values()])
            prec = np.array([row[n]["precision_at_budget"] - row[base]["precision_at_budget"] for row in rows.values()])
            auroc = np.array([row[n]["auroc"] - row[base]["auroc"] for row in rows.values()])
            print(
                f"  {n:>17s}: AP worst {diff.min():+.4f}, best {diff.max():+.4f}, mean {diff.mean():+.4f},"
                f" {int((diff >= -1e-12).sum())}/{len(diff)} runs ≥; AUROC worst {auroc.min():+.4f}, mean"
                f" {auroc.mean():+.4f}; flagged precision worst {prec.min():+.3f}, mean {prec.mean():+.3f}"
            )
    for scheme in (CURRENT, BOUND):
        for key in ("posterior", "posterior-ratio"):
            diff = np.array([row[scheme]["average_precision"] - row[key]["average_precision"] for row in rows.values()])
            print(f"  {scheme} − {key}: AP worst {diff.min():+.4f}, mean {diff.mean():+.4f}")
    print(f"\nflagged precision at the default budget ({DEFAULT_BUDGET:.0%}) and AUROC: {PREVIOUS} / {POINT} / {BOUND}")
    for run, row in rows.items():
        print(
            f"  {run:30s} "
            + " / ".join(f"{row[n]['precision_at_budget']:.3f}" for n in (PREVIOUS, POINT, BOUND))
            + "   "
            + " / ".join(f"{row[n]['auroc']:.4f}" for n in (PREVIOUS, POINT, BOUND))
        )


if __name__ == "__main__":
    main()
