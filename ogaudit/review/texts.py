"""How texts are shown to reviewers: escaped for display, @mentions masked for tweets, searched as shown, cut
to snippets for the map's hover. Pure functions on a text :class:`~ogaudit.data.dataset.Dataset`; the app calls
them."""

from __future__ import annotations

import numpy as np

from ogaudit.data.text import MENTION


def mask_mentions(text: str) -> str:
    """``@name`` → ``@user``, as tweets are shown (the people mentioned are not part of the label question)."""
    return MENTION.sub("@user", text)


def display_texts(dataset, positions) -> list[str]:
    """The texts at ``positions`` as the app shows them: @mentions masked for tweets (:func:`mask_mentions`).

    Still user text: the UI escapes it (:func:`ogaudit.ui.text.md`) before it reaches the page.
    """
    texts = [str(t) for t in dataset.texts[np.asarray(positions, dtype=np.int64)]]
    origin = dataset.text_origin
    if origin is not None and origin.mask_mentions:
        texts = [mask_mentions(t) for t in texts]
    return texts


def search_texts(dataset, query: str) -> np.ndarray:
    """Ids (str) of the samples whose shown text contains ``query`` (case-insensitive, as typed, not a pattern)."""
    import pandas as pd

    query = query.strip()
    if not query:
        return dataset.sample_ids.copy()
    shown = pd.Series(display_texts(dataset, np.arange(len(dataset))), dtype=object)
    hits = shown.str.contains(query, case=False, regex=False).to_numpy(dtype=bool)
    return dataset.sample_ids[hits]


def snippet(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters (for map hovers and lists)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def hover_snippets(dataset, limit: int = 100) -> np.ndarray:
    """(N,) str: each sample's shown text (:func:`display_texts`) as one line of at most ``limit`` characters."""
    import pandas as pd

    shown = pd.Series(display_texts(dataset, np.arange(len(dataset))), dtype=object)
    line = shown.str.split().str.join(" ")
    long = line.str.len() > limit
    line[long] = line[long].str.slice(0, limit - 1) + "…"
    return line.to_numpy(dtype=str)
