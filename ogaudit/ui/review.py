"""The review queue: filters, sort and search, flags per class, cards with their evidence or one sample at a time
by keyboard, an enlarged view; review progress, undo / redo and the agreement view.

Every button acts through a callback that writes the ledger at once, before the page reruns; the page then
reads the ledger again, so two annotators see each other's decisions on their next rerun.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.errors import OgauditError
from ogaudit.project import workspace_root
from ogaudit.results import Run
from ogaudit.review.actions import current_progress, take_back
from ogaudit.review.calibration import STABLE_AT, reviewed_estimate, stability_text
from ogaudit.review.evidence import RunEvidence, SampleEvidence, describe, evidence_table, scoring_text
from ogaudit.review.keys import ACTION_NAMES, DEFAULT_KEYS, class_keys, key_label, names_the_key
from ogaudit.review.ledger import ACTIONS, Ledger
from ogaudit.review.queue import (
    SORTS,
    STABILITIES,
    UNDECIDED,
    VERDICTS,
    QueueFilter,
    confusion,
    filter_queue,
    flag_counts,
)
from ogaudit.review.thumbnails import thumbnail_strip
from ogaudit.server.prefs import UserPrefs
from ogaudit.ui import state, team
from ogaudit.ui.common import (
    PENDING,
    decision_text,
    flash,
    on_decide,
    pending_override,
    sample_caption,
    sample_image,
    show_flash,
    when,
)
from ogaudit.ui.live import FULL_RERUN, LIVE_ON, LIVE_S, ask_full_rerun, current_state, mark_seen
from ogaudit.ui.text import code, md, readable, shown

PAGE_SIZES = (6, 12, 24, 48)
CARD_COLUMNS = (3, 4, 6)
VIEWS = ("Cards", "One at a time (keyboard)")
FOCUS = "ogaudit-focus"
WRONG = "ogaudit-p-wrong"
"""(run fingerprint, the P(wrong) estimate updated with the decisions last read): the enlarged view shows it too."""
DECIDED_HERE = "ogaudit-decided-here"
"""(queue filter, ids decided one by one under it): see :func:`_decided_here`."""
CARD_NEIGHBOURS = 8
KEYS_FORM = "ogaudit-keys-form"
CARD_FOCUS = "ogaudit-card-focus"
"""The position, on the page of cards, of the card the keys act on."""


def user_keys(annotator: str | None) -> dict[str, str]:
    """The reviewer's action → key map (:class:`~ogaudit.server.prefs.UserPrefs`, saved on the server per name);
    the defaults for a tab without a name."""
    if not annotator:
        return dict(DEFAULT_KEYS)
    return UserPrefs(workspace_root(), annotator).keys()


def key_legend(keys: dict[str, str], names: list[str]) -> None:
    """The keys, in view above the actions: each action's key, and each class's digit."""
    key_help = [f":blue-badge[{key_label(keys[a])}] {ACTION_NAMES[a]}" for a in ("accept", "keep", "remove", "unsure")]
    key_help.append(f":blue-badge[{key_label(keys['previous'])}] / :blue-badge[{key_label(keys['next'])}] move")
    key_help.append(f":blue-badge[{keys['undo']}] undo · :blue-badge[{keys['redo']}] redo")
    digits = [(key, name) for key, name in zip(class_keys(names), names, strict=True) if key is not None]
    relabel = [f":blue-badge[{key}]" + ("" if names_the_key(name, key) else f" {md(name)}") for key, name in digits]
    with st.container(border=True, key="key-legend"):
        st.markdown("**Keys** · " + " · ".join(key_help))
        st.markdown("**Relabel to** · " + " · ".join(relabel))


def once_per_class(prefix: str, names: list[str]) -> None:
    """Show a class named by its own key once on its relabel button (``{prefix}{index}``): Streamlit draws a
    button's shortcut beside its label, so the class "0" on the key 0 read "0 0". Its key badge is hidden (the
    label is the key); a class with another name keeps its badge ("Dress [4]")."""
    hidden = [
        f".st-key-{prefix}{index} kbd"
        for index, (name, key) in enumerate(zip(names, class_keys(names), strict=True))
        if names_the_key(name, key)
    ]
    if hidden:
        st.html(f"<style>{', '.join(hidden)} {{display: none}}</style>")


def keys_editor(annotator: str | None, keys: dict[str, str]) -> None:
    """Remap the action keys (saved on the server for this reviewer's name; the digits stay the classes')."""
    if not annotator:
        return
    with st.expander("⌨ Change my keys"), st.form(KEYS_FORM, border=False):
        columns = st.columns(4)
        for index, (action, key) in enumerate(keys.items()):
            st.session_state.setdefault(f"key-{action}", key)
            columns[index % 4].text_input(ACTION_NAMES[action].capitalize(), key=f"key-{action}")
        st.caption("One letter (not C or R), or Left, Right, Up, Down, Enter, Space…, with Shift+ or Alt+ if you like.")
        save, reset = st.columns(2)
        save.form_submit_button("Save my keys", type="primary", on_click=_save_keys, args=(annotator, None))
        reset.form_submit_button("Back to the defaults", on_click=_save_keys, args=(annotator, DEFAULT_KEYS))


def _save_keys(annotator: str, keys: dict[str, str] | None) -> None:
    if team.allowed("review") != annotator:  # the sign-in may have ended since the page drew the form
        flash("error", "Your sign-in has ended: nothing was saved. Sign in again.", "keyboard")
        return
    typed = keys or {action: st.session_state.get(f"key-{action}", key) for action, key in DEFAULT_KEYS.items()}
    try:
        saved = UserPrefs(workspace_root(), annotator).set_keys(typed)
    except OgauditError as error:
        flash("error", md(readable(error)), "keyboard")
        return
    for action, key in saved.items():
        st.session_state[f"key-{action}"] = key
    flash("success", "Saved your keys.", "keyboard")


def undo_redo(
    ledger: Ledger, annotator: str | None, where: str = "sidebar", keys: dict[str, str] | None = None
) -> None:
    """Undo / Redo buttons for the annotator's own latest batch (a bulk action is one step). In the keyboard view
    (``where="keyboard"``) they carry the keys Z and Shift+Z; there they are redrawn with the view after every key,
    so they are never stale."""
    can_undo, can_redo = ledger.undo_depth(annotator) if annotator else (0, 0)
    keys_on = where == "keyboard"
    keys = keys or DEFAULT_KEYS
    buttons = (("undo", "↶ Undo", keys["undo"], can_undo), ("redo", "↷ Redo", keys["redo"], can_redo))
    for column, (kind, label, shortcut, possible) in zip(st.columns(2), buttons, strict=True):
        column.button(
            label,
            key=kind if where == "sidebar" else f"{kind}-{where}",
            on_click=_toggle,
            args=(ledger, annotator, kind, where),
            disabled=not possible,
            shortcut=shortcut if keys_on else None,
            width="stretch" if keys_on else "content",
        )
    if where == "sidebar":
        show_flash("sidebar")


def _toggle(ledger: Ledger, annotator: str, kind: str, where: str = "sidebar") -> None:
    if team.allowed("review") != annotator:  # the sign-in may have ended since the page drew the button
        flash("error", "Your sign-in has ended: nothing was undone. Sign in again.", where)
        return
    try:
        batch, changed = take_back(ledger, annotator, kind)
    except OgauditError as error:
        flash("error", md(readable(error)), where)
        return
    if where == "sidebar":
        ask_full_rerun()  # the button sits in the sidebar's fragment; an undo changes the cards and map too
    if batch is None:
        return
    done = "Undid" if kind == "undo" else "Redid"
    if not changed:
        flash("info", f"{done} your step; its samples keep the later decisions others made on them.", where)
        return
    if kind == "undo":
        st.session_state[FOCUS] = changed[0]
    flash("info", f"{done} the decision on {len(changed)} sample(s): {md(', '.join(changed[:5]))}", where)


SIDEBAR_PROGRESS = ["annotator", "flagged_decided", "decided", "wrong"]
"""The sidebar's per-annotator columns (the full table, one column per action, is in the Agreement tab)."""


