"""What the map's hover pictures cost: building them, their size, and what the browser receives at each rerun.

Run:
    .venv/bin/python benchmarks/bench_hover.py

Prints, in one run:
1. for the built-in digits (8×8), MNIST 5k (28×28) and 300 random 96×96 RGB "photos": the pictures made within the
   budget, their total size in characters, and the wall time of :func:`ogaudit.review.thumbnails.hover_thumbnails`
   over the rows :func:`~ogaudit.review.thumbnails.hover_rows` chooses;
2. in headless chromium against the app (a one-epoch audit of the 1,797 digits, PCA map): the websocket bytes of the
   first load and of three pairs of reruns (colour by score, back to flagged), and how many of them were in frames
   carrying the pictures' data URIs: an unchanged payload should travel once (Streamlit sends a repeated element of
   over 10 KB as a reference).

The machine is shared: the times carry its load (printed).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ogaudit.data.load import load_dataset
from ogaudit.review.thumbnails import HOVER_BYTES, HOVER_LIMIT, hover_rows, hover_thumbnails

REPO = Path(__file__).resolve().parents[1]


def build_costs() -> None:
    digits = load_dataset("digits")
    photos = replace(
        digits,
        x=np.random.default_rng(0).integers(0, 256, (300, 96, 96, 3), dtype=np.uint8),
        y=digits.y[:300],
        sample_ids=digits.sample_ids[:300],
    )
    for name, dataset in (("digits", digits), ("mnist5k", load_dataset("mnist5k")), ("photos 96 px", photos)):
        n = len(dataset)
        flagged = np.zeros(n, dtype=bool)
        flagged[: n // 20] = True
        rows = hover_rows(np.arange(n), flagged)
        start = time.perf_counter()
        thumbs = hover_thumbnails(dataset, rows)
        seconds = time.perf_counter() - start
        size = sum(map(len, thumbs.values()))
        print(
            f"{name:>13}: {len(thumbs):,} of {len(rows):,} chosen (limit {HOVER_LIMIT:,}), {size:,} characters "
            f"(budget {HOVER_BYTES:,}), {size / max(1, len(thumbs)):,.0f} each, {seconds:.2f} s",
            flush=True,
        )


def websocket_bytes() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from appserver import READY, launched_chromium, start_app, stop_app

    from ogaudit.pipeline.run import AuditSettings, audit

    tmp = Path(tempfile.mkdtemp(prefix="bench-hover-"))
    audit("digits", AuditSettings(epochs=1, map_method="pca"), out_dir=tmp / "home" / "digits", cache_dir=tmp / "c")
    env = {**os.environ, "OGAUDIT_HOME": str(tmp / "home"), "OGAUDIT_CACHE": str(tmp / "c")}
    process, url = start_app(env, tmp / "streamlit.log")
    try:
        with launched_chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(120_000)
            frames: list[bytes] = []

            def listen(socket) -> None:
                socket.on("framereceived", lambda p: frames.append(p if isinstance(p, bytes) else p.encode()))

            page.on("websocket", listen)
            page.goto(f"{url}/?annotator=bench")
            page.wait_for_selector(READY)
            page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first.wait_for()
            page.wait_for_timeout(3_000)
            page.wait_for_selector(READY)

            def tally(label: str) -> None:
                total = sum(map(len, frames))
                pictures = sum(len(f) for f in frames if b"data:image/" in f)
                print(f"{label}: {total:,} bytes received, {pictures:,} of them in frames carrying pictures")
                frames.clear()

            tally("first load")
            for i in range(3):
                for colour in ("score", "flagged"):
                    page.get_by_text(colour, exact=True).first.click()
                    page.wait_for_timeout(1_500)
                    page.wait_for_selector(READY)
                tally(f"two reruns #{i + 1}")
    finally:
        stop_app(process)


if __name__ == "__main__":
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    build_costs()
    websocket_bytes()
