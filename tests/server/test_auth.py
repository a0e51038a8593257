"""A server shared by a team: users and roles, sign-in with rate limits, sandboxed paths and project names, and
visitors' strings shown as text. The browser half is in tests/ui/test_browser.py."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ogaudit.cli import main
from ogaudit.errors import DataError, SettingsError
from ogaudit.project import Project
from ogaudit.server.auth import AuthError, LoginLimiter, UserStore, can, may_delete_project, sign_in
from ogaudit.server.sandbox import check_project_name, resolve_server_path
from ogaudit.server.tokens import SessionTokens
from ogaudit.ui.text import code, md

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PASSWORD = "correct horse"


# ---------------------------------------------------------------- users, roles, sign-in


def test_users_file_keeps_salted_hashes_readable_by_the_server_only(tmp_path):
    store = UserStore.in_home(tmp_path)
    store.add("ann", PASSWORD, "annotator")
    store.add("bob", PASSWORD, "admin")
    text = store.path.read_text()
    assert PASSWORD not in text and text.count("$2b$12$") == 2  # bcrypt, cost 12, one salt each
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [(u.name, u.role) for u in store.list()] == [("ann", "annotator"), ("bob", "admin")]
    assert store.verify("ann", PASSWORD).role == "annotator"
    assert store.verify("ann", "wrong password") is None and store.verify("nobody", PASSWORD) is None
    with pytest.raises(SettingsError, match="exists already"):
        store.add("ann", PASSWORD, "admin")
    with pytest.raises(SettingsError, match="at least 8"):
        store.add("cy", "short", "admin")
    with pytest.raises(SettingsError, match="role 'owner'"):
        store.add("cy", PASSWORD, "owner")
    with pytest.raises(SettingsError, match="not allowed"):
        store.add("../cy", PASSWORD, "admin")
    store.remove("ann")
    assert store.verify("ann", PASSWORD) is None


def test_roles_decide_what_each_may_do():
    assert can("admin", "export-split") and can("admin", "audit") and can("admin", "review")
    assert can("annotator", "review") and can("annotator", "export-decisions")
    assert not can("annotator", "audit") and not can("annotator", "export-split") and not can("annotator", "upload")
    assert not can(None, "review")
    assert may_delete_project("root", "admin", "ana") and may_delete_project("ana", "reviewer", "ana")
    assert not may_delete_project("ben", "annotator", "ana") and not may_delete_project("ana", None, "ana")
    assert not may_delete_project(None, "annotator", None) and not may_delete_project("", "annotator", "")


def test_failed_sign_ins_are_rate_limited_per_name_and_per_client(tmp_path):
    store = UserStore.in_home(tmp_path)
    store.add("ann", PASSWORD, "annotator")
    limiter = LoginLimiter(max_failures=3, window_s=60)
    for _ in range(3):
        with pytest.raises(AuthError, match="Wrong user name or password"):
            sign_in(store, limiter, "ann", "guess", client="10.0.0.9")
    with pytest.raises(AuthError, match="Too many failed sign-ins"):
        sign_in(store, limiter, "ann", PASSWORD, client="10.0.0.8")  # the right password, but the name is locked
    with pytest.raises(AuthError, match="Too many failed sign-ins"):
        sign_in(store, limiter, "bob", "x", client="10.0.0.9")  # another name from the same client
    fresh = LoginLimiter(max_failures=3, window_s=0.01)
    session = sign_in(store, fresh, "ann", PASSWORD, client="c")
    assert session.user.name == "ann" and not session.expired


def test_users_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "ann", "--role", "annotator", "--password-stdin", "--home", str(tmp_path)]) == 0
    assert main(["users", "list", "--home", str(tmp_path)]) == 0
    assert "ann\tannotator" in capsys.readouterr().out
    assert main(["users", "remove", "ann", "--home", str(tmp_path)]) == 0
    assert main(["users", "remove", "ann", "--home", str(tmp_path)]) == 2
    assert "there is no user 'ann'" in capsys.readouterr().err


# ---------------------------------------------------------------- paths and names


def test_server_paths_stay_inside_the_data_roots(tmp_path):
    root = tmp_path / "data"
    (root / "set").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (root / "link").symlink_to(secret)
    assert resolve_server_path("set", [root]) == root / "set"
    assert resolve_server_path(str(root / "set"), [root]) == root / "set"
    for bad in ["../secret", str(secret), "link", "/etc", "set/../../secret", "missing"]:
        with pytest.raises(DataError, match="not an existing path inside the data folders") as refused:
            resolve_server_path(bad, [root])
        assert "OGAUDIT_DATA_ROOTS" in str(refused.value)
    with pytest.raises(DataError, match="does not open server paths"):
        resolve_server_path("set", [])


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "..", ".hidden", "a\\b", "", "x" * 61, "~root"])
def test_project_names_cannot_be_paths(name):
    with pytest.raises(DataError, match="is not such a name"):
        check_project_name(name)


def test_visitor_strings_are_shown_as_text():
    assert md("[x](http://evil)") == r"\[x\]\(http\://evil\)"
    assert md("![](http://e/p.png)").startswith("\\!\\[\\]")
    assert md(":red[alert]") == "\\:red\\[alert\\]"
    assert code("a`b") == "`` a`b ``" and code("plain") == "`plain`"


# ---------------------------------------------------------------- the app


@pytest.fixture
def finished(finished_project):
    return finished_project[0]


@pytest.fixture
def team(tmp_path, monkeypatch, finished, cache_dir):
    """A workspace with a finished project and two users, served to the network (sign-in required)."""
    home = tmp_path / "home"
    shutil.copytree(finished, home / "digits")
    store = UserStore.in_home(home)
    store.add("ann", PASSWORD, "annotator")
    store.add("root", PASSWORD, "admin")
    monkeypatch.setenv("OGAUDIT_HOME", str(home))
    monkeypatch.setenv("OGAUDIT_CACHE", str(cache_dir))
    monkeypatch.setattr("ogaudit.ui.auth.listen_address", lambda: "0.0.0.0")
    st.cache_resource.clear()
    return home


def open_app(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def signed_in(name: str, password: str = PASSWORD, **params) -> AppTest:
    at = open_app(**params)
    at.text_input(key="sign-in-name").input(name)
    at.text_input(key="sign-in-password").input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    return at


def test_signed_out_visitors_see_only_the_sign_in(team):
    at = open_app(project="digits", annotator="mallory")
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.get("plotly_chart") and not at.tabs and not at.sidebar.selectbox
    assert not (team / "digits" / "ledger.sqlite").exists()


def test_a_server_open_to_the_network_without_users_serves_nothing(team):
    UserStore.in_home(team).remove("ann")
    UserStore.in_home(team).remove("root")
    at = open_app()
    assert "no users yet" in at.error[0].value and not at.button


def test_an_annotator_reviews_but_cannot_audit_or_export_the_data(team):
    at = signed_in("ann", project="digits", annotator="mallory")
    assert not at.exception and not at.error
    assert "Signed in as **ann** (annotator)" in [m.value for m in at.sidebar.markdown]
    assert not any(e.label == "New audit" for e in at.sidebar.expander)
    assert "write-split" not in [b.key for b in at.button] and "verify" not in [b.key for b in at.button]
    run = Project(team / "digits").open_run()
    at.button(key=f"keep-{run.flagged_ids[0]}").click().run()
    state = Project(team / "digits").open_ledger().state()
    assert state["annotator"].tolist() == ["ann"]  # from the sign-in, not from ?annotator=


def test_an_admin_can_audit_and_export(team):
    at = signed_in("root", project="digits")
    assert not at.exception
    assert any(e.label == "New audit" for e in at.sidebar.expander)
    assert "write-split" in [b.key for b in at.button]


def test_wrong_passwords_are_refused_then_rate_limited(team):
    at = open_app()
    for attempt in range(6):
        at.text_input(key="sign-in-name").input("root")
        at.text_input(key="sign-in-password").input(f"guess-{attempt}")
        next(b for b in at.button if b.label == "Sign in").click().run()
    assert "Too many failed sign-ins" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign in"]


def test_removed_users_are_signed_out_on_their_next_click(team):
    at = signed_in("ann", project="digits")
    assert not at.exception and at.tabs
    UserStore.in_home(team).remove("ann")
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_a_new_password_or_a_sign_out_elsewhere_signs_an_open_tab_out(team):
    """An open tab's sign-in lives in its session, not only in the cookie: a new password (``ogaudit users add
    --replace``: what an admin does after a password leaked) and a sign-out from another tab of the same browser (its
    token revoked) end it on its next click, as they end the cookie. Before, both tabs stayed signed in for 12 h."""
    from ogaudit.ui.auth import TOKEN_KEY

    at = signed_in("ann", project="digits")
    assert not at.exception and at.tabs
    UserStore.in_home(team).add("ann", "a-new-password", "annotator", replace=True)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    other = signed_in("root", project="digits")
    assert not other.exception and other.tabs
    other.run()  # the control: it stays signed in click after click
    assert other.tabs and "Sign in" not in [b.label for b in other.button]
    SessionTokens(team).revoke(other.session_state[TOKEN_KEY])  # what POST /_ogaudit/sign-out does with the cookie
    other.run()
    assert [b.label for b in other.button] == ["Sign in"]


def test_a_click_in_a_tab_whose_sign_in_ended_changes_nothing(team):
    """A button's callback runs before the page checks the sign-in, with the name and role the page had when it
    drew the button. A removed annotator's click on *Keep*, and an admin demoted to annotator clicking *Yes,
    delete* on a project, are refused: each callback reads the signed-in user and role again."""
    at = signed_in("ann", project="digits")
    run = Project(team / "digits").open_run()
    assert at.button(key=f"keep-{run.flagged_ids[0]}")
    UserStore.in_home(team).remove("ann")
    at.button(key=f"keep-{run.flagged_ids[0]}").click().run()
    assert len(Project(team / "digits").open_ledger().state()) == 0
    assert [b.label for b in at.button] == ["Sign in"]
    Project.create(team, "failed")  # a project without a finished audit: an admin may delete it
    admin = signed_in("root", project="failed")
    admin.button(key="delete-failed").click().run()
    assert admin.button(key="delete-yes-failed")
    UserStore.in_home(team).add("root", PASSWORD, "annotator", replace=True)
    admin.button(key="delete-yes-failed").click().run()
    assert (team / "failed").is_dir()


@pytest.mark.parametrize("bad", ["../outside", "/etc", "..", "a/b"])
def test_project_parameter_names_a_project_never_a_path(team, tmp_path, bad):
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    before = sorted(p.name for p in team.iterdir() if not p.name.startswith("."))
    at = signed_in("root", project=bad)
    assert not at.exception
    assert "is not a project name" in at.warning[0].value
    after = sorted(p.name for p in team.iterdir() if not p.name.startswith("."))  # dot files: the session key
    assert not (outside / "ledger.sqlite").exists() and after == before


def test_markdown_in_url_parameters_is_shown_as_text(monkeypatch, tmp_path, finished):
    home = tmp_path / "home"
    shutil.copytree(finished, home / "digits")
    monkeypatch.setenv("OGAUDIT_HOME", str(home))
    st.cache_resource.clear()
    at = open_app(project="[click](http://evil.example)", annotator="![x](http://evil.example/p.png)")
    shown = [m.value for m in at.sidebar.markdown] + [w.value for w in at.warning]
    assert not any("](http" in text and "\\]" not in text for text in shown), shown
    assert any("\\!\\[x\\]" in text for text in shown)
    assert os.listdir(home) == ["digits"]


SPOOFS = {
    "\u202egod": "dog",  # right-to-left override: reads 'dog'
    "d\u200bog": "dog",  # zero-width space
    "cat\u2066\u2069": "cat",  # an empty isolate
    "\u200fcat": "cat",  # right-to-left mark
    "cat\x07": "cat",  # a C0 control (bell)
    "\ufeffcat": "cat",  # a byte-order mark inside a name
}


@pytest.mark.parametrize("name", list(SPOOFS))
def test_invisible_and_direction_characters_in_visitor_strings_are_shown(name):
    """A class name or id from the data may hold characters that draw nothing or reorder what follows (Trojan
    Source, CVE-2021-42574): '\\u202egod' reads 'dog', so two classes look alike and an annotator relabels into the
    wrong one. Every helper that puts a data string on the page shows each such character as a visible ⟨U+XXXX⟩."""
    from ogaudit.ui.figure import hover_data, label_markup
    from ogaudit.ui.text import shown

    marker = f"U+{next(ord(c) for c in name if c not in SPOOFS[name]):04X}"
    labels = hover_data(
        pd.DataFrame(
            {
                "sample_id": ["a"],
                "given_label": [name],
                "predicted_label": ["x"],
                "suggested_label": ["x"],
                "score": [1.0],
            }
        )
    )[0, 1]
    for text in (md(name), code(name), shown(name), str(label_markup([name])[0]), str(labels)):
        assert marker in text.replace("\\", "")
        assert not any(c in text for c in name if c not in SPOOFS[name])
    assert shown("Ünïcödé ok, 日本語, עברית") == "Ünïcödé ok, 日本語, עברית"  # visible text stays as written


def test_class_names_in_the_apps_pickers_go_through_shown():
    """Streamlit shows a selectbox's or multiselect's options as plain text (no markdown), so each picker of
    class names needs ``format_func=shown``."""
    import re as _re

    pickers = 0
    for module in ("review", "mapview"):
        source = (Path(__file__).parents[2] / "ogaudit" / "ui" / f"{module}.py").read_text(encoding="utf-8")
        for call in _re.findall(r"(?:selectbox|multiselect)\((?:[^()]|\([^()]*\))*\)", source):
            if "names" in call.split("format_func")[0].split("key=")[0]:
                pickers += 1
                assert "format_func=shown" in call or "shown(name)" in call, call
    assert pickers == 5


def test_a_download_made_on_click_checks_the_sign_in_when_it_is_made(tmp_path):
    """A download built when clicked (``st.download_button(data=callable)``) runs outside any page run, so the
    page's check never comes first: a removed annotator's open tab made the current decisions CSV (and a removed
    or demoted admin's, the FiftyOne export with every image) on each click. ``still_allowed`` asks the user store
    when the file is made; every download of the Export tab goes through it."""
    from ogaudit.server.auth import LoginLimiter, sign_in
    from ogaudit.server.tokens import SessionTokens
    from ogaudit.ui.auth import still_allowed

    store = UserStore.in_home(tmp_path)
    store.add("ann", PASSWORD, "annotator")
    store.add("root", PASSWORD, "admin")
    limiter = LoginLimiter()
    ann = sign_in(store, limiter, "ann", PASSWORD, client="loopback")
    root = sign_in(store, limiter, "root", PASSWORD, client="loopback")
    assert still_allowed(tmp_path, "export-decisions", ann, None, "loopback")  # the control
    assert not still_allowed(tmp_path, "export-split", ann, None, "loopback")  # not the annotator's
    assert still_allowed(tmp_path, "export-split", root, None, "loopback")
    store.add("root", PASSWORD, "annotator", replace=True)  # demoted (same password)
    root = sign_in(store, limiter, "root", PASSWORD, client="loopback")
    assert not still_allowed(tmp_path, "export-split", root, None, "loopback")
    token = SessionTokens(tmp_path).issue(ann, store)
    assert still_allowed(tmp_path, "export-decisions", ann, token, "loopback")
    SessionTokens(tmp_path).revoke(token)  # signed out in another tab of the browser
    assert not still_allowed(tmp_path, "export-decisions", ann, token, "loopback")
    store.remove("ann")
    assert not still_allowed(tmp_path, "export-decisions", ann, None, "loopback")
    source = (Path(__file__).parents[2] / "ogaudit" / "ui" / "exportview.py").read_text(encoding="utf-8")
    assert source.count("download_button(") == source.count("made_when_clicked(") == 4
