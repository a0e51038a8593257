"""Several annotators on one app server, and a server killed during review, in headless chromium.

Two browser sessions (two contexts, two ``?annotator=`` names) click review actions at the same time; every decision
must land in the ledger once, and no session may show an exception or a lock error. Then a server is killed with
SIGKILL mid-review and started again on the same workspace: every decision made is still there. Skipped only where
``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from appserver import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, READY, start_app, stop_app

from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project

PROJECT = "shared"
SETTINGS = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1, limit=300)  # 15 flagged

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture
def home(tmp_path, cache_dir) -> Path:
    """A workspace holding one finished audit to review."""
    project = tmp_path / "home" / PROJECT
    audit("digits", SETTINGS, out_dir=project, cache_dir=cache_dir)
    Project(project).write_request("digits", SETTINGS)
    return project.parent


@pytest.fixture
def servers(home, tmp_path, cache_dir):
    """Start ``streamlit run app.py`` servers on ``home``; each call returns ``(process, url)``."""
    started: list[subprocess.Popen] = []
    env = {**os.environ, "OGAUDIT_HOME": str(home), "OGAUDIT_CACHE": str(cache_dir)}

    def start() -> tuple[subprocess.Popen, str]:
        process, url = start_app(env, tmp_path / f"streamlit-{len(started)}.log")
        started.append(process)
        return process, url

    yield start
    for process in started:
        stop_app(process)


async def open_review(browser, url: str, annotator: str):
    """A new browser session on the project's review queue."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1300})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(f"{url}/?annotator={annotator}&project={PROJECT}")
    await page.wait_for_selector(READY)
    await page.get_by_role("tab", name=re.compile("Review queue")).click()
    return page


async def click_through(page, ids: list[str], button: str) -> None:
    """Click ``button`` on each sample's card; wait for the card to leave the queue (the decision is stored)."""
    for sample_id in ids:
        card = page.locator(f".st-key-card-{sample_id}")
        await page.get_by_role("tab", name=re.compile("Review queue")).click()  # the flash above resets the tabs
        await card.get_by_role("button", name=button, exact=True).click()
        await card.wait_for(state="detached")
        await page.wait_for_selector(READY)


async def problems(page) -> list[str]:
    """Exceptions and lock errors the page shows."""
    shown = await page.locator("[data-testid='stException']").all_inner_texts()
    body = await page.inner_text("body")
    return shown + (["locked"] if "locked" in body.lower() else [])


def test_two_browser_sessions_decide_at_the_same_time(servers, home):
    from playwright.async_api import async_playwright

    _, url = servers()
    run = Project(home / PROJECT).open_run()
    first_page = run.flagged_ids[:12]  # the queue's first page (12 per page): every card is on screen
    alice, bob = first_page[0::2], first_page[1::2]

    async def main() -> tuple[list[str], str]:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            pages = await asyncio.gather(open_review(browser, url, "alice"), open_review(browser, url, "bob"))
            await asyncio.gather(click_through(pages[0], alice, "Keep"), click_through(pages[1], bob, "Remove"))
            shown = [*await problems(pages[0]), *await problems(pages[1])]
            await pages[0].reload()
            await pages[0].wait_for_selector(READY)
            progress = await pages[0].locator("[data-testid='stSidebar'] [data-testid='stProgress']").inner_text()
            await browser.close()
            return shown, progress

    shown, progress = asyncio.run(main())
    assert shown == []
    assert f"Reviewed 12 of {len(run.flagged_ids)}" in progress  # each session sees the other's decisions
    history = Project(run.path).open_ledger().history()
    assert len(history) == 12 and not history.duplicated(["sample_id"]).any()
    stored = {(r.sample_id, r.action, r.annotator) for r in history.itertuples()}
    assert stored == {(i, "keep", "alice") for i in alice} | {(i, "remove", "bob") for i in bob}


def test_a_server_killed_during_review_keeps_every_decision(servers, home):
    from playwright.async_api import async_playwright

    process, url = servers()
    run = Project(home / PROJECT).open_run()
    made, in_flight = run.flagged_ids[:3], run.flagged_ids[3]

    async def review_then_kill() -> None:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = await open_review(browser, url, "carol")
            await click_through(page, made, "Unsure")
            await page.get_by_role("tab", name=re.compile("Review queue")).click()
            await page.locator(f".st-key-card-{in_flight}").get_by_role("button", name="Unsure", exact=True).click()
            os.kill(process.pid, signal.SIGKILL)  # mid-rerun: the fourth decision may or may not have landed
            await browser.close()

    asyncio.run(review_then_kill())
    process.wait(20)
    assert process.returncode == -signal.SIGKILL

    _, url = servers()  # the restarted server, on the same workspace

    async def reopen() -> tuple[list[str], str]:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = await open_review(browser, url, "carol")
            progress = await page.locator("[data-testid='stSidebar'] [data-testid='stProgress']").inner_text()
            shown = await problems(page)
            await browser.close()
            return shown, progress

    shown, progress = asyncio.run(reopen())
    state = Project(run.path).open_ledger().state()
    assert set(made) <= set(state["sample_id"]) <= {*made, in_flight}
    assert set(state["action"]) == {"unsure"} and set(state["annotator"]) == {"carol"}
    assert shown == [] and f"Reviewed {len(state)} of {len(run.flagged_ids)}" in progress
