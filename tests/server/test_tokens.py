"""Session tokens: a sign-in that survives a refresh, and every way one is refused."""

from __future__ import annotations

import time

import pytest

from ogaudit.server.auth import Session, User, UserStore
from ogaudit.server.tokens import Handoffs, SessionTokens


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = UserStore.in_home(tmp_path_factory.mktemp("home"))
    store.add("ana", "password-ana", "annotator")
    return store


def _session(hours: float = 1.0, client: str = "loopback") -> Session:
    return Session(User("ana", "annotator"), time.time() + hours * 3600, client)


def test_a_token_stands_for_its_session_until_it_expires(store):
    tokens = SessionTokens(store.path.parent)
    token = tokens.issue(_session(), store)
    back = tokens.verify(token, store, "loopback")
    assert back is not None and back.user == User("ana", "annotator") and back.client == "loopback"
    assert tokens.key_path.stat().st_mode & 0o777 == 0o600
    assert tokens.verify(tokens.issue(_session(hours=-0.01), store), store, "loopback") is None


def test_a_forged_tampered_foreign_or_oversized_token_is_refused(store, tmp_path):
    tokens = SessionTokens(store.path.parent)
    token = tokens.issue(_session(), store)
    version, body, signature = token.split(".")
    for bad in (
        f"{version}.{body}.{signature[:-2]}AA",
        f"{version}.{body[:-2]}xx.{signature}",
        "v2." + token[3:],
        "x" * 5000,
        None,
        "",
        "a.b",
    ):
        assert tokens.verify(bad, store, "loopback") is None
    other = SessionTokens(tmp_path)  # another server's key
    assert other.verify(token, store, "loopback") is None
    assert tokens.verify(token, store, "10.0.0.9") is None  # from another client


def test_removing_the_user_a_new_password_or_signing_out_ends_the_token(tmp_path):
    store = UserStore.in_home(tmp_path)
    store.add("ana", "password-ana", "annotator")
    tokens = SessionTokens(tmp_path)
    token = tokens.issue(_session(), store)
    store.add("ana", "password-new", "annotator", replace=True)
    assert tokens.verify(token, store) is None
    token = tokens.issue(_session(), store)
    assert tokens.revoke(token) and tokens.verify(token, store) is None
    assert SessionTokens(tmp_path).verify(token, store) is None  # kept on disk: a restart does not undo it
    token = tokens.issue(_session(), store)
    store.remove("ana")
    assert tokens.verify(token, store) is None


def test_a_handoff_code_is_used_once_by_its_own_browser():
    handoffs = Handoffs(ttl_s=60)
    code = handoffs.put("tok", 123.0, "browser-a")
    assert handoffs.take(code, "browser-b") is None
    assert handoffs.take(code, "browser-a") == ("tok", 123.0)
    assert handoffs.take(code, "browser-a") is None
    expired = Handoffs(ttl_s=0).put("tok", 1.0, None)
    assert Handoffs(ttl_s=0).take(expired, None) is None


def test_a_tab_session_ends_with_a_new_password_as_its_token_does(tmp_path):
    from ogaudit.server.auth import LoginLimiter, current_user, sign_in

    store = UserStore.in_home(tmp_path)
    store.add("ana", "password-ana", "annotator")
    session = sign_in(store, LoginLimiter(), "ana", "password-ana", client="loopback")
    assert current_user(store, session, "loopback") == User("ana", "annotator")
    from_token = SessionTokens(tmp_path).verify(SessionTokens(tmp_path).issue(session, store), store, "loopback")
    assert current_user(store, from_token, "loopback") == User("ana", "annotator")
    store.add("ana", "password-new", "annotator", replace=True)
    assert current_user(store, session, "loopback") is None and current_user(store, from_token, "loopback") is None


@pytest.mark.parametrize(
    "damage",
    [b"{not json", b"\xff\xfe", b'["a list"]', b'{"id": "not a time"}', b"{}" + b" " * (4 * 1024 * 1024)],
    ids=["truncated", "not-utf8", "a-list", "a-text-expiry", "over-4MB"],
)
def test_a_damaged_revocation_list_fails_closed_and_the_next_sign_in_heals_it(tmp_path, damage):
    """A signed-out cookie must stay refused when ``.revoked-sessions`` is damaged: reading it as empty would
    forget every sign-out (it did: the signed-out cookie was accepted again)."""
    store = UserStore.in_home(tmp_path)
    store.add("ana", "password-ana", "annotator")
    tokens = SessionTokens(tmp_path)
    signed_out, other = tokens.issue(_session(), store), tokens.issue(_session(), store)
    assert tokens.revoke(signed_out) and tokens.verify(signed_out, store) is None
    assert tokens.verify(other, store) is not None  # the control: a token not signed out is accepted
    tokens.revoked_path.write_bytes(damage)
    assert tokens.verify(signed_out, store) is None
    assert tokens.verify(other, store) is None  # which tokens were signed out is unknown: none is accepted
    fresh = tokens.issue(_session(), store)  # a new sign-in: a new key and an empty list
    assert tokens.verify(fresh, store) is not None
    assert tokens.verify(signed_out, store) is None and tokens.verify(other, store) is None
    assert tokens.key_path.stat().st_mode & 0o777 == 0o600 and tokens.revoked_path.stat().st_mode & 0o777 == 0o600
    assert tokens.revoke(fresh) and tokens.verify(fresh, store) is None  # the healed list keeps sign-outs again


def test_a_sign_out_with_a_damaged_list_ends_every_token(tmp_path):
    store = UserStore.in_home(tmp_path)
    store.add("ana", "password-ana", "annotator")
    tokens = SessionTokens(tmp_path)
    first, second = tokens.issue(_session(), store), tokens.issue(_session(), store)
    tokens.revoked_path.write_text("{damaged", encoding="utf-8")
    assert tokens.revoke(first)
    assert tokens.verify(first, store) is None and tokens.verify(second, store) is None
    assert tokens.verify(tokens.issue(_session(), store), store) is not None
