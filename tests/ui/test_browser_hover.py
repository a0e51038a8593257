"""The map's hover picture in headless chromium: resting the pointer on a point shows that sample's image, ids and
class names written to break out of markup (``</script><img src=x onerror=...>``) are shown as text and run nothing,
and the box selection still selects after hovering (and the points inside it still show their pictures).

The app opens a project audited here from an ``.npz`` of 240 real digits whose every id and one class name are
hostile (one epoch, PCA map: a few seconds).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from appserver import NEEDS_CHROMIUM, READY, launched_chromium, start_app, stop_app

from ogaudit.project import Project
from ogaudit.review.thumbnails import hover_thumbnails

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
HOSTILE_ID = "</script><img src=x onerror=window.__pwned={}>&amp;#{}"
HOSTILE_CLASS = "<img src=x onerror=\"window.__pwned='class'\">"

POINTS_JS = """
() => {
  const gd = document.querySelector(".st-key-ogaudit-map .js-plotly-plot");
  const box = gd.getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const points = [];
  gd._fullData.forEach((trace) => {
    if (!trace.customdata || trace.visible !== true) return;
    for (let i = 0; i < trace.x.length; i++) {
      const x = xa.l2p(trace.x[i]), y = ya.l2p(trace.y[i]);
      if (!(x >= 4 && x <= xa._length - 4 && y >= 4 && y <= ya._length - 4)) continue;  // drawn, inside the axes
      const point = {id: trace.customdata[i][0], x: box.left + xa._offset + x, y: box.top + ya._offset + y};
      if (point.y > 0 && point.y < window.innerHeight) points.push(point);  // on screen
    }
  });
  return points;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_dir, digits):
    from ogaudit.pipeline.run import AuditSettings, audit

    tmp = tmp_path_factory.mktemp("hover-browser")
    rows = np.arange(240)
    names = list(digits.class_names)
    names[3] = HOSTILE_CLASS
    npz = tmp / "data" / "hostile.npz"
    npz.parent.mkdir()
    ids = np.array([HOSTILE_ID.format(i, i) for i in rows])
    np.savez(npz, x=digits.x[rows, :, :, 0], y=digits.y[rows], ids=ids, class_names=np.array(names))
    home = tmp / "home"
    settings = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1)
    audit(str(npz), settings, out_dir=home / "hostile", cache_dir=cache_dir)
    env = {**os.environ, "OGAUDIT_HOME": str(home), "OGAUDIT_CACHE": str(cache_dir)}
    env["OGAUDIT_DATA_ROOTS"] = str(npz.parent)
    process, url = start_app(env, tmp / "streamlit.log")
    yield url, Project(home / "hostile")
    stop_app(process)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def loose_point(points: list[dict]) -> dict:
    """The point farthest from its nearest neighbour on screen (another id at the same place counts as a
    neighbour; the same id, a flagged point's ring, does not): the one plotly's hover surely picks there."""
    xy = np.array([[p["x"], p["y"]] for p in points])
    ids = np.array([p["id"] for p in points])
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=2) + (ids[:, None] == ids[None]) * 1e9
    return points[int(gaps.min(axis=1).argmax())]


def hover_loose_point(page) -> str:
    """Rest the pointer on the map's most isolated point; return its id (unescaped) once its picture shows."""
    page.wait_for_function("() => !!document.querySelector('.st-key-ogaudit-map .js-plotly-plot')?._fullLayout")
    page.wait_for_timeout(1_000)  # the hover script attaches within half a second of the chart
    target = loose_point(page.evaluate(POINTS_JS))
    raw_id = target["id"].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    page.mouse.move(target["x"] + 1, target["y"])  # straight there: no other point is passed on the way
    page.wait_for_timeout(200)
    page.mouse.move(target["x"], target["y"])
    try:
        page.wait_for_function(
            "id => document.querySelector(\"[data-testid='ogaudit-map-hover']\")?.getAttribute('data-sample') === id",
            arg=raw_id,
            timeout=20_000,
        )
    except Exception as error:
        shown = page.evaluate(
            "() => document.querySelector(\"[data-testid='ogaudit-map-hover']\")?.getAttribute('data-sample')"
        )
        label = page.locator(".hoverlayer").first.text_content()
        raise AssertionError(f"pointer on {target}; the picture shows {shown!r}; plotly's label: {label!r}") from error
    return raw_id


def test_hovering_a_point_shows_its_image_and_hostile_names_run_nothing(server, browser, tmp_path):
    url, project = server
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(90_000)
    page.add_init_script("window.__pwned = undefined;")
    page.goto(f"{url}/?annotator=hoverer")
    page.wait_for_selector(READY)
    chart = page.locator(".st-key-ogaudit-map [data-testid='stPlotlyChart']")
    chart.locator(".nsewdrag").first.wait_for()
    raw_id = hover_loose_point(page)
    run, dataset = project.open_run(), project.load_dataset()
    assert raw_id in run.position
    hover = page.locator("[data-testid='ogaudit-map-hover']")
    image = hover.locator("img")
    assert image.get_attribute("alt") == raw_id  # the id as text, not markup
    expected = hover_thumbnails(dataset, [run.position[raw_id]])[raw_id]
    assert image.get_attribute("src") == expected  # that sample's own picture
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48
    page.screenshot(path=str(tmp_path / "hover.png"))

    page.mouse.move(10, 10)  # off the chart: the picture goes
    hover.wait_for(state="hidden", timeout=20_000)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0  # no id or class name became an element

    box = chart.locator(".nsewdrag").first.bounding_box()  # the box selection still selects
    page.mouse.move(box["x"] + box["width"] * 0.02, box["y"] + box["height"] * 0.02)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.98, box["y"] + box["height"] * 0.98, steps=12)
    page.mouse.up()
    heading = page.get_by_text(re.compile(r"^[\d,]+ selected$"))
    heading.wait_for()
    page.wait_for_selector(READY)
    assert int(heading.inner_text().split()[0].replace(",", "")) > 100
    page.locator("[data-testid='stImage']").first.wait_for()
    assert hover_loose_point(page) in run.position  # inside the selection too: its outline does not take the pointer
    assert HOSTILE_CLASS in page.inner_text("[data-testid='stMain']")  # shown as written
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    page.close()