def review_progress(ledger: Ledger, run: Run, decisions: pd.DataFrame) -> None:
    """Reviewed / flagged overall, and per annotator: only decisions that are samples' current state count."""
    flagged = run.flagged_ids
    reviewed = int(decisions["sample_id"].isin(set(flagged)).sum())
    st.progress(reviewed / max(len(flagged), 1), text=f"Reviewed {reviewed:,} of {len(flagged):,} flagged samples")
    if len(decisions):
        table = current_progress(decisions, flagged)
        table = table.assign(wrong=table["confirm"] + table["relabel"])[SIDEBAR_PROGRESS]
        # four narrow columns: the sidebar is 300 px wide, and the eight of the full table scrolled at 1400 px
        headers = {
            "annotator": st.column_config.TextColumn("Who", width=78),
            "flagged_decided": st.column_config.NumberColumn("Flagged", help="Flagged samples decided", width=56),
            "decided": st.column_config.NumberColumn("All", help="All samples decided, flagged or not", width=54),
            "wrong": st.column_config.NumberColumn("Wrong", help="Confirmed or relabelled (label wrong)", width=48),
        }
        st.dataframe(table, hide_index=True, key="progress-table", column_config=headers)
        st.caption(
            "Current decisions per annotator (one overridden by someone else no longer counts); each action in the "
            "Agreement tab."
        )


