"""The gradient map as a plotly WebGL scatter, kept light enough for 60k points.

Each point carries ``customdata = [sample_id, given label, score, extra]`` (strings, one row per point), which
the hover template shows and a selection sends back: the sample id travels in ``customdata[0]`` because plotly's
point indices are per trace. ``extra`` names the predicted and suggested labels only where they differ from the
given one, so most points cost an empty string rather than two class names. Flagged samples are drawn on top in
every colouring: in their own colour when colouring by flag, else ringed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ogaudit.review.ledger import ACTIONS

COLOUR_MODES = ("flagged", "score", "given label", "decision")
HOVER = "<b>%{customdata[0]}</b><br>given %{customdata[1]}%{customdata[3]}<br>score %{customdata[2]}<extra></extra>"
DECISION_COLOURS = {
    "undecided": "#b8c0cc",
    "confirm": "#2ca02c",
    "relabel": "#1f77b4",
    "keep": "#9467bd",
    "remove": "#d62728",
    "unsure": "#ff7f0e",
}
FLAG_COLOUR = "#d62728"
KELLY = [
    "#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#848482", "#008856", "#E68FAC", "#0067A5",
    "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522", "#E25822", "#2B3D26",
    "#222222", "#F2F3F4",
]  # fmt: skip
PLAIN_COLOUR = "#a3acb9"


def natural_key(name: str) -> list:
    """Sort key that puts "2" before "10" and "img2" before "img10" (the legend's order)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def class_palette(n: int) -> list[str]:
    """``n`` colours told apart easily: Tableau 10 (D3's category10) up to 10 classes, then Kelly's 22 colours
    of maximum contrast (plotly's Alphabet beyond that), repeating only past 26 classes."""
    palette = qualitative.D3 if n <= 10 else KELLY + [c for c in qualitative.Alphabet if c not in KELLY]
    return [palette[i % len(palette)] for i in range(n)]


def hover_data(table: pd.DataFrame) -> np.ndarray:
    """(N, 4) strings per sample: id, given label, score (3 significant digits), predicted/suggested note."""
    given = table["given_label"].to_numpy(dtype=str)
    predicted = table["predicted_label"].to_numpy(dtype=str)
    suggested = table["suggested_label"].to_numpy(dtype=str)
    note = np.char.add(np.char.add("<br>predicted ", predicted), np.char.add(", suggested ", suggested))
    extra = np.where((predicted != given) | (suggested != given), note, "")
    score = np.char.mod("%.3g", table["score"].to_numpy(dtype=float))
    if "snippet" in table:  # text data: the start of the text, escaped (hover labels render a little HTML)
        escaped = (
            table["snippet"].astype(str).str.replace("&", "&amp;").str.replace("<", "&lt;").str.replace(">", "&gt;")
        )
        extra = np.char.add(np.char.add(extra.astype(str), "<br>"), escaped.to_numpy(dtype=str))
    return np.column_stack([table["sample_id"].to_numpy(dtype=str), given, score, extra])


def decision_states(table: pd.DataFrame, decisions: pd.DataFrame | None) -> np.ndarray:
    """(N,) the current action on each sample, "undecided" where there is none."""
    states = pd.Series("undecided", index=table["sample_id"], dtype=object)
    if decisions is not None and len(decisions):
        current = decisions.set_index("sample_id")["action"]
        current = current[current.index.isin(states.index)]
        states.loc[current.index] = current.to_numpy()
    return states.to_numpy()


def _trace(table: pd.DataFrame, customdata: np.ndarray, mask: np.ndarray, name: str, **marker) -> go.Scattergl:
    return go.Scattergl(
        x=table["x"].to_numpy(dtype=np.float32)[mask],
        y=table["y"].to_numpy(dtype=np.float32)[mask],
        mode="markers",
        name=name,
        customdata=customdata[mask],
        hovertemplate=HOVER,
        marker=marker,
    )


def map_figure(table: pd.DataFrame, colour: str = "flagged", decisions: pd.DataFrame | None = None) -> go.Figure:
    """The gradient map of a run's ``table`` (see :class:`~ogaudit.project.Run`), coloured by ``colour``.

    ``decisions`` (the ledger's state) is used only by ``colour="decision"``. The default drag mode is box
    select, so a mouse drag selects; ``uirevision`` keeps the zoom when the figure is rebuilt.
    """
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour {colour!r} is not one of {COLOUR_MODES}.")
    customdata = hover_data(table)
    flagged = table["flagged"].to_numpy(dtype=bool)
    everything = np.ones(len(table), dtype=bool)
    traces: list[go.Scattergl] = []
    if colour == "flagged":
        traces.append(_trace(table, customdata, ~flagged, "not flagged", color=PLAIN_COLOUR, size=4, opacity=0.55))
        traces.append(_trace(table, customdata, flagged, "flagged", color=FLAG_COLOUR, size=7))
    elif colour == "score":
        score = table["score"].to_numpy(dtype=float)
        traces.append(
            _trace(
                table,
                customdata,
                everything,
                "score",
                color=score,
                colorscale="Viridis",
                colorbar={"title": {"text": "score"}, "thickness": 12},
                size=4,
            )
        )
    elif colour == "given label":
        given = table["given_label"].to_numpy(dtype=str)
        names = sorted(set(given), key=natural_key)
        palette = class_palette(len(names))
        for i, name in enumerate(names):
            traces.append(_trace(table, customdata, given == name, name, color=palette[i], size=4))
    else:
        states = decision_states(table, decisions)
        for state in ("undecided", *ACTIONS):
            if (states == state).any():
                size = 4 if state == "undecided" else 7
                traces.append(
                    _trace(table, customdata, states == state, state, color=DECISION_COLOURS[state], size=size)
                )
    if colour != "flagged" and flagged.any():
        ring = {"color": "rgba(0,0,0,0)", "size": 9, "line": {"color": "#111111", "width": 1.2}}
        traces.append(_trace(table, customdata, flagged, "flagged (ring)", **ring))
    figure = go.Figure(traces)
    figure.update_layout(
        dragmode="select",
        uirevision="gradient-map",
        hovermode="closest",
        height=560,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        xaxis={"showticklabels": False, "title": None, "zeroline": False},
        yaxis={"showticklabels": False, "title": None, "zeroline": False},
    )
    return figure
