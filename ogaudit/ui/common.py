"""Pieces every panel uses: messages that survive the rerun a click causes, the decision callback, sample tiles."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.errors import OgauditError
from ogaudit.results import Run
from ogaudit.review.actions import decide, others_decisions
from ogaudit.review.ledger import Ledger
from ogaudit.review.team import assigned_ids
from ogaudit.review.thumbnails import thumbnail
from ogaudit.ui.text import code, md, readable

_FLASH = "ogaudit-flash"
PENDING = "ogaudit-pending-override"


def flash(kind: str, text: str, where: str = "main") -> None:
    """Show ``text`` (``kind`` = "success", "error", "info") on the next run, in the panel ``where`` the reviewer
    acted ("main", "queue", "map", "sidebar", "export"), and as a toast, which stays in view however far the page
    is scrolled."""
    st.session_state.setdefault(_FLASH, []).append((kind, text, where))


def show_flash(where: str = "main") -> None:
    """Show and forget the messages left by callbacks for the panel ``where``.

    They go into a container that is there on every run, message or not: an element appearing above the tabs
    would change the tabs' identity, and Streamlit would switch the reviewer back to the first tab.
    """
    slot = st.container()
    messages = st.session_state.get(_FLASH, [])
    st.session_state[_FLASH] = [m for m in messages if m[2] != where]
    for kind, text, _ in (m for m in messages if m[2] == where):
        getattr(slot, kind)(text)
        st.toast(text, icon={"success": "✅", "error": "⚠️", "info": "ℹ️"}.get(kind))


def on_decide(
    ledger: Ledger,
    run: Run,
    ids: list[str],
    action: str,
    annotator: str,
    label: str | None = None,
    label_key: str | None = None,
    where: str = "queue",
    force: bool = False,
    after: Callable[[], None] | None = None,
) -> None:
    """Button callback: record ``action`` on ``ids`` now (the label from widget ``label_key`` if given).

    Runs before the page reruns, so the rerun already shows the decision; a refused decision becomes a message.
    When another annotator's decision is the current one on any of ``ids``, nothing is written: the decision
    waits in ``PENDING`` until the reviewer overrides (``force``) or cancels (:func:`pending_override`).
    ``after`` runs once the decision is stored (the keyboard view moves on).
    """
    from ogaudit.ui.auth import allowed

    name = allowed("review")  # the sign-in may have ended since the page drew the button
    if name is None:
        flash("error", "Your sign-in has ended: nothing was recorded. Sign in again.", where)
        return
    annotator = name
    if label_key is not None:
        label = st.session_state.get(label_key)
    st.session_state.pop(PENDING, None)
    try:
        if not force:
            others = others_decisions(ledger.state(), ids, annotator)
            if len(others):  # a sample assigned to this annotator is meant for several: no override to confirm
                others = others[~others["sample_id"].isin(assigned_ids(ledger, annotator))]
            if len(others):
                st.session_state[PENDING] = {
                    "ids": list(ids),
                    "action": action,
                    "label": label,
                    "where": where,
                    "others": others[["sample_id", "action", "final_label", "annotator", "decided_at"]].to_dict(
                        "records"
                    ),
                }
                return
        decide(ledger, run, ids, action, annotator=annotator, label=label)
    except OgauditError as error:
        flash("error", md(readable(error)), where)
    else:
        what = f"{action} → {label}" if label else action
        shown = md(", ".join(ids[:3])) + (" …" if len(ids) > 3 else "")
        flash("success", f"{md(what)}: {len(ids)} sample(s) ({shown})", where)
        if after is not None:
            after()


def pending_override(ledger: Ledger, run: Run, annotator: str | None, where: str, ids: list[str] | None = None) -> bool:
    """If a decision in panel ``where`` (on ``ids``, when given) waits because it would override someone else's,
    ask: who decided what and when, then Override / Cancel. Returns whether it asked."""
    pending = st.session_state.get(PENDING)
    if not pending or pending["where"] != where or (ids is not None and pending["ids"] != ids) or not annotator:
        return False
    lines = [
        f"{code(o['sample_id'])}: **{md(o['annotator'])}** decided {decision_text(o)} ({when(o['decided_at'])})"
        for o in pending["others"][:5]
    ]
    more = len(pending["others"]) - 5
    what = f"{pending['action']} → {pending['label']}" if pending["label"] else pending["action"]
    with st.container(border=True, key=f"override-{where}"):
        st.warning(
            f"Your **{md(what)}** would override another annotator's decision on {len(pending['others'])} of "
            f"{len(pending['ids'])} sample(s):  \n"
            + "  \n".join(lines)
            + (f"  \n… and {more} more" if more > 0 else "")
        )
        yes, no = st.columns(2)
        yes.button(
            "Override",
            key=f"override-yes-{where}",
            type="primary",
            on_click=on_decide,
            kwargs={
                "ledger": ledger,
                "run": run,
                "ids": pending["ids"],
                "action": pending["action"],
                "annotator": annotator,
                "label": pending["label"],
                "where": where,
                "force": True,
            },
        )
        no.button("Cancel", key=f"override-no-{where}", on_click=lambda: st.session_state.pop(PENDING, None))
    return True


def decision_text(decision: Mapping) -> str:
    """ "**relabel → 3**", "**keep**": a current decision's action and, when it sets one, its new label."""
    action = decision["action"]
    label = decision.get("final_label")
    return f"**{action} → {md(label)}**" if action in ("confirm", "relabel") and label else f"**{action}**"


def when(stamp: object) -> str:
    """An ISO time stamp as "2026-11-30 15:20 UTC"."""
    text = str(stamp or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 else md(text)


def sample_caption(row: Mapping, decision: Mapping | None) -> str:
    """Markdown lines under a thumbnail: id, labels, score, current decision with who and when (``row``: a run
    table row; ``decision``: the sample's row of the ledger's state, or None)."""
    labels = (
        f"given **{md(row['given_label'])}** · suggested **{md(row['suggested_label'])}** · predicted "
        f"{md(row['predicted_label'])}"
    )
    if decision:
        state = f"{decision_text(decision)} by {md(decision['annotator'])}, {when(decision['decided_at'])}"
    else:
        state = "undecided"
    if row.get("rare_class") is True:
        state += " · rare class: flagged perhaps for being rare, not wrong"
    return f"{code(row['sample_id'])} (rank {row['rank']})  \n{labels}  \nscore {row['score']:.3g} · {state}"


def sample_image(dataset: Dataset | None, run: Run, sample_id: str, size: int, *, place: str = "card") -> None:
    """The sample's picture (its text for text data), or a note when the data are vectors or could not be loaded.
    ``place`` names where on the page it is drawn (a text card's widget key: one sample may be in two places)."""
    if dataset is not None and dataset.is_text:
        from ogaudit.ui.textcards import text_card

        text_card(dataset, run.position[sample_id], place=place)
        return
    image = None if dataset is None else thumbnail(dataset, run.position[sample_id], size)
    if image is None:
        st.caption("(no image)")
    else:
        st.image(image, width=size)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
