"""A text audit reviewed in headless chromium: the card shows the review's full text (escaped) and its neighbours'
texts as evidence, the text search narrows the queue, and a decision on a text card reaches the ledger.

The app audits 60 Rotten Tomatoes snippets with planted noise (the real all-MiniLM-L6-v2, offline, embedded by the
fixture into the shared cache; 4 epochs, PCA map).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from appserver import NEEDS_CHROMIUM, READY, start_app, stop_app
from test_browser_review import browser, open_page  # noqa: F401 - the browser fixture is shared

from ogaudit.project import Project, list_projects
from ogaudit.review.texts import display_texts

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_dir):
    from ogaudit.pipeline.load import prepare_dataset
    from ogaudit.settings import AuditSettings

    tmp = tmp_path_factory.mktemp("text-browser")
    # The 60 texts are embedded here, into the cache the app reads, so the app's job does not wait for the encoder.
    prepare_dataset("rotten-tomatoes", AuditSettings(limit=60, seed=0), cache_dir=cache_dir)
    demo = {"OGAUDIT_DEMO": "rotten-tomatoes", "OGAUDIT_DEMO_LIMIT": "60", "OGAUDIT_DEMO_MAP": "pca"}
    demo |= {"OGAUDIT_DEMO_NOISE": "0.15", "OGAUDIT_DEMO_EPOCHS": "4"}  # quick: no separate first look
    env = {**os.environ, **demo, "OGAUDIT_HOME": str(tmp / "home"), "OGAUDIT_CACHE": str(cache_dir)}
    process, url = start_app(env, tmp / "streamlit.log", timeout=180)
    yield url, tmp / "home"
    try:
        stop_app(process)
    except subprocess.TimeoutExpired:  # a loaded machine: it would not stop in time
        process.kill()


def test_a_text_card_is_read_searched_and_decided(server, browser):  # noqa: F811
    url, home = server
    page = open_page(browser, server, "reader")
    project = Project(list_projects(home)[0].path)
    run = project.open_run()
    dataset = project.load_dataset()
    first = run.flagged_ids[0]
    card = page.locator(f".st-key-card-{first}")
    (text,) = display_texts(dataset, [run.position[first]])
    box = card.locator(f".st-key-text-card-{first}")
    box.wait_for()
    assert " ".join(box.inner_text().split()) == " ".join(text.split())  # the whole text, shown as written
    assert card.locator("[data-testid='stImage']").count() == 0  # no thumbnails for text
    card.get_by_text("Why is this flagged?").click()
    card.get_by_text("Nearest gradient neighbours (given label, cosine):").wait_for()
    word = max(text.split(), key=len).strip(".,;:!?\"'()")
    page.get_by_text("Filter, sort, search").click()
    page.locator(".st-key-queue-text-search input").fill(word)
    page.locator(".st-key-queue-text-search input").press("Enter")
    page.wait_for_selector(READY)
    from ogaudit.review.texts import search_texts

    hits = set(search_texts(dataset, word).tolist()) & set(run.flagged_ids)
    page.wait_for_function(
        "n => document.querySelectorAll(\"[class*='st-key-card-']\").length === n", arg=min(len(hits), 12)
    )
    page.locator(f".st-key-card-{first}").get_by_role("button", name="Remove").click()
    deadline = time.monotonic() + 60  # the click's rerun may not have started when the page first reads as settled
    while first not in set(project.open_ledger().state()["sample_id"]) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    state = project.open_ledger().state().set_index("sample_id")
    assert state.loc[first, "action"] == "remove" and state.loc[first, "annotator"] == "reader"
    page.close()
