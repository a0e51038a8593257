"""A sample's picture beside the pointer when it rests on a point of the gradient map.

Plotly's hover labels hold text only. This is a Streamlit component (``st.components.v2``: inline JavaScript, no
build step, run in the page) that listens to the map chart's own ``plotly_hover`` and ``plotly_unhover`` events and
shows a small floating ``<img>`` of the hovered sample next to plotly's label. It adds a listener and nothing else:
the chart, its box and lasso selections and the bulk actions on them are Streamlit's ``st.plotly_chart`` as before.

What it is given (``data``, sent as JSON, never as markup): the ids as the chart's ``customdata[0]`` holds them
(escaped by :func:`~ogaudit.ui.figure.escape_markup`) and one ``data:image/png`` or ``data:image/jpeg`` URI each,
made by :func:`~ogaudit.review.thumbnails.hover_thumbnails` once per run (flagged samples first, a size budget in
bytes). The script builds its element with ``createElement``, sets ``src`` only to a URI of those two kinds and the
id only as the ``alt`` text: no HTML is parsed from the data, nothing is fetched, no server path appears. An unchanged
payload is not sent again at each rerun: Streamlit sends a repeated element of over 10 KB as a reference to the copy
the browser holds.
"""

from __future__ import annotations

import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.results import Run
from ogaudit.review.thumbnails import HOVER_SIZE
from ogaudit.ui import state
from ogaudit.ui.figure import escape_markup, is_density_map

MAP_CONTAINER = "ogaudit-map"
"""The key of the container that holds the map chart: the script looks for the chart inside it."""

_JS = """
export default function (component) {
  const data = component.data || {};
  const ids = Array.isArray(data.ids) ? data.ids : [];
  const uris = Array.isArray(data.uris) ? data.uris : [];
  const size = Number(data.size) || 48;
  const selector = String(data.selector || "");
  const thumbs = new Map();
  ids.forEach((id, i) => {
    const uri = uris[i];
    if (typeof id === "string" && typeof uri === "string" && /^data:image\\/(png|jpeg);base64,[A-Za-z0-9+\\/=]+$/.test(uri)) {
      thumbs.set(id, uri);
    }
  });
  const unescape = (text) => text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

  const box = document.createElement("div");
  box.setAttribute("data-testid", "ogaudit-map-hover");
  Object.assign(box.style, {
    position: "fixed", zIndex: "100000", pointerEvents: "none", display: "none", padding: "3px",
    background: "#ffffff", border: "1px solid #9aa3ad", borderRadius: "4px", boxShadow: "0 2px 6px rgba(0,0,0,0.25)",
  });
  const img = document.createElement("img");
  Object.assign(img.style, { display: "block", width: size * 2 + "px", height: "auto", imageRendering: "pixelated" });
  box.appendChild(img);
  document.body.appendChild(box);

  const hide = () => { box.style.display = "none"; box.removeAttribute("data-sample"); };
  const show = (event) => {
    const point = event && event.points && event.points[0];
    const custom = point ? point.customdata : null;
    const id = Array.isArray(custom) ? custom[0] : (custom && typeof custom === "object" ? custom[0] : custom);
    const uri = typeof id === "string" ? thumbs.get(id) : undefined;
    if (!uri) { hide(); return; }
    img.src = uri;
    img.alt = unescape(id);
    box.setAttribute("data-sample", unescape(id));
    const mouse = event.event || {};
    const side = size * 2 + 8;
    let left = (mouse.clientX || 0) - side - 18;
    let top = (mouse.clientY || 0) - side - 18;
    if (left < 4) left = (mouse.clientX || 0) + 18;
    if (top < 4) top = (mouse.clientY || 0) + 18;
    box.style.left = left + "px";
    box.style.top = top + "px";
    box.style.display = "block";
  };

  const hooked = new WeakMap();
  const attach = () => {
    document.querySelectorAll(selector).forEach((plot) => {
      if (typeof plot.on !== "function" || hooked.get(plot) === plot._ev) return;
      plot.on("plotly_hover", show);
      plot.on("plotly_unhover", hide);
      plot.on("plotly_selecting", hide);
      hooked.set(plot, plot._ev);
    });
  };
  attach();
  const timer = setInterval(attach, 500);
  return () => {
    clearInterval(timer);
    document.querySelectorAll(selector).forEach((plot) => {
      if (typeof plot.removeListener === "function") {
        plot.removeListener("plotly_hover", show);
        plot.removeListener("plotly_unhover", hide);
        plot.removeListener("plotly_selecting", hide);
      }
    });
    box.remove();
  };
}
"""

_component = st.components.v2.component("ogaudit.map_hover", js=_JS)


def map_hover(run: Run, dataset: Dataset | None, density_above: int) -> None:
    """Mount the hover pictures for the map of ``run`` (nothing for texts, vectors or data that cannot be read: the
    hover label then shows the text or the labels alone)."""
    if dataset is None or not dataset.is_image or dataset.is_text:
        return
    thumbs = state.hover_thumbnails(run, dataset, is_density_map(len(run.table), density_above))
    if not thumbs:
        return
    payload = {
        "ids": escape_markup(list(thumbs)).tolist(),  # as the chart's customdata[0] holds them
        "uris": list(thumbs.values()),
        "size": HOVER_SIZE,
        "selector": f".st-key-{MAP_CONTAINER} .js-plotly-plot",
    }
    _component(key=f"map-hover-{run.name}", data=payload, height=0)
