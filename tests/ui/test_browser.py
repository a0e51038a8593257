"""The real app in headless chromium: the demo audits itself, the WebGL map draws, a mouse drag box-selects,
a relabel is recorded, and the decisions CSV downloads with its row.

Runs in the normal ``pytest`` run; skipped only where ``/usr/bin/chromium`` is missing. Screenshots go to the
test's tmp folder, or to ``$OGAUDIT_SCREENSHOTS``; with ``OGAUDIT_DEMO=digits OGAUDIT_DEMO_EPOCHS=15
OGAUDIT_DEMO_MAP=umap OGAUDIT_DEMO_LIMIT=`` it runs on a realistic demo like the README's screenshots.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

import pytest
from appserver import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, READY, choose_option, start_app, stop_app
from test_browser_hover import hover_loose_point

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@pytest.fixture
def server(tmp_path, cache_dir):
    """``streamlit run app.py`` on a free port with a fast demo (600 digits, 4 epochs, PCA map) in tmp dirs;
    ``OGAUDIT_DEMO*`` variables already set in the environment win."""
    fast_demo = {
        "OGAUDIT_DEMO": "digits",
        "OGAUDIT_DEMO_EPOCHS": "4",
        "OGAUDIT_DEMO_MAP": "pca",
        "OGAUDIT_DEMO_LIMIT": "600",
    }
    env = {**fast_demo, **os.environ, "OGAUDIT_HOME": str(tmp_path / "home"), "OGAUDIT_CACHE": str(cache_dir)}
    process, url = start_app(env, tmp_path / "streamlit.log")
    yield url
    stop_app(process)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
        yield context.new_page()
        browser.close()


@pytest.fixture
def density_server(tmp_path, cache_dir):
    """As ``server``, with maps above 100 samples drawn as a density image (``OGAUDIT_MAP_POINTS=100``)."""
    env = {
        "OGAUDIT_DEMO": "digits",
        "OGAUDIT_DEMO_EPOCHS": "2",
        "OGAUDIT_DEMO_MAP": "pca",
        "OGAUDIT_DEMO_LIMIT": "600",
        **os.environ,
        "OGAUDIT_MAP_POINTS": "100",
        "OGAUDIT_HOME": str(tmp_path / "home"),
        "OGAUDIT_CACHE": str(cache_dir),
    }
    process, url = start_app(env, tmp_path / "streamlit.log")
    yield url
    stop_app(process)


def box_select(page, chart) -> None:
    """Drag a box over most of the plot area (a UMAP layout may leave the middle empty): the figure's default
    drag mode selects."""
    area = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.05, area["y"] + area["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.95, area["y"] + area["height"] * 0.95, steps=12)
    page.mouse.up()


def test_demo_map_selection_relabel_and_download(server, page, tmp_path):
    shots = Path(os.environ.get("OGAUDIT_SCREENSHOTS", tmp_path))
    page.set_default_timeout(90_000)
    page.goto(f"{server}/?annotator=tester")
    page.wait_for_selector(READY)
    chart = page.locator("[data-testid='stPlotlyChart']")
    chart.locator(".nsewdrag").first.wait_for(timeout=600_000)  # the map is drawn (perhaps the first look's)
    page.get_by_text("quick first look").first.wait_for(state="detached", timeout=900_000)  # the full audit
    page.wait_for_selector(READY)
    assert "Demo:" in page.inner_text("[data-testid='stMain']")

    box_select(page, chart)
    heading = page.get_by_text(re.compile(r"^[\d,]+ selected$"))
    heading.wait_for()
    selected = int(heading.inner_text().split()[0].replace(",", ""))
    assert selected > 0
    page.wait_for_selector(READY)
    page.locator("[data-testid='stImage']").first.wait_for()
    shots.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Colour by").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    hover_loose_point(page)  # a sample's picture beside the pointer, in the README's screenshot too
    page.screenshot(path=str(shots / "map.png"))

    page.get_by_role("tab", name=re.compile("Review queue")).click()
    card = page.locator("[class*='st-key-card-']").first
    sample_id = card.locator("code").first.inner_text()
    suggested = re.search(r"Confirm → (.+)", card.get_by_role("button", name=re.compile("Confirm")).inner_text())
    target = "0" if suggested.group(1).strip() != "0" else "1"
    choose_option(page, card.get_by_role("combobox"), target)
    page.wait_for_selector(READY)
    page.locator("[data-testid='stMain']").evaluate("main => main.scrollTo(0, 0)")  # the page from its top
    page.screenshot(path=str(shots / "review.png"))
    card.get_by_role("button", name="Relabel", exact=True).click()
    page.get_by_text(f"relabel → {target}: 1 sample(s) ({sample_id})").first.wait_for()  # message and toast
    review_tab = page.get_by_role("tab", name=re.compile("Review queue"))
    assert review_tab.get_attribute("aria-selected") == "true"  # the reviewer stays in the queue after a decision
    page.get_by_role("tab", name="Gradient map").click()
    assert page.get_by_text(f"{selected:,} selected", exact=True).is_visible()  # the selection survived the decision

    page.get_by_role("tab", name="Export").click()
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("Decisions CSV")).click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [(r["sample_id"], r["action"], r["final_label"], r["annotator"]) for r in rows] == [
        (sample_id, "relabel", target, "tester")
    ]
    arrived = []  # clicks in quick succession each download, with no rerun between them
    page.on("download", lambda download: arrived.append(download))
    for _ in range(6):
        page.get_by_role("button", name=re.compile("Decisions CSV")).click(timeout=5_000)
        page.wait_for_timeout(1_500)
    page.wait_for_timeout(5_000)
    assert len(arrived) == 6


def test_density_map_box_and_lasso_select_every_sample_inside(density_server, page, tmp_path):
    """A map drawn as a density image (the way 10⁶ samples are drawn) with only the flagged samples as points:
    a box, then a lasso, selects unflagged samples too (found from the outline on the server) and fills the grid."""
    page.set_default_timeout(90_000)
    page.goto(f"{density_server}/?annotator=tester")
    chart = page.locator("[data-testid='stPlotlyChart']")
    chart.locator(".nsewdrag").first.wait_for(timeout=600_000)
    page.get_by_text("quick first look").first.wait_for(state="detached", timeout=900_000)  # the full audit
    page.wait_for_selector(READY)
    assert chart.locator("svg image").count() >= 1  # the density image (a plotly layout image) under the axes
    assert hover_loose_point(page)  # a flagged sample drawn as a point shows its picture
    page.mouse.move(5, 5)
    samples = int(
        re.search(r"([\d,]+) samples drawn as a density image", page.inner_text("[data-testid='stMain']"))
        .group(1)
        .replace(",", "")
    )
    sidebar = page.inner_text("[data-testid='stSidebar']")
    flagged = int(re.search(r"Reviewed [\d,]+ of ([\d,]+) flagged", sidebar).group(1).replace(",", ""))

    area = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.02, area["y"] + area["height"] * 0.02)  # the left half
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] * 0.98, steps=12)
    page.mouse.up()
    heading = page.get_by_text(re.compile(r"^[\d,]+ selected$"))
    heading.wait_for()
    page.wait_for_selector(READY)
    boxed = int(heading.inner_text().split()[0].replace(",", ""))
    assert boxed > flagged  # more than the points drawn: the unflagged ones inside the box came from the outline
    page.locator("[data-testid='stImage']").first.wait_for()

    chart.locator(".modebar-btn[data-val='lasso']").first.click()
    # the lasso on the right half, clear of the box, so that it selects other samples than the box did
    cx, cy = area["x"] + area["width"] * 0.76, area["y"] + area["height"] * 0.5
    rx, ry = area["width"] * 0.2, area["height"] * 0.45
    page.mouse.move(cx + rx, cy)
    page.mouse.down()
    for angle in range(15, 361, 15):
        page.mouse.move(cx + rx * math.cos(math.radians(angle)), cy + ry * math.sin(math.radians(angle)))
    page.mouse.up()
    page.wait_for_function(
        "n => [...document.querySelectorAll('h3')].some(h => /^[\\d,]+ selected$/.test(h.innerText) && h.innerText !== n)",
        arg=f"{boxed:,} selected",
    )
    page.wait_for_selector(READY)
    lassoed = int(page.get_by_text(re.compile(r"^[\d,]+ selected$")).inner_text().split()[0].replace(",", ""))
    assert 0 < lassoed < samples - boxed + flagged  # the right half's samples, not the box's
    page.locator("[data-testid='stImage']").first.wait_for()
    page.screenshot(path=str(tmp_path / "density-map.png"))