@st.fragment(run_every=LIVE_S)
def live_sidebar(ledger: Ledger, run: Run, annotator: str | None) -> None:
    """The sidebar's Undo / Redo and review progress, redrawn every :data:`LIVE_S` seconds."""
    if st.session_state.pop(FULL_RERUN, False):
        st.rerun()
    decisions = current_state(ledger, ledger.revision())
    undo_redo(ledger, annotator)
    review_progress(ledger, run, decisions)
    st.toggle(
        "Live updates",
        value=True,
        key=LIVE_ON,
        help=f"Show others' decisions within {LIVE_S:g} s, without a click (the page redraws). Off: the page "
        "changes only when you act; the counts here still follow.",
    )


# ---------------------------------------------------------------- the queue


def review_queue(
    ledger: Ledger,
    run: Run,
    decisions: pd.DataFrame,
    annotator: str | None,
    dataset: Dataset | None,
    evidence: RunEvidence | None,
) -> None:
    """The filtered queue as cards with one-click actions, or one sample at a time with a key for every action."""
    show_flash("queue")
    limit = team.queue_scope(ledger, run, annotator)  # my queue, tags
    _class_tables(run)
    groups = state.duplicates(run, dataset)
    queue_filter = team.scoped(_filters(run, decisions, groups, dataset), limit)
    queue = filter_queue(run.table, team.queue_state(ledger, decisions, annotator), queue_filter)
    controls = st.columns([3, 2, 1, 1, 1], vertical_alignment="bottom")
    view = controls[0].segmented_control("View", VIEWS, default=VIEWS[0], key="queue-view") or VIEWS[0]
    controls[1].toggle("Hide decided samples", value=True, key="queue-hide-decided")
    if not queue:
        st.success(
            "Nothing left to review in the queue." if _is_default(queue_filter) else "No sample fits the filters."
        )
        return
    if not annotator:
        st.info("Enter your name in the sidebar to record decisions.")
    if view == VIEWS[1]:
        keyboard_review(ledger, run, queue_filter, annotator, dataset, evidence)
        return
    current = decisions.set_index("sample_id").to_dict("index") if len(decisions) else {}
    page_size = controls[2].selectbox("Per page", PAGE_SIZES, index=1, key="queue-page-size")
    pages = max(1, -(-len(queue) // page_size))
    page = controls[3].number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="queue-page")
    st.caption(f"{len(queue):,} in the queue · page {page} of {pages}")
    chunk = queue[(page - 1) * page_size : page * page_size]
    explained = _explain(run, evidence, chunk, decisions)
    notes = ledger.notes()
    per_row = controls[4].selectbox("Per row", CARD_COLUMNS, key="queue-per-row", help="More, smaller cards per row")
    _card_keys(ledger, run, chunk, annotator, queue_filter, explained)
    for start in range(0, len(chunk), per_row):
        for column, sample_id in zip(st.columns(per_row), chunk[start : start + per_row], strict=False):
            with column.container(border=True, key=f"card-{sample_id}"):
                _card(ledger, run, sample_id, current.get(sample_id), annotator, dataset, explained, evidence, groups)
                team.note_box(ledger, sample_id, annotator, notes)


def _card_keys(
    ledger: Ledger,
    run: Run,
    chunk: list[str],
    annotator: str | None,
    queue_filter: QueueFilter,
    explained: dict[str, SampleEvidence],
) -> None:
    """The card grid by keyboard: one card of the page has the focus (outlined); the move keys go from card to
    card, the action keys and the class digits decide on the focused card, and the focus then moves on."""
    keys = user_keys(annotator)
    index = min(int(st.session_state.get(CARD_FOCUS, 0)), len(chunk) - 1)
    focus = chunk[index]
    st.html(f"<style>.st-key-{css_key(f'card-{focus}')} {{outline: 3px solid #1c83e1; outline-offset: 2px}}</style>")
    row = run.by_id.loc[focus].to_dict()
    label, confirm_label, why = _confirm_target(run, row, explained.get(focus))
    moved = index if queue_filter.hide_decided else min(index + 1, len(chunk) - 1)
    common = {
        "ledger": ledger,
        "run": run,
        "ids": [focus],
        "annotator": annotator,
        "after": lambda: st.session_state.__setitem__(CARD_FOCUS, moved),
    }
    locked = not annotator
    with st.container(border=True, key="grid-keys"):
        # the caption on its own line: beside seven buttons it left them ~110 px at 1400 px, and "Previous ←"
        # was cut to "Pre… ←"
        st.markdown(f"Keyboard on card {index + 1} of {len(chunk)}: {code(focus)}")
        bar = st.columns(7, vertical_alignment="center")
        bar[0].button(
            "Previous",
            key="grid-previous",
            shortcut=keys["previous"],
            on_click=_focus_card,
            args=(index - 1,),
            disabled=index == 0,
            width="stretch",
        )
        bar[1].button(
            "Next",
            key="grid-next",
            shortcut=keys["next"],
            on_click=_focus_card,
            args=(index + 1,),
            disabled=index + 1 >= len(chunk),
            width="stretch",
        )
        bar[2].button(
            "Accept",
            key="grid-accept",
            shortcut=keys["accept"],
            on_click=on_decide,
            kwargs={**common, "action": "confirm", "label": label},
            disabled=locked or confirm_label is None,
            help=why,
            width="stretch",
        )
        _action_buttons(bar[3:], "grid", keys, common, locked)
        names = run.class_names
        digits = [(i, key) for i, key in enumerate(class_keys(names)) if key is not None]
        once_per_class("grid-label-", names)
        grid = st.columns(max(len(digits), 1))
        for column, (i, key) in zip(grid, digits, strict=False):
            _label_button(column, names, i, key, "grid", given=row["given_label"], common=common, locked=locked)


def _action_buttons(columns, prefix: str, keys: dict, common: dict, locked: bool) -> None:
    """Keep, Remove and Unsure, one per column, with the reviewer's keys (``{prefix}-keep`` ...)."""
    for column, action in zip(columns, ("keep", "remove", "unsure"), strict=False):
        column.button(
            action.capitalize(),
            key=f"{prefix}-{action}",
            shortcut=keys[action],
            on_click=on_decide,
            kwargs={**common, "action": action},
            disabled=locked,
            width="stretch",
        )


def _label_button(
    column, names: list[str], index: int, key: str, prefix: str, *, given, common: dict, locked: bool, help=None
) -> None:
    """Class ``names[index]``'s button with its digit ``key``: keep when it is the ``given`` label, else relabel."""
    name = names[index]
    column.button(
        md(name),
        key=f"{prefix}-label-{index}",
        shortcut=key,
        on_click=on_decide,
        kwargs={**common, "action": "keep"} if name == given else {**common, "action": "relabel", "label": name},
        disabled=locked,
        help=help,
        width="stretch",
    )


def _focus_card(index: int) -> None:
    st.session_state[CARD_FOCUS] = max(index, 0)


def css_key(key: str) -> str:
    """The CSS class Streamlit gives a container with ``key`` (after ``st-key-``): other characters become ``-``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def _explain(
    run: Run, evidence: RunEvidence | None, ids: list[str], decisions: pd.DataFrame | None = None
) -> dict[str, SampleEvidence]:
    """The evidence of the shown samples, with P(wrong) from the run's table updated by ``decisions`` (kept in the
    session for the enlarged view, so that it shows the same number)."""
    if evidence is None or not ids:
        return {}
    if decisions is not None:
        st.session_state[WRONG] = (run.fingerprint, reviewed_estimate(run.table, decisions))
    saved = st.session_state.get(WRONG)
    wrong = saved[1] if saved and saved[0] == run.fingerprint else reviewed_estimate(run.table, None)
    return dict(zip(ids, evidence.explain([run.position[i] for i in ids], wrong=wrong), strict=True))


DUPLICATE_QUEUES = {
    "all": "All samples",
    "conflicts": "Duplicates with different labels",
    "duplicates": "All duplicates",
}


def _filters(run: Run, decisions: pd.DataFrame, groups: pd.DataFrame, dataset: Dataset | None = None) -> QueueFilter:
    names = run.class_names
    score = run.table["score"]
    low, high = float(score.min()), float(score.max())
    with st.expander("Filter, sort, search", expanded=False):
        row = st.columns(4)
        given = row[0].multiselect("Given label", names, format_func=shown, key="queue-given")
        suggested = row[1].multiselect("Suggested label", names, format_func=shown, key="queue-suggested")
        chosen = row[2].multiselect("Decision", [UNDECIDED, *ACTIONS], key="queue-decision")
        people = set(decisions["annotator"]) | set(st.session_state.get("queue-annotator") or [])
        people = sorted(people)  # a name chosen earlier stays an option even when its decisions were undone
        annotators = row[3].multiselect("Decided by", people, key="queue-annotator")
        row = st.columns([3, 2, 2], vertical_alignment="bottom")  # wide enough for "Flagged only"
        picked = row[0].slider("Score", low, max(high, low + 1e-9), (low, high), key="queue-score")
        flagged_only = row[1].toggle("Flagged only", value=True, key="queue-flagged-only")
        search = row[2].text_input("Sample id contains", key="queue-search", placeholder="search ids")
        # four to a row, so that "to calibrate P(wrong)" and "Duplicates with different labels" are not cut
        # (a fifth of the row showed "to calibrate P(wro" at 1400 px)
        row = st.columns(4)
        sort = row[2].selectbox("Sort", list(SORTS), key="queue-sort")
        conflicts = int(groups.loc[groups["conflict"], "group"].nunique())
        which = row[3].selectbox(
            "Duplicates",
            list(DUPLICATE_QUEUES),
            format_func=lambda k: DUPLICATE_QUEUES[k] + (f" ({conflicts})" if k == "conflicts" else ""),
            key="queue-duplicates",
            help="Same content under several ids (exact bytes or the same text, or the same coarse picture or "
            "embedding); with different labels, at least one label is wrong. Flagged or not.",
        )
        verdict = row[0].selectbox(
            "Wrong or ambiguous",
            list(VERDICTS),
            format_func=lambda v: {"": "both", "wrong": "wrong", "ambiguous": "ambiguous"}[v],
            key="queue-verdict",
            help="Ambiguous: the model or the gradient neighbours split between the given label and one other class.",
        )
        stability = row[1].selectbox(
            "Flag stability",
            list(STABILITIES),
            format_func=lambda v: v or "any",
            key="queue-stability",
            help=f"Stable: {STABLE_AT:.0%} or more of the checkpoints of the second half of training would flag it "
            "too (when ogaudit trained the model), else it is kept in that share of resamples of the sample's "
            "gradient neighbours. Unstable: the verdict may flip.",
        )
        words = ""
        if dataset is not None and dataset.is_text:
            masked = dataset.text_origin is not None and dataset.text_origin.mask_mentions
            words = st.text_input(
                "Text contains",
                key="queue-text-search",
                placeholder="search in the texts",
                help="Searches the texts as they are shown, ignoring case"
                + (": @mentions are shown and searched as @user." if masked else "."),
            )
    only = None
    if which != "all":
        chosen_groups = groups[groups["conflict"]] if which == "conflicts" else groups
        only = frozenset(chosen_groups["sample_id"])
    if words.strip():
        from ogaudit.review.texts import search_texts

        found = frozenset(search_texts(dataset, words).tolist())
        only = found if only is None else only & found
    return QueueFilter(
        given=tuple(given),
        suggested=tuple(suggested),
        decisions=tuple(chosen),
        annotators=tuple(annotators),
        score=None if tuple(picked) == (low, high) else (float(picked[0]), float(picked[1])),
        flagged_only=flagged_only,
        hide_decided=bool(st.session_state.get("queue-hide-decided", True)),
        search=search,
        sort=sort,
        only=only,
        verdict=verdict,
        stability=stability,
    )


def _is_default(queue_filter: QueueFilter) -> bool:
    return queue_filter == QueueFilter(hide_decided=queue_filter.hide_decided)


def _one_class(run: Run) -> None:
    """A per-class view: every sample of one given class, flagged or not, decided or not, as cards (the queue's
    filters set to that; any filter can be changed after)."""
    st.selectbox(
        "All samples of one class",
        [None, *run.class_names],
        format_func=lambda name: "—" if name is None else shown(name),
        key="queue-one-class",
        on_change=_show_one_class,
        help="Sets the filters to this given class, flagged or not, decided or not.",
    )


def _show_one_class() -> None:
    name = st.session_state.get("queue-one-class")
    if name is None:
        return
    st.session_state.update(
        {
            "queue-given": [name],
            "queue-suggested": [],
            "queue-decision": [],
            "queue-annotator": [],
            "queue-flagged-only": False,
            "queue-hide-decided": False,
            "queue-duplicates": "all",
            "queue-search": "",
            "queue-page": 1,
        }
    )
    st.session_state.pop("queue-score", None)  # back to the whole range


def _class_tables(run: Run) -> None:
    """Flags per given class, and given × suggested over the flagged: clicking a cell filters the queue to it."""
    _one_class(run)
    with st.expander("Flags per class, given × suggested"):
        left, right = st.columns([2, 5])
        left.dataframe(
            flag_counts(run.table),
            hide_index=True,
            key="flag-counts",
            column_config={
                "share": st.column_config.ProgressColumn("share", format="percent", min_value=0, max_value=1)
            },
        )
        table = confusion(run.table, run.class_names)
        right.caption("Flagged samples by given (rows) and suggested label (columns). Click a cell to review them.")
        event = right.dataframe(table, key="confusion", on_select="rerun", selection_mode="single-cell")
    cells = (event or {}).get("selection", {}).get("cells") or []
    if cells and cells[0] != st.session_state.get("confusion-done"):
        st.session_state["confusion-done"] = cells[0]
        row, column = cells[0]
        st.session_state["queue-given"] = [run.class_names[int(row)]]
        st.session_state["queue-suggested"] = [str(column)]
        st.session_state["queue-flagged-only"] = True
        st.session_state["queue-page"] = 1


# ---------------------------------------------------------------- a card


def _confirm_target(run: Run, row: dict, item: SampleEvidence | None) -> tuple[str | None, str | None, str]:
    """(label passed to confirm, label shown, help): the suggestion, or the next most likely class when the
    suggestion is the given label; (None, None, why) when there is none."""
    if row["suggested_label"] != row["given_label"]:
        return None, row["suggested_label"], "The given label is wrong; the suggested one is right."
    if item is not None:
        other = run.class_names[item.best_other()]
        return (
            other,
            other,
            (
                f"The suggestion is the given label; {other} is the next most likely class. Confirm records that the "
                "given label is wrong and sets this one."
            ),
        )
    return None, None, "The suggestion is the given label, so confirming would change nothing: keep it or relabel it."


def _card(
    ledger: Ledger,
    run: Run,
    sample_id: str,
    decision: dict | None,
    annotator: str | None,
    dataset: Dataset | None,
    explained: dict[str, SampleEvidence],
    evidence: RunEvidence | None,
    groups: pd.DataFrame,
) -> None:
    row = run.by_id.loc[sample_id].to_dict()
    item = explained.get(sample_id)
    image, enlarge = st.columns([4, 1])
    with image:
        sample_image(dataset, run, sample_id, 200)
    if enlarge.button("⤢", key=f"enlarge-{sample_id}", help="Enlarge, with all the evidence"):
        enlarged(run, sample_id, dataset, evidence, decision)
    st.markdown(sample_caption(row, {**decision, "sample_id": sample_id} if decision else None))
    _duplicate_note(sample_id, groups)
    if item is not None:
        evidence_panel(run, item, dataset, neighbours=CARD_NEIGHBOURS, compact=True)
    pending_override(ledger, run, annotator, "queue", ids=[sample_id])
    locked = not annotator
    common = {"ledger": ledger, "run": run, "ids": [sample_id], "annotator": annotator}
    label, confirm_label, why = _confirm_target(run, row, item)
    st.button(
        f"✓ Confirm → {md(confirm_label)}" if confirm_label else "✓ Confirm",
        key=f"confirm-{sample_id}",
        type="primary",
        on_click=on_decide,
        kwargs={**common, "action": "confirm", "label": label},
        disabled=locked or confirm_label is None,
        help=why,
    )
    names = run.class_names
    label_key = f"relabel-label-{sample_id}"
    pick, go = st.columns([3, 2], vertical_alignment="bottom")
    default = confirm_label if confirm_label is not None else row["suggested_label"]
    pick.selectbox("Relabel to", names, index=names.index(default), format_func=shown, key=label_key)
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


def _duplicate_note(sample_id: str, groups: pd.DataFrame) -> None:
    """A line naming the sample's duplicates and their labels, when it has any."""
    mine = groups[groups["sample_id"] == sample_id]
    for group, kind in mine[["group", "kind"]].itertuples(index=False):
        others = groups[(groups["group"] == group) & (groups["sample_id"] != sample_id)]
        listed = ", ".join(
            f"{code(o)} ({md(label)})" for o, label in others[["sample_id", "given_label"]].head(4).values
        )
        more = f" and {len(others) - 4} more" if len(others) > 4 else ""
        warn = "⚠ labels differ: " if mine["conflict"].any() else ""
        st.markdown(f"{warn}{kind} duplicate of {listed}{more}")


