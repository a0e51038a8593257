"""The gradient map as a plotly WebGL scatter up to 20k points, and above that a density image with the most
suspicious points on top (:mod:`ogaudit.map.density`), so that 10⁶ points paint and select in seconds.

Each point carries ``customdata = [sample_id, given label, score, extra]`` (strings, one row per point), which the hover
template shows and a selection sends back: the sample id travels in ``customdata[0]`` because plotly's point indices are
per trace. Every string from the data is escaped (:func:`escape_markup`: plotly's hover labels and legend render a few
HTML tags), and :func:`~ogaudit.ui.selection.point_id` unescapes the id it reads back. ``extra`` names the predicted and
suggested labels only where they differ from the given one, so most points cost an empty string rather than two class
names. Flagged samples are drawn on top in every colouring: in their own colour when colouring by flag, else ringed. A
density map draws every sample in one PNG (layout image) and only the :data:`~ogaudit.map.density.MARKER_LIMIT` most
suspicious flagged (and decided) samples as markers; its box or lasso selects by outline
(:func:`~ogaudit.map.density.points_in_selection`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sequential

from ogaudit.map.density import (
    DENSITY_ABOVE,
    MARKER_LIMIT,
    bin_index,
    categorical_density,
    continuous_density,
    map_extent,
    png_data_uri,
    top_ranked,
)
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


def escape_markup(values) -> np.ndarray:
    """(N,) str with ``&``, ``<`` and ``>`` escaped: plotly renders a few HTML tags (``<a href>``, ``<b>``, ``<br>``)
    in hover labels and legend names, so ids, labels and texts from a user's file are shown as written."""
    column = pd.Series(np.asarray(values, dtype=object), dtype=object).astype(str)
    return column.str.replace("&", "&amp;").str.replace("<", "&lt;").str.replace(">", "&gt;").to_numpy(dtype=str)


def label_markup(values) -> np.ndarray:
    """(N,) str of :func:`escape_markup` after :func:`~ogaudit.ui.text.shown` (characters that draw nothing or
    reorder the text written as ``⟨U+XXXX⟩``): for class names and texts the chart only shows. Not for the ids
    in ``customdata``, which a selection reads back exactly."""
    from ogaudit.ui.text import shown

    return escape_markup([shown(v) for v in np.asarray(values, dtype=object).astype(str)])


def hover_data(table: pd.DataFrame) -> np.ndarray:
    """(N, 4) strings per sample: id, given label, score (3 significant digits), predicted/suggested note; every
    string from the data escaped (:func:`escape_markup`)."""
    raw_given = table["given_label"].to_numpy(dtype=str)
    raw_predicted = table["predicted_label"].to_numpy(dtype=str)
    raw_suggested = table["suggested_label"].to_numpy(dtype=str)
    given, predicted, suggested = (label_markup(v) for v in (raw_given, raw_predicted, raw_suggested))
    note = np.char.add(np.char.add("<br>predicted ", predicted), np.char.add(", suggested ", suggested))
    extra = np.where((raw_predicted != raw_given) | (raw_suggested != raw_given), note, "")
    score = np.char.mod("%.3g", table["score"].to_numpy(dtype=float))
    if "snippet" in table:  # text data: the start of the text
        extra = np.char.add(np.char.add(extra.astype(str), "<br>"), label_markup(table["snippet"]))
    return np.column_stack([escape_markup(table["sample_id"]), given, score, extra])


def decision_states(table: pd.DataFrame, decisions: pd.DataFrame | None) -> np.ndarray:
    """(N,) the current action on each sample, "undecided" where there is none (one hash lookup per sample)."""
    states = np.full(len(table), "undecided", dtype=object)
    if decisions is not None and len(decisions):
        current = decisions.drop_duplicates("sample_id", keep="last").set_index("sample_id")["action"]
        mapped = table["sample_id"].map(current)
        known = mapped.notna().to_numpy()
        states[known] = mapped.to_numpy()[known]
    return states


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


def is_density_map(n_points: int, density_above: int = DENSITY_ABOVE) -> bool:
    """Whether a map of ``n_points`` is drawn as a density image (selection by outline) rather than one marker
    per sample (selection by the points plotly reports): above ``density_above`` points."""
    return n_points > density_above


def map_figure(
    table: pd.DataFrame,
    colour: str = "flagged",
    decisions: pd.DataFrame | None = None,
    *,
    density_above: int = DENSITY_ABOVE,
) -> go.Figure:
    """The gradient map of a run's ``table`` (see :class:`~ogaudit.project.Run`), coloured by ``colour``.

    ``decisions`` (the ledger's state) is used only by ``colour="decision"``. The default drag mode is box
    select, so a mouse drag selects; ``uirevision`` keeps the zoom when the figure is rebuilt. Above
    ``density_above`` samples (default :data:`~ogaudit.map.density.DENSITY_ABOVE`): :func:`density_figure`.
    """
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour {colour!r} is not one of {COLOUR_MODES}.")
    if is_density_map(len(table), density_above):
        return density_figure(table, colour, decisions)
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
            traces.append(
                _trace(table, customdata, given == name, str(label_markup([name])[0]), color=palette[i], size=4)
            )
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
    return _layout(go.Figure(traces), table)


CLASS_LABELS_UP_TO = 40
"""Maps of runs with more classes carry no class names on the clusters (they would cover the points)."""


