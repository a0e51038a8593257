"""The team server in headless chromium: signed-out visitors see only the sign-in; an annotator reviews but
cannot reach *New audit* or the cleaned split; an admin can; each decision carries the signed-in user's name."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from appserver import NEEDS_CHROMIUM, READY, start_app, stop_app

from ogaudit.project import Project
from ogaudit.server.auth import UserStore

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
PASSWORD = "correct horse"


@pytest.fixture
def team_server(tmp_path, cache_dir, finished_project):
    home = tmp_path / "home"
    shutil.copytree(finished_project[0], home / "digits")
    store = UserStore.in_home(home)
    store.add("ann", PASSWORD, "annotator")
    store.add("root", PASSWORD, "admin")
    env = {**os.environ, "OGAUDIT_HOME": str(home), "OGAUDIT_CACHE": str(cache_dir), "OGAUDIT_AUTH": "on"}
    process, url = start_app(env, tmp_path / "streamlit.log")
    yield url, home
    stop_app(process)


def sign_in(browser, url: str, name: str, password: str = PASSWORD, query: str = ""):
    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{url}/{query}")
    page.wait_for_selector(READY)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_sign_in_and_roles_in_a_real_browser(team_server, browser):
    url, home = team_server
    visitor = browser.new_context().new_page()
    visitor.goto(f"{url}/?project=digits&annotator=mallory")
    visitor.wait_for_selector(READY)
    visitor.get_by_role("button", name="Sign in").wait_for()
    body = visitor.inner_text("body")
    assert "Gradient map" not in body and "New audit" not in body and "digits" not in body

    wrong = sign_in(browser, url, "root", "not the password")
    wrong.get_by_text("Wrong user name or password.").wait_for()

    ann = sign_in(browser, url, "ann", query="?annotator=mallory")
    ann.get_by_text("Signed in as").wait_for()
    assert "ann (annotator)" in ann.inner_text("[data-testid='stSidebar']")
    assert ann.get_by_text("New audit").count() == 0
    ann.get_by_role("tab", name=re.compile("Review queue")).click()
    card = ann.locator("[class*='st-key-card-']").first
    sample_id = card.locator("code").first.inner_text()
    card.get_by_role("button", name="Keep", exact=True).click()
    ann.get_by_text(f"keep: 1 sample(s) ({sample_id})").first.wait_for()  # the message and its toast
    ann.get_by_role("tab", name="Export").click()
    ann.get_by_text("The cleaned split and the retrain check are for admins").wait_for()
    assert ann.get_by_role("button", name="Write the cleaned split").count() == 0
    state = Project(home / "digits").open_ledger().state()
    assert state[["sample_id", "annotator"]].values.tolist() == [[sample_id, "ann"]]

    ann.reload()  # a refresh keeps the sign-in: a signed session token in an HttpOnly cookie
    ann.wait_for_selector(READY)
    ann.get_by_text("Signed in as").wait_for()
    cookie = next(c for c in ann.context.cookies() if c["name"] == "ogaudit_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "ogaudit_session" not in ann.evaluate("document.cookie")  # no page script can read it
    assert cookie["value"] not in ann.url and cookie["value"] not in (home.parent / "streamlit.log").read_text()
    other = browser.new_context()  # the cookie copied into another browser: its handoff and client are not there,
    other.add_cookies([cookie])  # but the client is the same loopback here, so only the sign-out below ends it
    ann.get_by_role("button", name="Sign out").click()
    ann.get_by_role("button", name="Sign in").wait_for()
    ann.reload()
    ann.wait_for_selector(READY)
    ann.get_by_role("button", name="Sign in").wait_for()  # signed out stays signed out
    stolen = other.new_page()
    stolen.goto(url)
    stolen.wait_for_selector(READY)
    stolen.get_by_role("button", name="Sign in").wait_for()  # a signed-out token opens nothing

    admin = sign_in(browser, url, "root")
    admin.get_by_text("Signed in as").wait_for()
    admin.get_by_text("New audit").first.wait_for()  # the sidebar is drawn top down: the name comes first
    assert admin.get_by_text("New audit").count() == 1
    admin.get_by_role("tab", name="Export").click()
    admin.get_by_role("button", name="Write the cleaned split").wait_for()
    shutil.rmtree(home / "digits" / "exports", ignore_errors=True)


def test_a_failed_project_is_deleted_by_an_admin_and_not_by_an_annotator(team_server, browser, tmp_path):
    from ogaudit.server.jobs import JobRegistry, submit_audit
    from ogaudit.settings import AuditSettings

    url, home = team_server
    settings = AuditSettings(epochs=1, map_method="pca")
    job = submit_audit(JobRegistry(), home / "broken", str(tmp_path / "missing.npz"), settings, by="root")
    assert job.wait(60).status == "failed"
    delete = re.compile("Delete this project")
    ann = sign_in(browser, url, "ann", query="?project=broken")
    ann.get_by_text("failed during the").first.wait_for()
    alert = ann.locator("[data-testid='stAlert']").filter(has_text="failed during the").first.inner_text()
    assert re.search(r"The audit of …/[^/\s]+/missing\.npz failed during the load stage", alert)
    assert str(tmp_path) not in alert  # no server path
    ann.wait_for_selector(READY)
    assert ann.get_by_role("button", name=delete).count() == 0  # neither an admin nor the one who started it
    admin = sign_in(browser, url, "root", query="?project=broken")
    admin.get_by_role("button", name=delete).click()
    admin.get_by_role("button", name="Yes, delete").click()
    admin.get_by_text("Deleted the project broken.").first.wait_for()
    assert not (home / "broken").exists() and (home / "digits").is_dir()
    admin.wait_for_selector(READY)
    assert "broken" not in admin.inner_text("[data-testid='stSidebar']")