def _stability_of(table: pd.DataFrame, position: int) -> tuple[float, str, float]:
    """The row's ``flag_stability``, its basis and count (:func:`~ogaudit.review.calibration.stability_text`)."""

    def number(column: str) -> float:
        value = table[column].iat[position] if column in table else None
        return float(pd.to_numeric(value, errors="coerce")) if value is not None else float("nan")

    basis = str(table["flag_stability_basis"].iat[position]) if "flag_stability_basis" in table else ""
    return number("flag_stability"), basis, number("flag_stability_of")


def evidence_panel(
    run: Run, item: SampleEvidence, dataset: Dataset | None, *, neighbours: int, compact: bool = False
) -> None:
    """Why the sample is flagged: the calibrated probability that its label is wrong, in words, the classes'
    probabilities (model, neighbours, combined, counterfactual) and the nearest gradient neighbours."""
    names = run.class_names
    st.markdown(f"**{md(item.wrong_text(names))}**")
    line = stability_text(*_stability_of(run.table, item.position))
    if line is not None:  # flagged, with a stability
        st.caption(line[0], help=line[1])
    body = st.expander("Why is this flagged?") if compact else st.container()
    with body:
        st.caption(md(describe(item, names)))
        scored = scoring_text(run.settings.detector, run.detector_state)
        if scored is not None:
            st.caption(
                md(scored),
                help="κ: how concentrated the data's estimated wrong labels are, 0 = spread evenly over the other "
                "classes, 1 = each class's from one partner class (read from the confident joint of given and "
                "likely true labels, no true label needed). Spread wrong labels are found best by how unlikely the "
                "given label is (the posterior); concentrated ones by how much likelier one other label is (the "
                "counterfactual ratio).",
            )
        st.dataframe(
            evidence_table(item, names),
            hide_index=True,
            column_config={
                "model": st.column_config.ProgressColumn("model", format="percent", min_value=0, max_value=1),
                "combined": st.column_config.ProgressColumn("combined", format="percent", min_value=0, max_value=1),
                "counterfactual": st.column_config.NumberColumn(
                    "counterfactual", format="%.3g", help="The outlier score if this were the label: lower fits better."
                ),
            },
        )
        shown = item.neighbours[:neighbours]
        if dataset is not None and dataset.is_text:  # texts, not thumbnails
            from ogaudit.ui.textcards import neighbour_texts

            given = [names[c] for c in item.neighbour_labels]
            neighbour_texts(dataset, shown, given, item.cosines, compact=compact)
            return
        strip = None if dataset is None else thumbnail_strip(dataset, shown, 48 if compact else 72)
        labels = " · ".join(
            f"{names[c]} ({cos:.2f})" for c, cos in zip(item.neighbour_labels, item.cosines, strict=False)
        )
        caption = f"Nearest gradient neighbours, given label (cosine): {md(labels if not compact else labels[:200])}"
        if strip is not None:
            st.image(strip, caption=caption)
        else:
            st.caption(caption)


