"""The gradient map, the thumbnails of the samples selected on it, and bulk actions on that selection.

The selection belongs to the page, not to one chart: changing "Colour by" draws another chart (another widget),
whose empty selection would otherwise drop the samples the reviewer had boxed. An empty box or lasso (nothing
inside) would leave every point greyed out, so the chart is redrawn fresh instead.

A big run's map is a density image with only the most suspicious samples as markers (:mod:`ogaudit.map.density`): its
box or lasso is read by outline, every sample inside it selected on the server, whether drawn as a marker or not.

Resting the pointer on a point shows its picture beside plotly's label (:mod:`ogaudit.ui.hover`), inside a selection
too (:data:`HOVER_INSIDE_SELECTION`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.map.density import MARKER_LIMIT, points_in_selection
from ogaudit.results import Run
from ogaudit.review.actions import ACTION_LABELS, BULK_SCOPES, plan_bulk
from ogaudit.review.ledger import ACTIONS, Ledger
from ogaudit.ui import state
from ogaudit.ui.common import flash, on_decide, pending_override, sample_caption, sample_image, show_flash
from ogaudit.ui.config import map_points_limit
from ogaudit.ui.figure import COLOUR_MODES, is_density_map
from ogaudit.ui.hover import MAP_CONTAINER
from ogaudit.ui.selection import selected_ids
from ogaudit.ui.text import md, shown

GRID_COLUMNS = 6
GRID_PAGE = 36
SELECTION = "ogaudit-selection"
_SELECTION_FROM = "ogaudit-selection-from"
_REVISION = "ogaudit-map-revision"
BULK_PENDING = "ogaudit-bulk-pending"
_MEMO = "ogaudit-map-memo"


HOVER_INSIDE_SELECTION = (
    f"<style>.st-key-{MAP_CONTAINER} .selectionlayer path {{pointer-events: none !important}}</style>"
)
"""Plotly draws a box or lasso's outline as a shape that takes the pointer (an inline style): inside a selection no
point showed its label or picture, and a drag moved the outline. Without it, hovering inside a selection shows each
point, and a new drag draws a new selection."""


def _memo(name: str, token: tuple, compute):
    """``compute()``, kept in this session while ``token`` is unchanged: at 10⁶ samples finding a big selection's
    samples and ranking them takes about a second, and every rerun (each decision) would pay it again."""
    memo = st.session_state.setdefault(_MEMO, {})
    hit = memo.get(name)
    if hit is not None and hit[0] == token:
        return hit[1]
    value = compute()
    memo[name] = (token, value)
    return value


def chart_key(run: Run, colour: str, revision: int = 0) -> str:
    """The plotly chart's widget key; its session-state value is the selection event."""
    return f"map-{run.name}-{colour}" + (f"-{revision}" if revision else "")


def gradient_map(run: Run, decisions: pd.DataFrame) -> list[str]:
    """Draw the map; return the ids selected on it (box, lasso or click), also kept for the export panel."""
    colour = st.radio(
        "Colour by", COLOUR_MODES, horizontal=True, key=f"colour-{run.name}", help="Flagged samples are ringed."
    )
    revision = st.session_state.get(_REVISION, 0)
    key = chart_key(run, colour, revision)
    event = st.session_state.get(key)
    token = (str(run.path), run.fingerprint, repr((event or {}).get("selection")))
    ids = _memo("event", token, lambda: event_ids(run, event))
    if _empty_area(event, ids):
        st.session_state[_REVISION] = revision = revision + 1
        key = chart_key(run, colour, revision)
        event, ids = None, []
        st.session_state[_SELECTION_FROM] = key
    if is_density_map(len(run.table), map_points_limit()):
        shown = min(MARKER_LIMIT, len(run.flagged_ids))
        st.caption(
            f"{len(run.table):,} samples drawn as a density image (colour: the mean of each pixel's samples); the "
            f"{shown:,} most suspicious flagged ones also as points. A box or lasso selects every sample inside it."
        )
    st.html(HOVER_INSIDE_SELECTION)
    with st.container(key=MAP_CONTAINER):  # where the hover pictures (ogaudit.ui.hover) look for the chart
        st.plotly_chart(
            state.figure(run, colour, decisions),
            key=key,
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
            config={"displaylogo": False, "scrollZoom": True},
        )
    if ids or st.session_state.get(_SELECTION_FROM) in (None, key) or event:
        st.session_state[SELECTION] = ids
        st.session_state[_SELECTION_FROM] = key
    else:  # a chart just drawn for another colouring: keep what was selected on the previous one
        ids = [i for i in st.session_state.get(SELECTION, []) if i in run.position]
        if ids:
            st.caption(f"{len(ids):,} samples still selected from the previous colouring; drag a new box to change.")
    return ids


