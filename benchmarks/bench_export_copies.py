"""What copying the user's image files into a cleaned split or an export costs against the hard links it used
before (a hard link let an edit of the export change the user's file), measured in one run.

    .venv/bin/python benchmarks/bench_export_copies.py [--files 5000] [--kb 1] [--repeat 3] [--dir /tmp]

Times ``os.link`` and :func:`ogaudit.review.split.copy_file` (a copy-on-write clone where the file system makes
one, else a copy) over the same files, alternating, median of ``--repeat``; prints both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ogaudit.review.split import copy_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--kb", type=float, default=1.0, help="size of each file in kB (MNIST PNGs: ~0.3-1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (its file system decides clones)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        sources = []
        for i in range(args.files):
            path = root / "data" / f"{i % 10}" / f"{i:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(int(args.kb * 1024)))
            sources.append(path)
        times: dict[str, list[float]] = {"hard link": [], "copy_file": []}
        for _ in range(args.repeat):
            for name, make in (("hard link", os.link), ("copy_file", copy_file)):
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                for digit in range(10):
                    (out / str(digit)).mkdir(parents=True)
                start = time.perf_counter()
                for source in sources:
                    make(source, out / source.parent.name / source.name)
                times[name].append(time.perf_counter() - start)
        link, copy = (statistics.median(times[k]) for k in ("hard link", "copy_file"))
        print(f"{args.files} files of {args.kb:g} kB under {root} (median of {args.repeat}):")
        print(f"  hard link {link:.2f} s   copy_file {copy:.2f} s   ratio {copy / link:.1f}x")


if __name__ == "__main__":
    main()
