"""A review team in headless chromium: an admin assigns the flagged samples to two annotators with overlap 2, each
reviews their own queue and they disagree, a reviewer settles it, and the export carries the settlement; a note and
a tag written on a card come out in the decisions CSV.

Screenshots go to the test's tmp folder, or to ``$OGAUDIT_SCREENSHOTS`` (the README's).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from appserver import NEEDS_CHROMIUM, READY, choose_option, launched_chromium, start_app, stop_app
from test_browser_auth import PASSWORD, sign_in

from ogaudit.project import Project
from ogaudit.review.decisions import decisions_csv_bytes
from ogaudit.server.auth import UserStore

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture
def team(tmp_path, cache_dir, finished_project):
    home = tmp_path / "home"
    shutil.copytree(finished_project[0], home / "digits")
    store = UserStore.in_home(home)
    for name, role in (("lead", "admin"), ("ana", "annotator"), ("ben", "annotator"), ("rita", "reviewer")):
        store.add(name, PASSWORD, role)
    env = {**os.environ, "OGAUDIT_HOME": str(home), "OGAUDIT_CACHE": str(cache_dir), "OGAUDIT_AUTH": "on"}
    process, url = start_app(env, tmp_path / "streamlit.log")
    yield url, home / "digits"
    stop_app(process)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def signed_in(browser, url: str, name: str):
    page = sign_in(browser, url, name)
    page.get_by_text("Signed in as").wait_for()
    page.wait_for_selector(READY)
    return page


def decisions_csv(page) -> list[dict]:
    """The Export tab's decisions CSV as rows. A live page rerun (another user's write) that lands during the click
    cancels the download; then it is clicked again."""
    page.get_by_role("tab", name="Export").click()
    for attempt in range(3):
        page.wait_for_selector(READY)
        try:
            with page.expect_download() as download:
                page.get_by_role("button", name=re.compile("Decisions CSV")).click()
            text = Path(download.value.path()).read_text("utf-8")
            return list(csv.DictReader(io.StringIO(text)))
        except Exception:
            if attempt == 2:
                raise
    return []


def first_card_decides(page, button: str):
    """In the review queue (my queue on), the first card's ``button``; returns the sample id."""
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.get_by_text(re.compile(r"My queue: 0 of \d+ decided by me")).wait_for()
    card = page.locator("[class*='st-key-card-']").first
    sample_id = card.locator("code").first.inner_text()
    card.get_by_role("button", name=button, exact=True).click()
    page.get_by_text(f"{button.lower()}: 1 sample(s) ({sample_id})").first.wait_for()
    page.get_by_text(re.compile(r"My queue: 1 of \d+ decided by me")).wait_for()
    return sample_id


def test_assignments_with_overlap_and_a_reviewer_settling_a_disagreement(team, browser, tmp_path):
    url, folder = team
    shots = Path(os.environ.get("OGAUDIT_SCREENSHOTS", tmp_path))
    project = Project(folder)
    flagged = project.flagged_ids()

    lead = signed_in(browser, url, "lead")
    lead.get_by_role("tab", name="Agreement").click()
    names = lead.get_by_label("Annotators (comma-separated)")
    assert names.input_value() == "ana, ben, rita"  # the server's annotators and reviewers, to edit
    names.fill("ana, ben")
    lead.get_by_role("button", name="Assign", exact=True).click()
    lead.get_by_text(re.compile(rf"Assigned {len(flagged)} sample\(s\), 2 annotator\(s\) each")).first.wait_for()
    assigned = project.ledger().assignments()
    assert sorted(assigned.groupby("sample_id")["annotator"].agg(sorted).map(tuple).unique()) == [("ana", "ben")]
    assert set(assigned["sample_id"]) == set(flagged)

    ana = signed_in(browser, url, "ana")
    kept = first_card_decides(ana, "Keep")
    ben = signed_in(browser, url, "ben")
    removed = first_card_decides(ben, "Remove")  # no override prompt: the sample is meant for both
    assert kept == removed == flagged[0]
    assert project.team_status().set_index("sample_id").loc[kept, "status"] == "disputed"

    ben.get_by_role("tab", name="Agreement").click()  # an annotator sees the dispute but may not settle it
    ben.get_by_text("1 disputed sample(s) wait for a reviewer").wait_for()
    assert ben.get_by_role("button", name=re.compile("Settle")).count() == 0
    assert ben.get_by_text("Assign samples to annotators").count() == 0

    rita = signed_in(browser, url, "rita")
    rita.get_by_role("tab", name="Agreement").click()
    dispute = rita.locator(f".st-key-dispute-{kept}")
    dispute.get_by_text("ana").first.wait_for()
    rita.screenshot(path=str(shots / "team.png"), full_page=True)
    dispute.get_by_role("button", name="Settle: keep").click()
    rita.get_by_text(f"Settled {kept} as keep.").first.wait_for()
    state = project.ledger().state().set_index("sample_id")
    assert state.loc[kept, ["action", "annotator", "settled"]].tolist() == ["keep", "rita", True]

    # what every export reads (the browser's download of the CSV is in the next test: here, ben's page is rerun by
    # the live updates of rita's settlement, which under load cancels a download in flight)
    rows = {r["sample_id"]: r for r in csv.DictReader(io.StringIO(decisions_csv_bytes(project.ledger()).decode()))}
    assert (rows[kept]["action"], rows[kept]["status"], rows[kept]["annotator"]) == ("keep", "settled", "rita")
    assert rows[kept]["assigned_to"] == "ana, ben" and rows[flagged[1]]["status"] == "assigned"


def test_a_note_and_a_tag_on_a_card_are_exported(team, browser):
    url, folder = team
    ana = signed_in(browser, url, "ana")
    ana.get_by_role("tab", name=re.compile("Review queue")).click()
    card = ana.locator("[class*='st-key-card-']").first
    sample_id = card.locator("code").first.inner_text()
    box = ana.locator(f".st-key-note-card-{sample_id}")
    box.get_by_text("Note / tags").click()
    box.get_by_label("Note").fill("=looks like a 7 to me")
    box.get_by_role("combobox").click()
    ana.get_by_role("option", name="ambiguous", exact=True).click()
    box.get_by_role("combobox").fill("smudged")
    ana.keyboard.press("Enter")
    ana.keyboard.press("Escape")
    box.get_by_role("button", name="Save note").click()
    ana.get_by_text(f"Saved the note on {sample_id}.").first.wait_for()
    notes = Project(folder).ledger().notes()
    assert notes[["sample_id", "note", "noted_by"]].values.tolist() == [[sample_id, "=looks like a 7 to me", "ana"]]
    assert notes["tags"].tolist() == [["ambiguous", "smudged"]]

    ana.get_by_role("tab", name=re.compile("Review queue")).click()  # the queue filtered by the tag
    tagged = ana.locator(".st-key-team-tags")
    choose_option(ana, tagged.get_by_role("combobox"), "smudged", shown_in=tagged)
    ana.get_by_text("1 in the queue · page 1 of 1").wait_for()
    assert ana.locator("[class*='st-key-card-']").count() == 1
    row = decisions_csv(ana)[0]
    assert (row["sample_id"], row["note"], row["tags"], row["action"]) == (
        sample_id, "'=looks like a 7 to me", "ambiguous, smudged", "",
    )  # fmt: skip
