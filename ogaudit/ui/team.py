"""The team's screens: "my queue" for an annotator, notes and tags on a card, the admin's assignment form, and the
reviewer's disagreements with settle buttons. The rules are in :mod:`ogaudit.review.team` and the ledger; this
module draws them, and checks the signed-in role again when a button is clicked (a callback runs before the page,
so a user removed or demoted meanwhile changes nothing).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.errors import OgauditError
from ogaudit.results import Run
from ogaudit.review.actions import decide
from ogaudit.review.ledger import LABELLED_ACTIONS, Ledger
from ogaudit.review.queue import QueueFilter
from ogaudit.review.team import STATUSES, annotator_status, assign, my_queue, sample_status
from ogaudit.ui.auth import Visitor, allowed
from ogaudit.ui.common import decision_text, flash, sample_image, show_flash, when
from ogaudit.ui.text import code, md, readable

MY_QUEUE = "team-my-queue"
TAG_FILTER = "team-tags"
PRESET_TAGS = ("ambiguous", "bad image", "duplicate", "needs expert", "out of scope")
DISPUTES_SHOWN = 20
SCOPES = ("The flagged samples (most suspicious first)", "These sample ids", "The samples selected on the map")


def _allowed(action: str) -> str | None:
    """:func:`ogaudit.ui.auth.allowed`: the signed-in name if the user may still do ``action`` now."""
    return allowed(action)


# ---------------------------------------------------------------- my queue


def queue_scope(ledger: Ledger, run: Run, annotator: str | None) -> frozenset[str] | None:
    """Above the review queue: for an annotator with assigned samples, the *My queue* switch (on by default) and
    their progress; for everyone, a filter by tag. Returns the ids the queue is limited to, or None for no limit.
    In my queue, "decided" means decided by this annotator (:func:`queue_state`), since each sample is meant for
    several people."""
    mine = my_queue(ledger, annotator, run.flagged_ids) if annotator else None
    limit: frozenset[str] | None = None
    tags = sorted({tag for tags in ledger.notes()["tags"] for tag in tags})
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    if mine is not None and len(mine):
        on = left.toggle(f"My queue ({len(mine):,} assigned to me)", value=True, key=MY_QUEUE)
        done = int(mine["done"].sum())
        left.progress(done / len(mine), text=f"My queue: {done:,} of {len(mine):,} decided by me")
        if on:
            limit = frozenset(mine["sample_id"])
    else:  # nothing assigned: no switch, and no stale value for one drawn later (its default is on)
        st.session_state.pop(MY_QUEUE, None)
    if tags or st.session_state.get(TAG_FILTER):
        chosen = right.multiselect(
            "Tagged", sorted(set(tags) | set(st.session_state.get(TAG_FILTER) or [])), key=TAG_FILTER
        )
        if chosen:
            notes = ledger.notes()
            hit = notes["tags"].map(lambda tags: bool(set(tags) & set(chosen))).astype(bool)
            tagged = frozenset(notes.loc[hit, "sample_id"])
            limit = tagged if limit is None else limit & tagged
    return limit


def scoped(queue_filter: QueueFilter, limit: frozenset[str] | None) -> QueueFilter:
    """``queue_filter`` limited to ``limit`` (from :func:`queue_scope`); flagged or not, as assigned."""
    if limit is None:
        return queue_filter
    only = limit if queue_filter.only is None else queue_filter.only & limit
    return dataclasses.replace(queue_filter, only=only)


def queue_state(ledger: Ledger, decisions: pd.DataFrame, annotator: str | None) -> pd.DataFrame:
    """What the queue's "decided" filters read: the current decisions, or in my queue the annotator's own latest
    decisions (another assignee's decision does not take a sample out of my queue)."""
    if not annotator or not st.session_state.get(MY_QUEUE):
        return decisions
    latest = ledger.latest_per_annotator()
    return latest[latest["annotator"] == annotator][["sample_id", "action", "annotator"]].reset_index(drop=True)


# ---------------------------------------------------------------- notes and tags


def note_box(
    ledger: Ledger,
    sample_id: str,
    annotator: str | None,
    notes: pd.DataFrame | None = None,
    *,
    where: str = "queue",
) -> None:
    """The sample's note and tags: shown in the expander's label, edited in a form (one write on *Save*); on a
    card (``where="queue"``) and in the keyboard view (``where="keyboard"``, its messages shown there).

    Typing in the note or the tags fires no review key: Streamlit's shortcuts skip keys typed into a text field
    (only Alt+ keys and Shift+ named keys pass, and the review's default keys are neither)."""
    notes = ledger.notes() if notes is None else notes
    row = notes[notes["sample_id"] == sample_id]
    note = row["note"].iloc[0] if len(row) else None
    tags = list(row["tags"].iloc[0]) if len(row) else []
    shown = " · ".join(filter(None, [", ".join(tags), " ".join((note or "").split())[:40]]))
    label = "📝 " + (md(shown) if shown else "Note / tags")  # notes and tags are the users' text: shown as text
    place = "card" if where == "queue" else where
    with st.container(key=f"note-{place}-{sample_id}"), st.expander(label):
        if len(row):
            st.caption(f"by {md(row['noted_by'].iloc[0])}, {when(row['noted_at'].iloc[0])}")
        with st.form(f"note-{sample_id}", border=False):
            st.text_area("Note", value=note or "", key=f"note-text-{sample_id}", height=68)
            options = list(dict.fromkeys([*PRESET_TAGS, *tags, *(t for ts in notes["tags"] for t in ts)]))
            st.multiselect(
                "Tags", options, default=tags, key=f"note-tags-{sample_id}", accept_new_options=True,
                help="Pick tags or type a new one and press Enter.",
            )  # fmt: skip
            st.form_submit_button(
                "Save note", disabled=not annotator, on_click=_save_note, args=(ledger, sample_id, where)
            )


def _save_note(ledger: Ledger, sample_id: str, where: str = "queue") -> None:
    name = _allowed("review")
    if name is None:
        flash("error", "Sign in to write notes.", where)
        return
    text = st.session_state.get(f"note-text-{sample_id}", "")
    tags = st.session_state.get(f"note-tags-{sample_id}") or []
    try:
        ledger.annotate(sample_id, note=text, tags=tags, annotator=name)
    except OgauditError as error:
        flash("error", md(readable(error)), where)
        return
    flash("success", f"Saved the note on {code(sample_id)}.", where)


# ---------------------------------------------------------------- the team tab


def team_panel(
    ledger: Ledger, run: Run, who: Visitor, dataset: Dataset | None, selected: list[str] | None = None
) -> None:
    """Above the agreement view: the assignment form (admins), where each annotator stands, and the disputed
    samples with settle buttons (reviewers and admins)."""
    show_flash("team")
    status = sample_status(ledger)
    if who.can("assign"):
        _assignment_form(ledger, run, who, selected or [])
    people = annotator_status(ledger, status)
    if status["status"].notna().any():
        counts = status["status"].value_counts()
        st.markdown("**Samples by status**: " + " · ".join(f"{s} **{int(counts.get(s, 0)):,}**" for s in STATUSES))
    if len(people):
        st.dataframe(
            people,
            hide_index=True,
            key="team-annotators",
            column_config={
                "progress": st.column_config.ProgressColumn("progress", format="percent", min_value=0, max_value=1)
            },
        )
    if len(status):
        with st.expander(f"Every sample's status ({len(status):,})"):
            shown = status.assign(
                **{c: status[c].map(", ".join) for c in ("assigned_to", "decided_by", "pending", "tags")}
            )
            st.dataframe(shown, hide_index=True, key="team-samples")
    disputed = status[status["status"] == "disputed"]["sample_id"].tolist()
    if disputed and who.can("settle"):
        _disputes(ledger, run, who, disputed, dataset)
    elif disputed:
        st.info(f"{len(disputed):,} disputed sample(s) wait for a reviewer to settle them.")


def _assignment_form(ledger: Ledger, run: Run, who: Visitor, selected: list[str]) -> None:
    from ogaudit.project import workspace_root
    from ogaudit.server.auth import UserStore

    users = [u.name for u in UserStore.in_home(workspace_root()).list() if u.role in ("annotator", "reviewer")]
    with st.expander("Assign samples to annotators", expanded=not ledger.plans().shape[0]):
        with st.form("team-assign", border=False):
            st.text_input("Annotators (comma-separated)", value=", ".join(users), key="team-annotators-input")
            st.number_input("Annotators per sample (overlap)", 1, 20, 2, step=1, key="team-overlap")
            st.radio("Samples", SCOPES, horizontal=True, key="team-scope")
            st.text_area("Sample ids (one per line, in order)", key="team-ids", height=68)
            st.caption(f"{len(selected):,} sample(s) selected on the map.")
            st.form_submit_button("Assign", type="primary", on_click=_assign, args=(ledger, run, tuple(selected)))
        st.caption(
            "Each sample goes to that many different annotators, everyone gets the same number (give or take one), "
            "and the same request gives the same split. A new assignment replaces the assignees of the samples it "
            "names; decisions stay."
        )


def _assign(ledger: Ledger, run: Run, selected: tuple[str, ...] = ()) -> None:
    by = _allowed("assign")
    if by is None:
        flash("error", "Only an admin may assign samples.", "team")
        return
    names = [name for name in str(st.session_state.get("team-annotators-input", "")).split(",") if name.strip()]
    overlap = int(st.session_state.get("team-overlap", 1))
    typed = str(st.session_state.get("team-ids", ""))
    scope = st.session_state.get("team-scope", SCOPES[0])
    if scope == SCOPES[1]:
        ids = [i.strip() for i in typed.splitlines() if i.strip()]
    elif scope == SCOPES[2]:  # most suspicious first, as the queue shows them
        ids = sorted(selected, key=lambda sample: run.by_id.loc[sample, "rank"]) if selected else []
    else:
        ids = run.flagged_ids
    try:
        _, people = assign(ledger, ids, names, overlap=overlap, by=by)
    except OgauditError as error:
        flash("error", md(readable(error)), "team")
        return
    counts = ", ".join(f"{md(a)} {n}" for a, n in people[["annotator", "assigned"]].itertuples(index=False) if n)
    flash("success", f"Assigned {len(set(ids)):,} sample(s), {overlap} annotator(s) each: {counts}.", "team")


def _disputes(ledger: Ledger, run: Run, who: Visitor, disputed: list[str], dataset: Dataset | None) -> None:
    st.markdown(f"**{len(disputed):,} disputed sample(s)**: settle each with the decision that is right")
    table = ledger.disagreements()
    for sample_id in disputed[:DISPUTES_SHOWN]:
        rows = table[table["sample_id"] == sample_id]
        with st.container(border=True, key=f"dispute-{sample_id}"):
            image, text = st.columns([1, 4])
            with image:
                sample_image(dataset, run, sample_id, 96, place="dispute")
            with text:
                row = run.by_id.loc[sample_id]
                st.markdown(
                    f"{code(sample_id)} (rank {row['rank']}) · given **{md(row['given_label'])}** · suggested "
                    f"**{md(row['suggested_label'])}**"
                )
                st.markdown(
                    "  \n".join(
                        f"**{md(r['annotator'])}**: {decision_text({'action': r['action'], 'final_label': r['label']})}"
                        f" ({when(r['decided_at'])})"
                        for r in rows.to_dict("records")
                    )
                )
                options = list(dict.fromkeys((r["action"], r["label"]) for r in rows.to_dict("records")))
                for column, (action, label) in zip(st.columns(max(len(options), 1)), options, strict=False):
                    column.button(
                        f"Settle: {action}" + (f" → {md(label)}" if label else ""),
                        key=f"settle-{sample_id}-{action}-{label}",
                        type="primary",
                        on_click=_settle,
                        args=(ledger, run, sample_id, action, label),
                    )
    if len(disputed) > DISPUTES_SHOWN:
        st.caption(
            f"… and {len(disputed) - DISPUTES_SHOWN:,} more: settle these first, or use `ogaudit decisions settle`."
        )


def _settle(ledger: Ledger, run: Run, sample_id: str, action: str, label: str | None) -> None:
    reviewer = _allowed("settle")
    if reviewer is None:
        flash("error", "Only a reviewer or an admin may settle a disagreement.", "team")
        return
    try:
        decide(
            ledger, run, [sample_id], action, annotator=reviewer, label=label if action in LABELLED_ACTIONS else None,
            settle=True,
        )  # fmt: skip
    except OgauditError as error:
        flash("error", md(readable(error)), "team")
        return
    what = f"{action} → {label}" if label else action
    flash("success", f"Settled {code(sample_id)} as {md(what)}.", "team")


__all__ = ["note_box", "queue_scope", "queue_state", "scoped", "team_panel"]
