"""An instruction audit reviewed in headless chromium: a flagged prompt/response card in the Language model tab
shows the prompt and the response as written, and Remove on it reaches the ledger.

The audit (a tiny random causal LM, 40 built-in pairs) is written by the fixture; the app only opens it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from appserver import NEEDS_CHROMIUM, READY, start_app, stop_app
from test_browser_review import browser  # noqa: F401 - the browser fixture is shared

from ogaudit.data.instructions import prompts_of, responses_of
from ogaudit.project import Project

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_dir, tiny_causal_lm):
    from ogaudit.pipeline.run import AuditSettings, audit

    tmp = tmp_path_factory.mktemp("llm-browser")
    folder = tmp / "home" / "pairs"
    settings = AuditSettings(model=str(tiny_causal_lm), limit=40, epochs=1, projection_dim=128, map_method="pca")
    audit("instruct-tasks", settings, out_dir=folder, cache_dir=cache_dir)
    Project(folder).write_request("instruct-tasks", settings)
    env = {**os.environ, "OGAUDIT_DEMO": "off", "OGAUDIT_HOME": str(tmp / "home"), "OGAUDIT_CACHE": str(cache_dir)}
    process, url = start_app(env, tmp / "streamlit.log", timeout=180)
    yield url, folder
    try:
        stop_app(process)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_prompt_response_card_is_read_and_decided(server, browser):  # noqa: F811
    url, folder = server
    project = Project(folder)
    run = project.open_run()
    dataset = project.load_dataset()
    first = run.flagged_ids[0]
    position = dataset.sample_ids.tolist().index(first)
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(90_000)
    page.goto(f"{url}/?annotator=reader&project={folder.name}")
    page.wait_for_selector(READY)
    page.get_by_role("tab", name=re.compile("Language model")).click()
    card = page.locator(f".st-key-llm-card-{first}")
    card.wait_for()
    prompt = card.locator(f".st-key-llm-prompt-{first}").inner_text()
    response = card.locator(f".st-key-llm-response-{first}").inner_text()
    assert prompt.strip() == str(prompts_of(dataset)[position]).strip()
    assert response.strip() == str(responses_of(dataset)[position]).strip()
    assert "Why flagged: response NLL" in card.inner_text()
    card.get_by_role("button", name="Remove").click()
    deadline = time.monotonic() + 60
    while first not in set(project.open_ledger().state()["sample_id"]) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    state = project.open_ledger().state().set_index("sample_id")
    assert state.loc[first, "action"] == "remove" and state.loc[first, "annotator"] == "reader"
    page.close()
