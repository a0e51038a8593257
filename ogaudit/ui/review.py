"""The review queue (flagged samples, most suspicious first, paged), review progress, and undo / redo.

Every button acts through a callback that writes the ledger at once, before the page reruns; the page then
reads the ledger again, so two annotators see each other's decisions on their next rerun.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ogaudit.data import Dataset
from ogaudit.errors import OgauditError
from ogaudit.project import Run
from ogaudit.review.ledger import Ledger
from ogaudit.ui.common import flash, on_decide, sample_caption, sample_image
from ogaudit.ui.text import md

PAGE_SIZES = (6, 12, 24, 48)
CARD_COLUMNS = 3


def undo_redo(ledger: Ledger, annotator: str | None) -> None:
    """Undo / Redo buttons for the annotator's own latest batch (a bulk action is one step)."""
    can_undo, can_redo = ledger.undo_depth(annotator) if annotator else (0, 0)
    left, right = st.columns(2)
    left.button("↶ Undo", key="undo", on_click=_toggle, args=(ledger, annotator, "undo"), disabled=not can_undo)
    right.button("↷ Redo", key="redo", on_click=_toggle, args=(ledger, annotator, "redo"), disabled=not can_redo)


def _toggle(ledger: Ledger, annotator: str, kind: str) -> None:
    try:
        batch = ledger.undo(annotator) if kind == "undo" else ledger.redo(annotator)
    except OgauditError as error:
        flash("error", md(error))
        return
    if batch is not None:
        done = "Undid" if kind == "undo" else "Redid"
        flash(
            "info", f"{done} the decision on {len(batch.sample_ids)} sample(s): {md(', '.join(batch.sample_ids[:5]))}"
        )


def review_progress(ledger: Ledger, run: Run, decisions: pd.DataFrame) -> None:
    """Reviewed / flagged overall, and per annotator."""
    flagged = run.flagged_ids
    reviewed = int(decisions["sample_id"].isin(set(flagged)).sum())
    st.progress(reviewed / max(len(flagged), 1), text=f"Reviewed {reviewed:,} of {len(flagged):,} flagged samples")
    per_annotator = ledger.progress(flagged)
    if len(per_annotator):
        columns = ["annotator", "flagged_decided", "decided", "confirm", "relabel", "keep", "remove", "unsure"]
        st.dataframe(per_annotator[columns], hide_index=True, key="progress-table")


def review_queue(
    ledger: Ledger, run: Run, decisions: pd.DataFrame, annotator: str | None, dataset: Dataset | None
) -> None:
    """Flagged samples, most suspicious first, as cards with one-click actions."""
    current = dict(zip(decisions["sample_id"], decisions["action"], strict=True))
    controls = st.columns([2, 1, 1])
    hide_decided = controls[0].toggle("Hide decided samples", value=True, key="queue-hide-decided")
    page_size = controls[1].selectbox("Per page", PAGE_SIZES, index=1, key="queue-page-size")
    queue = [i for i in run.flagged_ids if not (hide_decided and i in current)]
    pages = max(1, -(-len(queue) // page_size))
    page = controls[2].number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="queue-page")
    if not queue:
        st.success("Nothing left to review in the queue.")
        return
    st.caption(f"{len(queue):,} in the queue · page {page} of {pages}")
    if not annotator:
        st.info("Enter your name in the sidebar to record decisions.")
    chunk = queue[(page - 1) * page_size : page * page_size]
    for start in range(0, len(chunk), CARD_COLUMNS):
        for column, sample_id in zip(st.columns(CARD_COLUMNS), chunk[start : start + CARD_COLUMNS], strict=False):
            with column.container(border=True, key=f"card-{sample_id}"):
                _card(ledger, run, run.by_id.loc[sample_id].to_dict(), current.get(sample_id), annotator, dataset)


def _card(ledger: Ledger, run: Run, row: dict, decision: str | None, annotator: str | None, dataset) -> None:
    sample_id, suggested = row["sample_id"], row["suggested_label"]
    sample_image(dataset, run, sample_id, 200)
    st.markdown(sample_caption(row, decision))
    locked = not annotator
    common = {"ledger": ledger, "run": run, "ids": [sample_id], "annotator": annotator}
    st.button(
        f"✓ Confirm → {md(suggested)}",
        key=f"confirm-{sample_id}",
        type="primary",
        on_click=on_decide,
        kwargs={**common, "action": "confirm", "label": suggested},
        disabled=locked or suggested == row["given_label"],
        help="The given label is wrong; the suggested one is right."
        if suggested != row["given_label"]
        else "The suggestion is the given label, so confirming would change nothing: keep it or relabel it.",
    )
    names = run.class_names
    label_key = f"relabel-label-{sample_id}"
    pick, go = st.columns([3, 2], vertical_alignment="bottom")
    pick.selectbox("Relabel to", names, index=names.index(suggested), key=label_key)
    go.button(
        "Relabel",
        key=f"relabel-{sample_id}",
        on_click=on_decide,
        kwargs={**common, "action": "relabel", "label_key": label_key},
        disabled=locked,
    )
    buttons = st.columns(3)
    for column, action, text in zip(buttons, ("keep", "remove", "unsure"), ("Keep", "Remove", "Unsure"), strict=True):
        column.button(
            text, key=f"{action}-{sample_id}", on_click=on_decide, kwargs={**common, "action": action}, disabled=locked
        )
