"""Do two revisions of ogaudit give the same scores on the same data? For refactors that must change nothing.

Checks out each revision into a temporary git worktree, runs ``python -m ogaudit scan`` from it (its own code, this
virtual environment's packages, a fresh cache each) on the same data and settings, and compares the score tables
sample by sample: scores, ranks, flags, predicted and suggested labels.

    .venv/bin/python benchmarks/compare_scores.py c181557 HEAD                       # digits, 10% planted noise
    .venv/bin/python benchmarks/compare_scores.py c181557 HEAD -- tweets --limit 2000  # any scan arguments

Prints one line per compared column and exits 1 when a column differs (scores beyond ``--atol``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCAN = ["digits", "--noise-rate", "0.1", "--map", "pca"]


def scan(revision: str, arguments: list[str], work: Path) -> pd.DataFrame:
    """The scores table of ``ogaudit scan`` run from ``revision``'s code."""
    tree = work / f"tree-{revision}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), revision], check=True)
    try:
        out = work / f"out-{revision}"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, "-m", "ogaudit", "scan", *arguments, "--out", str(out)]
        command += ["--cache-dir", str(work / f"cache-{revision}"), "--quiet"]
        subprocess.run(command, check=True, env=env, cwd=tree)
        scores = sorted(out.rglob("scores.csv"))
        return pd.read_csv(scores[-1], dtype={"sample_id": str}, keep_default_na=False)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def compare(before: pd.DataFrame, after: pd.DataFrame, *, atol: float) -> list[tuple[str, bool, str]]:
    """``(column, same, detail)`` for every column the two tables share."""
    rows = []
    if not before["sample_id"].equals(after["sample_id"]):
        return [("sample_id", False, "the samples differ")]
    for column in [c for c in before.columns if c in after.columns and c != "sample_id"]:
        a, b = before[column], after[column]
        if column in ("score", "confidence"):
            difference = float(np.max(np.abs(a.to_numpy(float) - b.to_numpy(float))))
            rows.append((column, difference <= atol, f"max |difference| {difference:.3g}"))
        else:
            differing = int((a.astype(str) != b.astype(str)).sum())
            rows.append((column, differing == 0, f"{differing} of {len(a)} samples differ"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="a git revision, e.g. the commit before a refactor")
    parser.add_argument("after", help="a git revision, e.g. HEAD")
    parser.add_argument("--atol", type=float, default=1e-6, help="largest score difference that counts as equal")
    parser.add_argument("scan", nargs="*", help="arguments of `ogaudit scan` (default: digits, 10%% noise, pca map)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ogaudit-compare-") as folder:
        work = Path(folder)
        tables = [scan(revision, args.scan or DEFAULT_SCAN, work) for revision in (args.before, args.after)]
    rows = compare(*tables, atol=args.atol)
    for column, same, detail in rows:
        print(f"{column:16s} {'same' if same else 'DIFFERENT'}  ({detail})")
    return 0 if all(same for _, same, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