def class_annotations(table: pd.DataFrame, *, limit: int = CLASS_LABELS_UP_TO) -> list[dict]:
    """Each given class's name, placed on its cluster: at the median map position of its samples (robust to the
    wrong labels scattered elsewhere). One plotly annotation per class; none above ``limit`` classes."""
    if not len(table):
        return []
    frame = pd.DataFrame(
        {"name": table["given_label"].astype(str), "x": table["x"].astype(float), "y": table["y"].astype(float)}
    )
    centres = frame.groupby("name", sort=False)[["x", "y"]].median()
    if len(centres) > limit:
        return []
    names = sorted(centres.index, key=natural_key)
    return [
        {
            "x": float(centres.loc[name, "x"]),
            "y": float(centres.loc[name, "y"]),
            "text": f"<b>{label_markup([name])[0]}</b>",
            "showarrow": False,
            "font": {"size": 13, "color": "#111111"},
            "bgcolor": "rgba(255,255,255,0.75)",
            "borderpad": 2,
        }
        for name in names
    ]


def _layout(figure: go.Figure, table: pd.DataFrame | None = None) -> go.Figure:
    figure.update_layout(
        dragmode="select",
        uirevision="gradient-map",
        hovermode="closest",
        height=560,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        xaxis={"showticklabels": False, "title": None, "zeroline": False},
        yaxis={"showticklabels": False, "title": None, "zeroline": False},
        annotations=[] if table is None else class_annotations(table),
    )
    return figure


def _legend_entry(name: str, colour: str) -> go.Scattergl:
    """A legend row for a colour that only the density image shows (no point of its own)."""
    return go.Scattergl(x=[None], y=[None], mode="markers", name=name, marker={"color": colour, "size": 8})


def density_figure(
    table: pd.DataFrame, colour: str = "flagged", decisions: pd.DataFrame | None = None, *, limit: int = MARKER_LIMIT
) -> go.Figure:
    """The map of a big run: every sample in one density image (a layout image under the axes, see
    :mod:`ogaudit.map.density`), coloured as :func:`map_figure` colours points, and on top at most ``limit`` markers
    with hover text: the most suspicious flagged samples (and, coloured by decision, the most suspicious decided
    ones). The axes' ranges are fixed to the map's extent; selections are read by outline.
    """
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour {colour!r} is not one of {COLOUR_MODES}.")
    x = table["x"].to_numpy(dtype=np.float64)
    y = table["y"].to_numpy(dtype=np.float64)
    rank = table["rank"].to_numpy()
    flagged = table["flagged"].to_numpy(dtype=bool)
    extent = map_extent(x, y)
    bins = bin_index(x, y, extent)
    top_flagged = top_ranked(rank, flagged, limit)
    traces: list[go.Scattergl] = []

    def markers(mask: np.ndarray, name: str, **marker) -> go.Scattergl:
        rows = table.loc[mask]
        return _trace(rows, hover_data(rows), np.ones(len(rows), dtype=bool), name, **marker)

    ring = {"color": "rgba(0,0,0,0)", "size": 8, "line": {"color": "#111111", "width": 1.1}}
    if colour == "flagged":
        image = categorical_density(bins, flagged.astype(np.int64), [PLAIN_COLOUR, FLAG_COLOUR])
        traces.append(_legend_entry("not flagged", PLAIN_COLOUR))
        traces.append(
            markers(top_flagged, f"flagged (top {int(top_flagged.sum()):,} as points)", color=FLAG_COLOUR, size=6)
        )
    elif colour == "score":
        score = table["score"].to_numpy(dtype=float)
        finite = score[np.isfinite(score)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        image = continuous_density(bins, score, sequential.Viridis, value_range=(low, high))
        colourbar = {"title": {"text": "score (mean per pixel)"}, "thickness": 12}
        traces.append(
            markers(
                top_flagged,
                "flagged (ring)",
                color=score[top_flagged],
                colorscale="Viridis",
                cmin=low,
                cmax=high,
                colorbar=colourbar,
                size=7,
                line={"color": "#111111", "width": 1.1},
            )
        )
    elif colour == "given label":
        given = table["given_label"].to_numpy(dtype=str)
        names, codes = np.unique(given, return_inverse=True)
        order = sorted(range(len(names)), key=lambda i: natural_key(str(names[i])))
        palette = np.empty(len(names), dtype=object)
        palette[order] = class_palette(len(names))
        image = categorical_density(bins, codes, list(palette))
        traces += [_legend_entry(str(label_markup([names[i]])[0]), palette[i]) for i in order]
        traces.append(markers(top_flagged, "flagged (ring)", **ring))
    else:
        states = decision_states(table, decisions)
        present = [state for state in ("undecided", *ACTIONS) if (states == state).any()]
        codes = pd.Series(states).map({state: i for i, state in enumerate(present)}).to_numpy(dtype=np.int64)
        image = categorical_density(bins, codes, [DECISION_COLOURS[state] for state in present])
        traces.append(_legend_entry("undecided", DECISION_COLOURS["undecided"]))
        decided = top_ranked(rank, states != "undecided", limit)
        for state in ACTIONS:
            mask = decided & (states == state)
            if mask.any():
                traces.append(markers(mask, state, color=DECISION_COLOURS[state], size=7))
        traces.append(markers(top_flagged, "flagged (ring)", **ring))
    figure = _layout(go.Figure(traces), table)
    x0, x1, y0, y1 = extent
    figure.update_layout(
        images=[
            {
                "source": png_data_uri(image),
                "xref": "x",
                "yref": "y",
                "x": x0,
                "y": y1,
                "sizex": x1 - x0,
                "sizey": y1 - y0,
                "xanchor": "left",
                "yanchor": "top",
                "sizing": "stretch",
                "layer": "below",
            }
        ],
        xaxis={"range": [x0, x1], "autorange": False},
        yaxis={"range": [y0, y1], "autorange": False},
        plot_bgcolor="white",
    )
    return figure
