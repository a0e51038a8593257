"""Text samples on the page: the full text as a readable card, its neighbours' texts as evidence.

Every text is user data: it is masked as the library says (:func:`ogaudit.review.texts.display_texts`, @mentions of
tweets) and shown as plain text (``st.text``: the card, exactly as written) or escaped with
:func:`ogaudit.ui.text.md` (the neighbours' one-line snippets), so no markdown, link or HTML in a text ever renders.
"""

from __future__ import annotations

import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.review.texts import display_texts, snippet
from ogaudit.ui.text import md


def is_text(dataset: Dataset | None) -> bool:
    return dataset is not None and dataset.is_text


LONG_TEXT = 600
"""Characters above which a card keeps a fixed height (:data:`LONG_CARD_PX`) and scrolls, so that one long text
does not push the rest of the queue off the screen."""
LONG_CARD_PX = 260


def text_card(dataset: Dataset, position: int, *, place: str = "card") -> None:
    """The sample's full text in a bordered box, keyed ``text-<place>-<sample id>``: one sample can be on the page
    in several places at once (the map's selection and the review queue), each with its own ``place``. A text
    longer than :data:`LONG_TEXT` characters scrolls inside a box of :data:`LONG_CARD_PX` pixels."""
    (text,) = display_texts(dataset, [position])
    height = LONG_CARD_PX if len(text) > LONG_TEXT else "content"
    with st.container(border=True, key=f"text-{place}-{dataset.sample_ids[position]}", height=height):
        if height != "content":
            st.caption(f"{len(text):,} characters: scroll for the rest")
        st.text(text)  # plain text: no markdown (which would turn -- into a dash) and no HTML


def neighbour_texts(dataset: Dataset, positions, labels: list[str], cosines, *, compact: bool) -> None:
    """The nearest gradient neighbours' texts with their given labels and cosine, one line each."""
    positions = list(positions)
    if not positions:
        return
    texts = display_texts(dataset, positions)
    limit = 90 if compact else 240
    lines = [
        f"- **{md(label)}** ({cos:.2f}): {md(snippet(text, limit))}"
        for text, label, cos in zip(texts, labels, cosines, strict=False)
    ]
    st.markdown("Nearest gradient neighbours (given label, cosine):\n" + "\n".join(lines))
