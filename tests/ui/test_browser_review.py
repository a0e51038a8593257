"""The review workbench in headless chromium: 20+ samples reviewed by keyboard alone and found in the ledger after a
reload, the evidence panel on a card, a filter by class and an id search, and the override warning between two
annotators.

Runs in the normal ``pytest`` run; skipped only where ``/usr/bin/chromium`` is missing. Screenshots of the
evidence panel and the keyboard view go to the test's tmp folder, or to ``$OGAUDIT_SCREENSHOTS`` (the README's).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from appserver import (
    NEEDS_CHROMIUM,
    READY,
    choose_option,
    launched_chromium,
    start_app,
    stop_app,
    wait_for_job,
)

from ogaudit.project import Project, list_projects
from ogaudit.review.keys import class_keys

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
KEYS = ["k", "u", "x", "a", "2"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_dir):
    """The app with a fast demo (600 digits, 4 epochs, PCA map); ``OGAUDIT_DEMO*`` already set in the environment
    win (the README's screenshots use the full digits, 15 epochs, UMAP)."""
    tmp = tmp_path_factory.mktemp("review-browser")
    fast_demo = {"OGAUDIT_DEMO": "digits", "OGAUDIT_DEMO_EPOCHS": "4", "OGAUDIT_DEMO_MAP": "pca"}
    fast_demo["OGAUDIT_DEMO_LIMIT"] = "600"
    env = {**fast_demo, **os.environ, "OGAUDIT_HOME": str(tmp / "home"), "OGAUDIT_CACHE": str(cache_dir)}
    process, url = start_app(env, tmp / "streamlit.log")
    yield url, tmp / "home"
    stop_app(process)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def open_page(browser, server, annotator: str):
    """A page on the finished audit (not its quick first look, which a slow demo shows while it runs)."""
    url, home = server
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(90_000)
    page.goto(f"{url}/?annotator={annotator}")
    page.wait_for_selector(READY)
    page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first.wait_for(timeout=600_000)
    wait_for_job(list_projects(home)[0].path, timeout=900)
    page.reload()
    page.wait_for_selector(READY)
    page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first.wait_for()
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    return page


def shown_sample(page) -> str:
    return page.locator(".st-key-keyboard-sample code").first.inner_text()


def screenshot(page, tmp_path, name: str) -> None:
    shots = Path(os.environ.get("OGAUDIT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / name))


def review_by_keyboard(page, count: int) -> list[tuple[str, str]]:
    """Press a decision key ``count`` times; return (sample id, key) in order. Each key waits for the next sample."""
    page.locator(".st-key-queue-view").get_by_text("One at a time (keyboard)").click()
    page.locator(".st-key-keyboard-sample code").first.wait_for()
    page.wait_for_selector(READY)
    assert re.search(r"Keys\W+A\W+accept the suggestion", page.inner_text("[data-testid='stMain']"))
    pressed = []
    for i in range(count):
        sample = shown_sample(page)
        key = KEYS[i % len(KEYS)]
        page.locator("body").press(key)
        page.wait_for_function(
            "s => { const c = document.querySelector('.st-key-keyboard-sample code'); return c && c.innerText !== s; }",
            arg=sample,
        )
        page.wait_for_selector(READY)
        pressed.append((sample, key))
    return pressed


def test_twenty_samples_reviewed_by_keyboard_are_all_in_the_ledger_after_a_reload(server, browser, tmp_path):
    url, home = server
    page = open_page(browser, server, "keys")
    pressed = review_by_keyboard(page, 20)
    page.locator(".st-key-queue-view").evaluate("e => e.scrollIntoView({block: 'start'})")
    screenshot(page, tmp_path, "keyboard.png")
    last = pressed[-1][0]
    page.locator("body").press("z")  # undo brings the last sample back, redo decides it again
    page.locator(".st-key-keyboard-sample").get_by_text(last, exact=True).wait_for()
    page.get_by_text(re.compile(f"Undid the decision on 1 sample.s.: {last}")).first.wait_for()
    page.wait_for_selector(READY)
    page.locator("body").press("Shift+z")
    page.get_by_text(re.compile(f"Redid the decision on 1 sample.s.: {last}")).first.wait_for()
    page.wait_for_selector(READY)
    page.reload()
    page.wait_for_selector(READY)
    page.get_by_text("Reviewed 20 of").wait_for()
    project = Project(list_projects(home)[0].path)
    run = project.open_run()
    state = project.open_ledger().state().set_index("sample_id")
    assert len(pressed) == 20 and len(state) == 20
    expected = {"k": "keep", "u": "unsure", "x": "remove", "a": "confirm"}
    for sample, key in pressed:
        action = state.loc[sample, "action"]
        if key == "2":  # relabel to the class whose key is 2 (on digits: the class "2"), or keep when it is given
            label = run.class_names[class_keys(run.class_names).index("2")]
            assert (action, state.loc[sample, "final_label"]) in (("relabel", label), ("keep", label))
        else:
            assert action == expected[key]
        assert state.loc[sample, "annotator"] == "keys"
    page.close()


def wait_for_count(page, locator, n: int, tmp_path, timeout: float = 90) -> None:
    """Wait until ``locator`` matches ``n`` elements on a settled page; fail with what is shown and a screenshot."""
    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_selector(READY)
        if locator.count() == n:
            return
        if time.monotonic() > deadline:
            page.screenshot(path=str(tmp_path / "count-timeout.png"), full_page=True)
            raise AssertionError(f"expected {n} cards, the page shows {locator.count()} ({tmp_path}/count-timeout.png)")
        page.wait_for_timeout(250)


def test_a_card_shows_its_evidence_and_the_queue_filters_by_class_and_id(server, browser, tmp_path):
    url, home = server
    page = open_page(browser, server, "viewer")
    page.locator(".st-key-queue-hide-decided").get_by_text("Hide decided samples").click()
    page.wait_for_selector(READY)
    card = page.locator("[class*='st-key-card-']").first
    card.get_by_text("likely that the given label is wrong").first.wait_for()
    card.get_by_text("Why is this flagged?").click()
    card.get_by_text(re.compile("nearest gradient neighbours (is|are) labelled")).wait_for()
    card.get_by_text(re.compile(r"Scored by posterior-auto: .* \(κ \d\.\d\d[^)]*\), so the score ")).wait_for()
    assert card.locator("[data-testid='stImage']").count() >= 2  # the sample and its neighbours
    card.evaluate("e => e.scrollIntoView({block: 'start'})")
    screenshot(page, tmp_path, "evidence.png")
    run = Project(list_projects(home)[0].path).open_run()
    cls = run.by_id.loc[run.flagged_ids, "given_label"].value_counts().index[0]
    page.get_by_text("Filter, sort, search").click()
    given = page.locator(".st-key-queue-given")
    choose_option(page, given.get_by_role("combobox"), cls, shown_in=given)
    cards = page.locator("[class*='st-key-card-']")
    expected = [i for i in run.flagged_ids if run.by_id.loc[i, "given_label"] == cls][:12]
    wait_for_count(page, cards, len(expected), tmp_path)
    assert [cards.nth(i).locator("code").first.inner_text() for i in range(cards.count())] == expected
    target = expected[-1]
    page.locator(".st-key-queue-search input").fill(target)
    page.locator(".st-key-queue-search input").press("Enter")
    wait_for_count(page, cards, 1, tmp_path)
    assert cards.first.locator("code").first.inner_text() == target
    page.close()


def test_overriding_another_annotators_decision_asks_first(server, browser):
    url, home = server
    page = open_page(browser, server, "bob")  # first: it waits for the demo's audit (this test may run alone)
    project = Project(list_projects(home)[0].path)
    run = project.open_run()
    sample = run.flagged_ids[-1]
    project.open_ledger().decide(sample, "keep", annotator="ann")
    page.locator(".st-key-queue-hide-decided").get_by_text("Hide decided samples").click()
    page.wait_for_selector(READY)
    page.get_by_text("Filter, sort, search").click()
    page.locator(".st-key-queue-search input").fill(sample)
    page.locator(".st-key-queue-search input").press("Enter")
    card = page.locator(f".st-key-card-{sample}")
    card.get_by_text("by ann").wait_for()
    card.get_by_role("button", name="Remove", exact=True).click()
    card.get_by_text("would override another annotator's decision").wait_for()
    assert project.open_ledger().state().set_index("sample_id").loc[sample, "annotator"] == "ann"
    card.get_by_role("button", name="Override").click()
    try:
        card.get_by_text("by bob").wait_for()
    except Exception:
        print("CARD:", card.inner_text() if card.count() else "(no card)")
        print("LEDGER:", project.open_ledger().state().set_index("sample_id").loc[sample].to_dict())
        raise
    assert project.open_ledger().state().set_index("sample_id").loc[sample, "action"] == "remove"
    page.close()
