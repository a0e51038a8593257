"""Issue 26's UX in headless chromium, on one app server: the quick first look replaces the progress page in the tab
that is open (and the full run then replaces it, the open tab kept), the URL names the project only, a digit key
relabels to that digit's class (its button reads the digit once, and keys typed into the keyboard view's
note box decide nothing), and another annotator's decision appears without a click.

Runs in the normal ``pytest`` run; skipped only where ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from appserver import NEEDS_CHROMIUM, READY, launched_chromium, start_app, stop_app, wait_for_job

from ogaudit.project import Project

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
PROJECT = "demo-digits"


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_dir):
    """The app with a demo slow enough to have a first look (300 digits, 5 epochs, PCA map), polling every second."""
    tmp = tmp_path_factory.mktemp("live-browser")
    env = {**os.environ, "OGAUDIT_HOME": str(tmp / "home"), "OGAUDIT_CACHE": str(cache_dir)}
    env |= {"OGAUDIT_DEMO": "digits", "OGAUDIT_DEMO_LIMIT": "300", "OGAUDIT_DEMO_EPOCHS": "5"}
    env |= {"OGAUDIT_DEMO_MAP": "pca", "OGAUDIT_LIVE_S": "1"}
    process, url = start_app(env, tmp / "streamlit.log")
    yield url, tmp / "home"
    stop_app(process)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def new_page(browser, url: str, annotator: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    page.set_default_timeout(300_000)
    page.goto(f"{url}/?annotator={annotator}")
    return page


def params(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def test_the_first_look_appears_in_the_open_tab_then_the_full_run_keeps_the_place(server, browser):
    url, home = server
    page = new_page(browser, url, "ana")  # the first visit starts the demo; this tab is never reloaded
    page.get_by_text("Auditing demo-digits").first.wait_for()
    assert params(page)["project"] == [PROJECT]
    page.get_by_text("quick first look").first.wait_for()  # written by the job: this tab switches by itself
    page.get_by_role("tab", name="Review queue").click()
    page.wait_for_selector(READY)
    assert params(page)["project"] == [PROJECT]  # the status changed (queued, running): the URL did not
    wait_for_job(home / PROJECT, timeout=600)
    page.get_by_text("quick first look").first.wait_for(state="detached", timeout=120_000)
    page.wait_for_selector(READY)
    assert page.get_by_role("tab", name="Review queue").get_attribute("aria-selected") == "true"
    assert params(page) == {"project": [PROJECT], "annotator": ["ana"]}
    page.reload()  # a reload opens the same project
    page.wait_for_selector(READY)
    page.get_by_role("heading", name=PROJECT).wait_for()
    page.close()


def test_a_digit_key_relabels_to_that_digit(server, browser):
    url, home = server
    wait_for_job(home / PROJECT, timeout=600)
    project = Project(home / PROJECT)
    run = project.open_run()
    assert sorted(run.class_names) == [str(d) for d in range(10)]
    page = new_page(browser, url, "dee")
    page.get_by_role("tab", name="Review queue").click()
    page.locator(".st-key-queue-view").get_by_text("One at a time (keyboard)").click()
    shown = page.locator(".st-key-keyboard-sample code").first
    shown.wait_for()
    page.wait_for_selector(READY)
    sample = shown.inner_text()
    given = run.by_id.loc[sample, "given_label"]
    digit = "3" if given != "3" else "7"
    assert page.locator(f".st-key-kb-label-{run.class_names.index(digit)}").inner_text().strip() == digit  # not "3 3"
    # the note box: keys typed into it (keep, remove, unsure, a digit) are text, not review decisions
    box = page.locator(f".st-key-note-keyboard-{sample}")
    box.get_by_text("Note / tags").click()
    box.locator("textarea").press_sequentially(f"kxu {digit} blurry")
    box.get_by_role("button", name="Save note").click()
    page.get_by_text(f"Saved the note on {sample}").first.wait_for()
    page.wait_for_selector(READY)
    assert project.open_ledger().notes().set_index("sample_id").loc[sample, "note"] == f"kxu {digit} blurry"
    assert sample not in set(project.open_ledger().state()["sample_id"])  # typing decided nothing
    assert page.locator(".st-key-keyboard-sample code").first.inner_text() == sample
    page.locator("body").press(digit)
    page.wait_for_function(
        "s => { const c = document.querySelector('.st-key-keyboard-sample code'); return c && c.innerText !== s; }",
        arg=sample,
    )
    state = project.open_ledger().state().set_index("sample_id")
    assert (state.loc[sample, "action"], state.loc[sample, "final_label"]) == ("relabel", digit)
    page.close()


def test_another_annotators_decision_appears_without_a_click(server, browser):
    url, home = server
    wait_for_job(home / PROJECT, timeout=600)
    project = Project(home / PROJECT)
    run = project.open_run()
    page = new_page(browser, url, "ben")
    page.get_by_role("tab", name="Review queue").click()
    page.locator("[class*='st-key-card-']").first.wait_for()
    page.wait_for_selector(READY)
    undecided = set(run.flagged_ids) - set(project.open_ledger().state()["sample_id"])
    sample = next(s for s in run.flagged_ids if s in undecided)
    page.locator("[data-testid='stSidebar']").get_by_text(re.compile(r"Reviewed \d+ of")).first.wait_for()
    before = page.locator("[data-testid='stSidebar']").inner_text()  # the live sidebar fragment has drawn its count
    reviewed = int(re.search(r"Reviewed (\d+) of", before).group(1))
    started = time.monotonic()
    project.open_ledger().decide([sample], "remove", annotator="cy")  # another annotator, in another process
    page.get_by_text(f"Reviewed {reviewed + 1} of").wait_for(timeout=30_000)  # the sidebar's count
    # the per-annotator table fits the sidebar at 1400 px (its eight columns scrolled sideways in a trial)
    grid = page.locator("[data-testid='stSidebar'] [data-testid='stDataFrame'] .dvn-scroller").first
    grid.wait_for()
    widths = grid.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], f"the sidebar's per-annotator table scrolls: {widths}"
    page.get_by_role("tab", name="Review queue").click()
    page.locator(f".st-key-card-{sample}").wait_for(state="detached", timeout=30_000)  # decided: hidden
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"another annotator's decision took {elapsed:.1f} s to appear"
    page.close()


def test_a_download_survives_the_live_rerun_of_another_annotators_decision(server, browser):
    """Each click of the decisions CSV lands while another annotator's decision reruns the page (the polling
    fragment's rerun): every click downloads, at once, and the file holds the decisions made before it."""
    url, home = server
    page = new_page(browser, url, "eve")  # run alone, the first visit starts the demo
    wait_for_job(home / PROJECT, timeout=600)
    project = Project(home / PROJECT)
    run = project.open_run()
    page.reload()
    page.get_by_role("tab", name="Export").click()
    button = page.get_by_role("button", name=re.compile("Decisions CSV"))
    button.wait_for()
    page.wait_for_selector(READY)
    undecided = [s for s in run.table["sample_id"] if s not in set(project.open_ledger().state()["sample_id"])]
    for sample in undecided[:6]:
        project.open_ledger().decide([sample], "remove", annotator="fay")  # another annotator, elsewhere
        with contextlib.suppress(Exception):  # click while the live rerun runs (it starts within a second)
            page.wait_for_selector("[data-testid='stApp'][data-test-script-state='running']", timeout=3_000)
        with page.expect_download(timeout=20_000) as download:
            button.click()
        assert download.value.failure() is None
        rows = csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8")))
        assert {row["sample_id"]: row["action"] for row in rows}.get(sample) == "remove"
    page.close()
