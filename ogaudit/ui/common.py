"""Pieces every panel uses: messages that survive the rerun a click causes, the decision callback, sample tiles."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from ogaudit.data import Dataset
from ogaudit.errors import OgauditError
from ogaudit.project import Run
from ogaudit.review.actions import decide
from ogaudit.review.ledger import Ledger
from ogaudit.review.thumbnails import thumbnail
from ogaudit.ui.text import code, md

_FLASH = "ogaudit-flash"


def flash(kind: str, text: str) -> None:
    """Show ``text`` (``kind`` = "success", "error", "info") at the top of the next run of the page."""
    st.session_state.setdefault(_FLASH, []).append((kind, text))


def show_flash() -> None:
    """Show and forget the messages left by callbacks.

    They go into a container that is there on every run, message or not: an element appearing above the tabs
    would change the tabs' identity, and Streamlit would switch the reviewer back to the first tab.
    """
    slot = st.container()
    for kind, text in st.session_state.pop(_FLASH, []):
        getattr(slot, kind)(text)


def on_decide(
    ledger: Ledger,
    run: Run,
    ids: list[str],
    action: str,
    annotator: str,
    label: str | None = None,
    label_key: str | None = None,
) -> None:
    """Button callback: record ``action`` on ``ids`` now (the label from widget ``label_key`` if given).

    Runs before the page reruns, so the rerun already shows the decision; a refused decision becomes a message.
    """
    if label_key is not None:
        label = st.session_state.get(label_key)
    try:
        decide(ledger, run, ids, action, annotator=annotator, label=label)
    except OgauditError as error:
        flash("error", md(error))
    else:
        what = f"{action} → {label}" if label else action
        shown = md(", ".join(ids[:3])) + (" …" if len(ids) > 3 else "")
        flash("success", f"{md(what)}: {len(ids)} sample(s) ({shown})")


def sample_caption(row: Mapping, decision: str | None) -> str:
    """Markdown lines under a thumbnail: id, labels, score, current decision (``row``: a run table row)."""
    labels = (
        f"given **{md(row['given_label'])}** · suggested **{md(row['suggested_label'])}** · predicted "
        f"{md(row['predicted_label'])}"
    )
    state = f"decision: **{decision}**" if decision else "undecided"
    if row.get("rare_class") is True:
        state += " · rare class: flagged perhaps for being rare, not wrong"
    return f"{code(row['sample_id'])} (rank {row['rank']})  \n{labels}  \nscore {row['score']:.3g} · {state}"


def sample_image(dataset: Dataset | None, run: Run, sample_id: str, size: int) -> None:
    """The sample's picture, or a note when the data are vectors or could not be loaded."""
    image = None if dataset is None else thumbnail(dataset, run.position[sample_id], size)
    if image is None:
        st.caption("(no image)")
    else:
        st.image(image, width=size)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
