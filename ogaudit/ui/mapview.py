"""The gradient map, the thumbnails of the samples selected on it, and bulk actions on that selection."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ogaudit.data import Dataset
from ogaudit.project import Run
from ogaudit.review.actions import ACTION_LABELS
from ogaudit.review.ledger import ACTIONS, Ledger
from ogaudit.ui import state
from ogaudit.ui.common import on_decide, sample_caption, sample_image
from ogaudit.ui.figure import COLOUR_MODES
from ogaudit.ui.selection import selected_ids

GRID_COLUMNS = 6
GRID_PAGE = 36
SELECTION = "ogaudit-selection"


def chart_key(run: Run, colour: str) -> str:
    """The plotly chart's widget key; its session-state value is the selection event."""
    return f"map-{run.name}-{colour}"


def gradient_map(run: Run, decisions: pd.DataFrame) -> list[str]:
    """Draw the map; return the ids selected on it (box, lasso or click), also kept for the export panel."""
    colour = st.radio(
        "Colour by", COLOUR_MODES, horizontal=True, key=f"colour-{run.name}", help="Flagged samples are ringed."
    )
    key = chart_key(run, colour)
    st.plotly_chart(
        state.figure(run, colour, decisions),
        key=key,
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False, "scrollZoom": True},
    )
    ids = selected_ids(st.session_state.get(key), run.position)
    st.session_state[SELECTION] = ids
    return ids


def selection_grid(
    ledger: Ledger,
    run: Run,
    ids: list[str],
    decisions: pd.DataFrame,
    annotator: str | None,
    dataset: Dataset | None,
) -> None:
    """Thumbnails of the selected samples (most suspicious first) and one form to act on all of them."""
    if not ids:
        st.caption("Drag a box (or use the lasso) on the map to see those samples here and act on them together.")
        return
    st.subheader(f"{len(ids):,} selected")
    _bulk_form(ledger, run, ids, annotator)
    current = dict(zip(decisions["sample_id"], decisions["action"], strict=True))
    ranked = run.by_id.loc[ids].sort_values("rank")
    pages = max(1, -(-len(ranked) // GRID_PAGE))
    page = 1
    if pages > 1:
        page = st.columns(4)[0].number_input(f"Page (of {pages})", 1, pages, 1, key=f"grid-page-{run.name}")
    rows = ranked.iloc[(page - 1) * GRID_PAGE : page * GRID_PAGE].to_dict("records")
    for start in range(0, len(rows), GRID_COLUMNS):
        for column, row in zip(st.columns(GRID_COLUMNS), rows[start : start + GRID_COLUMNS], strict=False):
            with column:
                sample_image(dataset, run, row["sample_id"], 96)
                st.markdown(sample_caption(row, current.get(row["sample_id"])))


def _bulk_form(ledger: Ledger, run: Run, ids: list[str], annotator: str | None) -> None:
    with st.form(f"bulk-{run.name}", border=True):
        left, right, go = st.columns([2, 2, 1], vertical_alignment="bottom")
        left.selectbox("Action on the selection", ACTIONS, format_func=ACTION_LABELS.get, key="bulk-action")
        right.selectbox("Label (relabel only)", run.class_names, key="bulk-label")
        go.form_submit_button(
            f"Apply to {len(ids):,}",
            on_click=_apply_bulk,
            args=(ledger, run, ids, annotator),
            disabled=not annotator,
            help="Confirm uses each sample's own suggested label; the label box is for relabel.",
        )


def _apply_bulk(ledger: Ledger, run: Run, ids: list[str], annotator: str) -> None:
    action = st.session_state["bulk-action"]
    label = st.session_state["bulk-label"] if action == "relabel" else None
    on_decide(ledger, run, ids, action, annotator, label=label)
