"""Wrong vs ambiguous on the 13 cached calibration audits: how many flagged samples read "ambiguous", and how many
of those are truly wrong, for the rule with the other view's veto (``ogaudit.review.calibration.ambiguous``) and
the rule without it (either view's split alone).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ambiguous.py   # seconds; reads benchmarks/bench_calibration.py's cache

The cache (``$OGAUDIT_CACHE/bench-calibration/*.npz``) is made by ``benchmarks/bench_calibration.py``. The flagged
are the top 5% by the cached score. For the tweets "wrong" is "annotators agreed < 0.6".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.review.calibration import AMBIGUOUS_SHARE, ambiguous


def either_view(probs, labels, votes, other) -> np.ndarray:
    """The rule without the veto: the model's split or the neighbours' split alone."""
    rows = np.arange(len(labels))
    k = votes.shape[1]
    share_given = (votes == labels[:, None]).sum(axis=1) / k
    share_other = (votes == other[:, None]).sum(axis=1) / k
    model = (probs[rows, labels] >= AMBIGUOUS_SHARE) & (probs[rows, other] >= AMBIGUOUS_SHARE)
    return model | ((share_given >= AMBIGUOUS_SHARE) & (share_other >= AMBIGUOUS_SHARE))


def share(wrong: np.ndarray, mask: np.ndarray) -> str:
    return f"{wrong[mask].mean():.2f}" if mask.any() else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache_dir() / "bench-calibration")
    args = parser.parse_args()
    paths = sorted(args.cache.glob("*.npz"))
    if not paths:
        raise SystemExit(f"No cached audits in {args.cache}: run benchmarks/bench_calibration.py first.")
    print("| run | rule | flagged | flagged ambiguous | of them wrong | others wrong | all ambiguous | of them wrong |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        d = np.load(path)
        probs, posterior, labels, wrong = d["probs"], d["posterior"], d["labels"], d["wrong"]
        votes = labels[d["neighbours"]]
        flagged = np.zeros(len(labels), bool)
        flagged[np.argsort(-d["score"], kind="stable")[: int(0.05 * len(labels))]] = True
        vetoed, other = ambiguous(posterior, probs, labels, votes)
        for rule, split in (("either view", either_view(probs, labels, votes, other)), ("with veto", vetoed)):
            amb, rest = flagged & split, flagged & ~split

            print(f"| {path.stem} | {rule} | {flagged.sum()} | {amb.sum()} | {share(wrong, amb)} | {share(wrong, rest)} | "
                  f"{split.sum()} | {share(wrong, split)} |")  # fmt: skip


if __name__ == "__main__":
    main()