@st.dialog("Sample", width="large")
def enlarged(run: Run, sample_id: str, dataset: Dataset | None, evidence: RunEvidence | None, decision) -> None:
    """The sample at a size the reviewer chooses, with all its evidence."""
    row = run.by_id.loc[sample_id].to_dict()
    text = dataset is not None and dataset.is_text  # a text card has no pixels to zoom
    size = 448 if text else st.slider("Zoom (pixels)", 128, 768, 448, step=64, key="zoom")
    left, right = st.columns([3, 2])
    with left:
        sample_image(dataset, run, sample_id, size, place="dialog")
    with right:
        st.markdown(sample_caption(row, {**decision, "sample_id": sample_id} if decision else None))
        if evidence is not None:
            evidence_panel(run, _explain(run, evidence, [sample_id])[sample_id], dataset, neighbours=20)


# ---------------------------------------------------------------- one at a time, by keyboard


@st.fragment
def keyboard_review(
    ledger: Ledger,
    run: Run,
    queue_filter: QueueFilter,
    annotator: str | None,
    dataset: Dataset | None,
    evidence: RunEvidence | None,
) -> None:
    """One sample, large, with a key on every action and its note / tags box; a decision moves on to the next sample
    in the queue.

    A fragment: a key reruns only this view (it reads the ledger and the queue again), not the map and the rest of
    the page, so a decision's round trip does not grow with the map's size. The sidebar's counts and Undo follow
    within seconds (:func:`live_sidebar`).
    """
    revision = ledger.revision()
    decisions = ledger.state()
    mark_seen(ledger, revision)  # this view's own keys need no page rerun; the sidebar follows by itself
    pending = st.session_state.get(PENDING)
    waiting = set(pending["ids"]) if pending and pending["where"] == "keyboard" else set()
    # a key on a sample someone else decided meanwhile waits for Override / Cancel: that sample stays in view
    decided_here = _decided_here(queue_filter)
    shown = team.queue_state(ledger, decisions, annotator)  # in my queue, decided means decided by me
    queue = filter_queue(run.table, shown, queue_filter, still_shown=decided_here | waiting)
    if not queue:
        st.success("Nothing left to review in the queue.")
        return
    current = decisions.set_index("sample_id").to_dict("index") if len(decisions) else {}
    focus = st.session_state.get(FOCUS)
    if focus not in queue:  # decided by someone else meanwhile: the first sample not decided in this pass
        focus = next((sample for sample in queue if sample not in decided_here), queue[0])
    position = queue.index(focus)
    following = queue[position + 1] if position + 1 < len(queue) else (queue[position - 1] if position else None)
    row = run.by_id.loc[focus].to_dict()
    item = _explain(run, evidence, [focus], decisions).get(focus)
    reviewed = int(decisions["sample_id"].isin(set(run.flagged_ids)).sum())
    st.caption(
        f"Sample {position + 1:,} of {len(queue):,} in the queue · reviewed {reviewed:,} of {len(run.flagged_ids):,} "
        "flagged samples"
    )
    keys = user_keys(annotator)
    key_legend(keys, run.class_names)
    picture, actions = st.columns([3, 2])
    with picture, st.container(border=True, key="keyboard-sample"):
        sample_image(dataset, run, focus, 320, place="keyboard")
        decision = current.get(focus)
        st.markdown(sample_caption(row, {**decision, "sample_id": focus} if decision else None))
        if item is not None:
            evidence_panel(run, item, dataset, neighbours=10)
    with actions:
        _keyboard_actions(ledger, run, queue, focus, following, row, item, annotator, queue_filter, keys)
        team.note_box(ledger, focus, annotator, where="keyboard")  # typing here fires no review key
    keys_editor(annotator, keys)


