"""Live review: what others decide appears without a click.

Two polling fragments (``st.fragment(run_every=...)``), both reading the ledger's change counter
(:meth:`~ogaudit.review.ledger.Ledger.revision`, a few bytes of a file, no SQLite) every :data:`LIVE_S` seconds:

* :func:`ogaudit.ui.review.live_sidebar` redraws the sidebar's Undo / Redo and review progress, from the ledger's state read again only
  when the counter moved. So the counts and Undo follow the keyboard view (a fragment of its own) and other
  annotators within :data:`LIVE_S` seconds.
* :func:`watch_ledger` reruns the whole page when the counter differs from the one the page last drew
  (:func:`mark_seen`): another annotator's decision then shows on the cards, the map and the queue. A tab's own
  decisions are drawn by the rerun its click causes, so they cause no second rerun.

"Live updates" in the sidebar turns the page reruns off (for someone who wants a still page while lassoing a big map);
the sidebar keeps following.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from ogaudit.review.ledger import Ledger

LIVE_S = float(os.environ.get("OGAUDIT_LIVE_S", "2"))
"""Seconds between two looks at the ledger's change counter (``$OGAUDIT_LIVE_S``, default 2)."""
SEEN = "ogaudit-seen-revision"
LIVE_ON = "live-updates"
_SIDEBAR = "ogaudit-live-sidebar"
FULL_RERUN = "ogaudit-live-full-rerun"


def mark_seen(ledger: Ledger, revision: int) -> None:
    """Note that this tab has drawn the ledger's state as of ``revision`` (read before the state)."""
    st.session_state[SEEN] = (str(ledger.path), revision)


def ask_full_rerun() -> None:
    """From a callback inside a fragment: let the next fragment run rerun the whole page (an undo in the sidebar
    changes the cards and the map too)."""
    st.session_state[FULL_RERUN] = True


def current_state(ledger: Ledger, revision: int) -> pd.DataFrame:
    """The ledger's state as of ``revision``, read once per revision per tab."""
    cached = st.session_state.get(_SIDEBAR)
    key = (str(ledger.path), revision)
    if cached is not None and cached[0] == key:
        return cached[1]
    decisions = ledger.state()
    st.session_state[_SIDEBAR] = (key, decisions)
    return decisions


@st.fragment(run_every=LIVE_S)
def watch_ledger(ledger: Ledger) -> None:
    """Rerun the page when the ledger changed since this tab last drew it (draws nothing)."""
    if not st.session_state.get(LIVE_ON, True):
        return
    seen = st.session_state.get(SEEN)
    if seen is None or seen[0] != str(ledger.path):
        return
    if ledger.revision() != seen[1]:
        st.rerun()