def event_ids(run: Run, event) -> list[str]:
    """The sample ids a selection event selects: the points plotly reports (clicked, or inside a box or lasso);
    on a density map also every sample inside the box or lasso outline, drawn as a marker or not."""
    ids = selected_ids(event, run.position)
    selection = (event or {}).get("selection") or {}
    if not is_density_map(len(run.table), map_points_limit()) or not (selection.get("box") or selection.get("lasso")):
        return ids
    try:
        inside = points_in_selection(run.table["x"].to_numpy(), run.table["y"].to_numpy(), selection)
    except ValueError:
        return ids
    rows = np.flatnonzero(inside)
    return list(dict.fromkeys([*ids, *run.table["sample_id"].iloc[rows].astype(str).tolist()]))


def _empty_area(event, ids: list[str]) -> bool:
    """A box or lasso drawn around nothing."""
    selection = (event or {}).get("selection") or {}
    return not ids and bool(selection.get("box") or selection.get("lasso"))


def selection_grid(
    ledger: Ledger,
    run: Run,
    ids: list[str],
    decisions: pd.DataFrame,
    annotator: str | None,
    dataset: Dataset | None,
) -> None:
    """Thumbnails of the selected samples (most suspicious first) and one bulk action on them."""
    show_flash("map")
    if not ids:
        st.caption("Drag a box (or use the lasso) on the map to see those samples here and act on them together.")
        return
    st.subheader(f"{len(ids):,} selected")
    _bulk(ledger, run, ids, annotator)
    current = decisions.set_index("sample_id").to_dict("index") if len(decisions) else {}
    token = (str(run.path), run.fingerprint, len(ids), hash(tuple(ids)))
    order = _memo("grid", token, lambda: ranked_rows(run, ids))
    pages = max(1, -(-len(order) // GRID_PAGE))
    page = 1
    if pages > 1:
        page = st.columns(4)[0].number_input(f"Page (of {pages})", 1, pages, 1, key=f"grid-page-{run.name}")
    rows = run.table.iloc[order[(page - 1) * GRID_PAGE : page * GRID_PAGE]].to_dict("records")
    for start in range(0, len(rows), GRID_COLUMNS):
        for column, row in zip(st.columns(GRID_COLUMNS), rows[start : start + GRID_COLUMNS], strict=False):
            with column:
                sample_image(dataset, run, row["sample_id"], 96, place="selection")
                decision = current.get(row["sample_id"])
                st.markdown(sample_caption(row, {**decision, "sample_id": row["sample_id"]} if decision else None))


def ranked_rows(run: Run, ids: list[str]) -> np.ndarray:
    """(len(ids),) int64 rows of ``run.table`` holding ``ids``, most suspicious first (ids not in the run: left
    out)."""
    rows = run.by_id.index.get_indexer(ids)
    rows = rows[rows >= 0]
    return rows[np.argsort(run.table["rank"].to_numpy()[rows], kind="stable")]


BULK_REVISION = "ogaudit-bulk-revision"
BULK_APPLIED = "ogaudit-bulk-applied"


@st.fragment
def _bulk(ledger: Ledger, run: Run, ids: list[str], annotator: str | None) -> None:
    """Action, scope and label; a live preview of how many samples it touches; Apply asks once more.

    A fragment: a pick reruns only this panel, not the map and the page, so under load it registers at once (a full
    rerun took seconds, and an Escape pressed meanwhile lost the pick). Once the ledger changed (applied, or
    overridden), the whole page is redrawn."""
    revision = ledger.revision()
    seen = st.session_state.get(BULK_REVISION)
    st.session_state[BULK_REVISION] = revision
    if seen is not None and seen != revision and st.session_state.pop(BULK_APPLIED, False):
        st.rerun()  # the map's colours, the grid and the queue show the decisions
    with st.container(border=True, key="bulk"):
        left, middle, right = st.columns([2, 2, 2])
        # pills, not a selectbox: a selectbox with no default can be cleared, and an Escape pressed after the pick
        # (as a reviewer closing the list does) cleared it; a pill stays picked until another is clicked
        action = left.pills(
            "Action on the selection",
            ACTIONS,
            selection_mode="single",
            default=None,
            format_func=ACTION_LABELS.get,
            key="bulk-action",
        )
        scope = middle.radio("Scope", list(BULK_SCOPES), format_func=BULK_SCOPES.get, key="bulk-scope")
        label = right.selectbox(
            "Label (relabel only)", run.class_names, format_func=shown, key="bulk-label", disabled=action != "relabel"
        )
        replace_decided = st.checkbox(
            "Also replace decisions already taken",
            key="bulk-replace-decided",
            help="Off: samples that already have a decision (anyone's) are left as they are.",
        )
        decided = set(ledger.state()["sample_id"])
        options = {"scope": scope, "decided": decided, "replace_decided": replace_decided}
        plan = None if action is None else plan_bulk(run, ids, action, label=label, **options)
        reason = None
        if not annotator:
            reason = "Enter your name in the sidebar first: every decision records who made it."
        elif action is None:
            reason = "Choose an action first."
        elif not plan.ids:
            reason = "No selected sample fits this action and scope."
        if plan is not None:
            st.caption(md(plan.describe()))
        pending = st.session_state.get(BULK_PENDING)
        if pending and plan is not None and pending == [action, label, scope, list(plan.ids)]:
            st.warning(
                f"Apply **{md(plan.action)}{' → ' + md(plan.label) if plan.label else ''}** to "
                f"**{len(plan.ids):,}** sample(s)? It is one step: Undo takes it back."
            )
            yes, no = st.columns(2)
            yes.button(
                f"Yes, apply to {len(plan.ids):,}",
                key="bulk-yes",
                type="primary",
                on_click=_apply_bulk,
                args=(ledger, run, plan, annotator),
            )
            no.button("Cancel", key="bulk-no", on_click=lambda: st.session_state.pop(BULK_PENDING, None))
        else:
            in_scope = plan or plan_bulk(run, ids, "remove", **options)  # no action yet: the scope's count
            count = len(in_scope.ids)
            st.button(
                f"Apply to {count:,}",
                key="bulk-apply",
                disabled=reason is not None,
                help=reason or "Shows what it will do and asks once more.",
                on_click=lambda: st.session_state.__setitem__(
                    BULK_PENDING, [action, label, scope, list(plan.ids) if plan else []]
                ),
            )
            if reason:
                st.caption(md(reason))
        if pending_override(ledger, run, annotator, "map"):
            st.session_state[BULK_APPLIED] = True  # an Override from here redraws the page too


def _apply_bulk(ledger: Ledger, run: Run, plan, annotator: str) -> None:
    st.session_state.pop(BULK_PENDING, None)
    st.session_state[BULK_APPLIED] = True
    plan = plan.at_apply(ledger.state()["sample_id"])  # a decision taken since the preview is not replaced
    if not plan.ids:
        flash("info", "Nothing applied: every planned sample was decided since the preview.", "map")
        return
    meanwhile = plan.skipped.get("decided since the preview", 0)
    if meanwhile:
        flash("info", f"{meanwhile:,} sample(s) decided since the preview were left as they are.", "map")
    on_decide(ledger, run, list(plan.ids), plan.action, annotator, label=plan.label, where="map")
