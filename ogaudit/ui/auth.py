"""Sign-in on the page: who is using this browser tab, and in which role.

The rules are in :mod:`ogaudit.server.auth`; this module only draws the form and keeps the :class:`~ogaudit.server.auth.Session`
in the tab's session state. Sign-in is required when the server is not local-only: when it listens on anything
but a loopback address (``streamlit run`` without ``--server.address`` listens on every interface), when
``$OGAUDIT_HOME/users.json`` lists users, or when ``OGAUDIT_AUTH=on`` (behind a reverse proxy on the same host).
A local-only server without users runs as one trusted person, as before: the name recorded on decisions is asked
once and kept in the URL.

A sign-in survives a refresh: the server sets a signed, expiring session token (:mod:`ogaudit.server.tokens`) as an
``HttpOnly`` cookie through its own endpoint (:mod:`ogaudit.ui.guard`), and a new tab of that browser with no session
yet is signed in from it. Signing out ends the token on the server and clears the cookie.

Every run also tells :class:`~ogaudit.server.state.UploadGate` whether this tab's Streamlit session may upload files
and be served media: a signed-in session until it expires (uploads for roles that may upload), the person of a
local-only server, and nobody signed out.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ogaudit.errors import OgauditError
from ogaudit.server.auth import (
    SESSION_HOURS,
    AuthError,
    Session,
    User,
    UserStore,
    can,
    client_key,
    current_user,
    sign_in,
)
from ogaudit.server.state import server_state
from ogaudit.server.tokens import TOKEN_COOKIE, SessionTokens
from ogaudit.ui import guard
from ogaudit.ui.guard import SESSION_PATH, SIGN_OUT_PATH, endpoint
from ogaudit.ui.text import md

_LOG = logging.getLogger("ogaudit.auth")

SESSION_KEY = "ogaudit-session"
TOKEN_KEY = "ogaudit-session-token"
HANDOFF_KEY = "ogaudit-session-handoff"
FORGET_COOKIE = "ogaudit-forget-cookie"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Visitor:
    """Who uses this tab: ``name`` (recorded on decisions; None until given in local mode) and ``role``."""

    name: str | None
    role: str
    signed_in: bool

    def can(self, action: str) -> bool:
        return can(self.role, action)


def listen_address() -> str | None:
    """The address the server listens on (None: every interface)."""
    return st.get_option("server.address")


def sign_in_required(store: UserStore) -> bool:
    local = listen_address() in LOOPBACK
    return not local or store.exists() or os.environ.get("OGAUDIT_AUTH", "").lower() in ("on", "1", "true")


def _session_id() -> str | None:
    """Streamlit's id of this tab's session (what its upload URLs carry), or None outside a script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def _grant(until: float | None, *, upload: bool = False, local: bool = False) -> None:
    """Let this tab's session upload / be served its media until ``until``, or (None) nothing."""
    session_id = _session_id()
    if session_id is None:
        return
    if until is None:
        server_state().uploads.revoke(session_id)
        return
    browser = guard.browser_key((getattr(st.context, "cookies", None) or {}).get(guard.XSRF_COOKIE))
    server_state().uploads.grant(session_id, until, upload=upload, browser=browser, local=local)


def _client() -> str:
    """The limiter's key for this tab's client (:func:`~ogaudit.server.auth.client_key`)."""
    return client_key(getattr(st.context, "ip_address", None))