def _move(target: str | None) -> None:
    if target is not None:
        st.session_state[FOCUS] = target


def _decided_here(queue_filter: QueueFilter) -> set[str]:
    """The samples decided in this one-by-one pass under ``queue_filter``: "Hide decided" leaves them in the queue,
    so that ← returns to the sample just decided. Another filter starts a new pass."""
    remembered = st.session_state.get(DECIDED_HERE)
    if remembered and remembered[0] == queue_filter:
        return set(remembered[1])
    st.session_state.pop(DECIDED_HERE, None)  # changing the filter, even back again, ends the pass
    return set()


def _decided_then_move(queue_filter: QueueFilter, decided: str, target: str | None) -> None:
    st.session_state[DECIDED_HERE] = (queue_filter, _decided_here(queue_filter) | {decided})
    _move(target)


def _keyboard_actions(ledger, run: Run, queue, focus, following, row, item, annotator, queue_filter, keys) -> None:
    pending_override(ledger, run, annotator, "keyboard", ids=[focus])
    locked = not annotator
    common = {
        "ledger": ledger,
        "run": run,
        "ids": [focus],
        "annotator": annotator,
        "where": "keyboard",
        "after": lambda: _decided_then_move(queue_filter, focus, following),
    }
    show_flash("keyboard")
    label, shown, why = _confirm_target(run, row, item)
    st.button(
        f"Accept → {md(shown)}" if shown else "Accept",
        key="kb-accept",
        type="primary",
        shortcut=keys["accept"],
        on_click=on_decide,
        kwargs={**common, "action": "confirm", "label": label},
        disabled=locked or shown is None,
        help=why,
        width="stretch",
    )
    names = run.class_names
    keyed = [(index, key) for index, key in enumerate(class_keys(names)) if key is not None]
    longest = max((len(str(names[index])) for index, _ in keyed), default=0)
    per_row = 5 if longest <= 6 else 3 if longest <= 12 else 2  # a class name must fit its button beside its key
    once_per_class("kb-label-", names)
    grid = st.columns(per_row)
    for slot, (index, key) in enumerate(keyed):
        tip = "The given label: records keep" if names[index] == row["given_label"] else None
        given = row["given_label"]
        _label_button(
            grid[slot % per_row], names, index, key, "kb", given=given, common=common, locked=locked, help=tip
        )
    _action_buttons(st.columns(3), "kb", keys, common, locked)
    undo_redo(ledger, annotator, "keyboard", keys)
    back, ahead = st.columns(2)
    position = queue.index(focus)
    back.button(
        "Previous",
        key="kb-previous",
        shortcut=keys["previous"],
        on_click=_move,
        args=(queue[position - 1] if position else None,),
        disabled=position == 0,
        width="stretch",
    )
    ahead.button(
        "Next",
        key="kb-next",
        shortcut=keys["next"],
        on_click=_move,
        args=(queue[position + 1] if position + 1 < len(queue) else None,),
        disabled=position + 1 >= len(queue),
        width="stretch",
    )