def visitor(home: Path) -> Visitor | None:
    """The tab's visitor, or None while a required sign-in has not succeeded (the sign-in form is drawn; the
    caller draws nothing else).

    The page then ends as a normal run, not with ``st.stop()``: Streamlit discards the widget state a run did not
    use only when the run finishes, so a stopped sign-in page kept whatever widget values a signed-out client sent
    (an attack run: about 32 MB per message, until the session timed out)."""
    store = UserStore.in_home(home)
    if not sign_in_required(store):
        _grant(time.time() + SESSION_HOURS * 3600, upload=True, local=True)
        return Visitor(_local_name(), "admin", signed_in=False)
    if not store.list():
        _grant(None)
        st.error(
            "This server is reachable from other machines, so everyone must sign in, but it has no users yet. "
            "On the server, run `ogaudit users add NAME --role admin` (and `--role annotator` for reviewers), or "
            "serve on 127.0.0.1 only (see the README, *Serving a review team*)."
        )
        return None
    session = st.session_state.get(SESSION_KEY) or _session_from_cookie(home, store)
    token = st.session_state.get(TOKEN_KEY)
    if session is not None and token and SessionTokens(home).verify(token, store, _client()) is None:
        session = None  # its token was signed out (another tab of this browser), or its password changed
        st.session_state[FORGET_COOKIE] = True
    user = current_user(store, session, _client())
    if user is None:
        _grant(None)
        st.session_state.pop(SESSION_KEY, None)
        st.session_state.pop(TOKEN_KEY, None)
        _run_script(endpoint(SIGN_OUT_PATH), "") if st.session_state.pop(FORGET_COOKIE, False) else None
        _sign_in_form(home, store)
        return None
    st.session_state[SESSION_KEY] = session
    _grant(session.expires_at, upload=can(user.role, "upload"))
    code = st.session_state.pop(HANDOFF_KEY, None)
    if code:  # the first page after signing in: the server sets the session cookie for the next refresh
        _run_script(endpoint(SESSION_PATH), code)
    with st.sidebar:  # the button on its own line: beside the name it was cut to "Si…"
        st.markdown(f"Signed in as **{md(user.name)}** ({user.role})")
        st.button("Sign out", key="sign-out", on_click=_sign_out, args=(home,))
    return Visitor(user.name, user.role, signed_in=True)


def still_allowed(home: Path, action: str, session: Session | None, token: str | None, client: str | None) -> bool:
    """Whether the tab that drew a button (its ``session``, ``token`` and ``client`` as they were then) may still do
    ``action`` now, read from the user store: not when the user was removed, demoted below ``action``, given a new
    password, or signed out (the token revoked). A local-only server without sign-in: always (its one person)."""
    store = UserStore.in_home(home)
    if not sign_in_required(store):
        return True
    user = current_user(store, session, client)
    if user is None or not can(user.role, action):
        return False
    return not token or SessionTokens(home).verify(token, store, client) is not None


def made_when_clicked(action: str, make):
    """``make`` (a download's data, ``st.download_button(data=...)``) wrapped to run only while the user who drew
    the button may still do ``action`` (:func:`still_allowed`); else it raises :class:`AuthError` and nothing is
    built, so the download fails. A download made on click runs outside any page run, so the page's own check (a
    removed user is signed out on their next run) never comes before it."""
    from ogaudit.project import workspace_root

    home, client = workspace_root(), _client()
    session, token = st.session_state.get(SESSION_KEY), st.session_state.get(TOKEN_KEY)

    def made():
        if not still_allowed(home, action, session, token, client):
            _LOG.warning("refused a download (%s): the sign-in that drew it has ended", action)
            raise AuthError("Your sign-in has ended: nothing was made. Sign in again.")
        return make()

    return made


def acting_visitor(home: Path) -> Visitor | None:
    """Who is clicking, read again from the user store when a callback runs (it runs before the page, so a user
    removed, demoted or signed out meanwhile changes nothing): None for a signed-out tab. A local-only server
    without sign-in runs as its one trusted person."""
    store = UserStore.in_home(home)
    if not sign_in_required(store):
        return Visitor(_clean(st.query_params.get("annotator", "")) or None, "admin", signed_in=False)
    user = current_user(store, st.session_state.get(SESSION_KEY), _client())
    token = st.session_state.get(TOKEN_KEY)  # signed out in another tab of this browser: its token was revoked
    if user is not None and token and SessionTokens(home).verify(token, store, _client()) is None:
        return None
    return None if user is None else Visitor(user.name, user.role, signed_in=True)


def allowed(action: str) -> str | None:
    """The name of who clicks if they may still do ``action`` now (:func:`acting_visitor`), else None; for button
    callbacks, which run before the page with the name and role the page had when it drew the button."""
    from ogaudit.project import workspace_root

    who = acting_visitor(workspace_root())
    if who is None or (who.signed_in and not can(who.role, action)):
        return None
    return who.name


def _session_from_cookie(home: Path, store: UserStore) -> Session | None:
    """The session that this browser's session cookie stands for (:mod:`ogaudit.server.tokens`), or None."""
    token = (getattr(st.context, "cookies", None) or {}).get(TOKEN_COOKIE)
    if not token:
        return None
    session = SessionTokens(home).verify(token, store, _client())
    if session is None:
        st.session_state[FORGET_COOKIE] = True  # expired, revoked or foreign: the browser forgets it
        return None
    st.session_state[TOKEN_KEY] = token
    return session


def _run_script(url: str, body: str) -> None:
    """POST ``body`` to ogaudit's endpoint ``url`` from the page (same origin, cookies included): the only way
    to have the server set or clear an ``HttpOnly`` cookie. ``body`` is a one-use code, never the token."""
    st.sidebar.html(  # in the sidebar: an element that comes and goes above the tabs would reset the open tab
        f"<script>fetch({json.dumps(url)}, {{method: 'POST', body: {json.dumps(body)}, credentials: 'same-origin', "
        "cache: 'no-store'})</script>",
        unsafe_allow_javascript=True,
        width="content",
    )


def _sign_out(home: Path) -> None:
    st.session_state.pop(SESSION_KEY, None)
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        try:
            SessionTokens(home).revoke(token)
        except OgauditError:
            _LOG.exception("could not record a sign-out")
    st.session_state[FORGET_COOKIE] = True
    _grant(None)


def _sign_in_form(home: Path, store: UserStore) -> None:
    st.title("ogaudit")
    with st.form("sign-in"):
        st.subheader("Sign in")
        name = st.text_input("User name", key="sign-in-name", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign-in-password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            session = sign_in(store, server_state().limiter, name.strip(), password, client=_client())
        except AuthError as error:
            st.error(str(error))
        except Exception:  # noqa: BLE001 - never a stack trace on the sign-in page; the log keeps it for the admin
            _LOG.exception("sign-in failed unexpectedly")
            st.error("Sign-in failed. Try again; if it keeps failing, tell the server's admin.")
        else:
            st.session_state[SESSION_KEY] = session
            try:
                token = SessionTokens(home).issue(session, store)
            except OgauditError:  # no key file can be made: signed in for this tab only
                _LOG.exception("could not issue a session token")
            else:
                st.session_state[TOKEN_KEY] = token
                browser = guard.browser_key((getattr(st.context, "cookies", None) or {}).get(guard.XSRF_COOKIE))
                st.session_state[HANDOFF_KEY] = server_state().handoffs.put(token, session.expires_at, browser)
            st.rerun()


def _local_name() -> str | None:
    """Local mode: the reviewer's name, asked once and kept in the URL (``?annotator=``)."""
    name = _clean(st.query_params.get("annotator", ""))
    with st.sidebar:
        if name:
            left, right = st.columns([3, 1], vertical_alignment="center")
            left.markdown(f"Reviewing as **{md(name)}**")
            if right.button("✎", key="change-annotator", help="Change the name recorded on decisions"):
                del st.query_params["annotator"]
                st.rerun()
            return name
        with st.form("annotator-form", border=False):
            typed = st.text_input("Your name (recorded on every decision)", key="annotator-input")
            if st.form_submit_button("Start reviewing") and _clean(typed):
                st.query_params["annotator"] = _clean(typed)
                st.rerun()
    return None


def _clean(name: str) -> str:
    """A name as typed, without control characters, at most 64 characters (shown escaped, stored as is)."""
    return "".join(ch for ch in str(name) if ch.isprintable()).strip()[:64]


__all__ = ["User", "Visitor", "acting_visitor", "allowed", "visitor"]