# ---------------------------------------------------------------- agreement


def agreement_view(ledger: Ledger, progress: pd.DataFrame | None = None) -> None:
    """Each annotator's current decisions per action (``progress``: :func:`~ogaudit.review.actions.current_progress`,
    the sidebar shows four of its columns), the samples on which annotators' decisions in force differ, each with
    who decided what and when, and the pairwise agreement; a lead settles one by deciding again (the latest
    decision is the sample's state)."""
    if progress is not None and len(progress):
        st.markdown("**Decisions per annotator** (current decisions; one overridden by someone else no longer counts)")
        headers = {
            "annotator": "annotator",
            "flagged_decided": st.column_config.NumberColumn("flagged decided", help="Flagged samples decided"),
            "decided": st.column_config.NumberColumn("all decided", help="All samples decided, flagged or not"),
        }
        st.dataframe(progress, hide_index=True, key="progress-full", column_config=headers)
    disputes = ledger.disagreements()
    pairs = ledger.agreement()
    if len(pairs):
        st.markdown("**Pairwise agreement** (samples both decided)")
        st.dataframe(
            pairs,
            hide_index=True,
            key="agreement-pairs",
            column_config={
                "agreement": st.column_config.ProgressColumn("agreement", format="percent", min_value=0, max_value=1)
            },
        )
    if disputes.empty:
        st.success("No disagreements: every sample decided by several annotators got the same outcome.")
        return
    st.markdown(f"**{disputes['sample_id'].nunique():,} sample(s) with disagreeing decisions**")
    lines = []
    for sample_id, group in disputes.groupby("sample_id", sort=False):
        parts = [
            f"{md(r['annotator'])}: {decision_text({'action': r['action'], 'final_label': r['label']})} "
            f"({when(r['decided_at'])}){' ← in force' if r['in_force'] else ''}"
            for r in group.to_dict("records")
        ]
        lines.append(f"- {code(sample_id)}: " + "; ".join(parts))
    st.markdown("\n".join(lines[:200]))
    st.caption(
        "A reviewer or an admin settles each one above; anyone may also decide again in the review queue (show "
        "decided samples), which makes the latest decision the current one without settling the disagreement."
    )
