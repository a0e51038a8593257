"""Data for drawing a gradient map of any size: a density image of every point, and the points inside a
selection found from its outline.

A browser cannot hold a million plotly markers: each travels as JSON with its hover text, and plotly redraws every
one in WebGL (software WebGL on a server without a GPU) at each move of a box drag. Above
:data:`DENSITY_ABOVE` points the app draws instead one raster of the whole map (a 2-D histogram, coloured the way
datashader shades aggregates: the count-weighted mean of the category colours, the mean of a continuous value,
opacity growing with the log of the count) as a PNG of a few hundred KB, plus at most :data:`MARKER_LIMIT`
individual markers (the most suspicious samples) with their hover text. A box or lasso then reports only its
outline; :func:`points_in_selection` finds every sample inside it on the server, vectorised over the samples.

Nothing here imports Streamlit or plotly: arrays in, arrays (or PNG bytes) out.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

DENSITY_ABOVE = 20_000
"""Maps with more points than this are drawn as a density image plus the most suspicious points."""
MARKER_LIMIT = 5_000
"""At most this many individual markers (hover, click) on a density map: the top of the ranking."""
IMAGE_SHAPE = (320, 640)
"""(rows, columns) of the density image; about one bin per 2 screen pixels of the app's 560 px high map."""
MIN_OPACITY = 0.25
"""Opacity of a bin holding one sample; the fullest bin is opaque, log-scaled in between."""


def map_extent(x: np.ndarray, y: np.ndarray, pad: float = 0.02) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)``: the bounding box of the finite points, widened by ``pad`` of its size on each side.

    A degenerate axis (one point, or all points on a line) gets a width of 1. Raises ``ValueError`` when no
    point is finite.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        raise ValueError(f"None of the {len(x):,} map points has finite coordinates; run the audit again.")
    bounds = []
    for values in (x[finite], y[finite]):
        low, high = float(values.min()), float(values.max())
        width = high - low if high > low else 1.0
        bounds += [low - pad * width, high + pad * width]
    return tuple(bounds)


def bin_index(
    x: np.ndarray, y: np.ndarray, extent: Sequence[float], shape: tuple[int, int] = IMAGE_SHAPE
) -> np.ndarray:
    """(N,) int64 flat bin of each point in a ``shape`` (rows, columns) grid over ``extent``; row 0 is the
    lowest y. Points outside the extent (or not finite) get -1."""
    rows, columns = shape
    x0, x1, y0, y1 = extent
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        column = np.floor((x - x0) / (x1 - x0) * columns)
        row = np.floor((y - y0) / (y1 - y0) * rows)
    inside = (column >= 0) & (column < columns) & (row >= 0) & (row < rows)
    flat = np.full(len(x), -1, dtype=np.int64)
    flat[inside] = row[inside].astype(np.int64) * columns + column[inside].astype(np.int64)
    return flat


def hex_to_rgb(colours: Sequence[str]) -> np.ndarray:
    """(K, 3) float RGB in [0, 255] of ``#rrggbb`` colours."""
    return np.array([[int(c.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)] for c in colours], dtype=np.float64)


def _opacity(counts: np.ndarray) -> np.ndarray:
    """(bins,) opacity in [0, 1]: 0 for empty bins, MIN_OPACITY for one sample, 1 for the fullest bin."""
    top = counts.max()
    if top <= 0:
        return np.zeros(counts.shape)
    scale = np.log1p(counts) / np.log1p(top) if top > 1 else (counts > 0).astype(np.float64)
    return np.where(counts > 0, MIN_OPACITY + (1 - MIN_OPACITY) * scale, 0.0)


def _image(rgb: np.ndarray, counts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    alpha = _opacity(counts)
    rgba = np.concatenate([rgb, 255 * alpha[:, None]], axis=1)
    image = np.clip(np.rint(rgba), 0, 255).astype(np.uint8).reshape(*shape, 4)
    return image[::-1]  # image row 0 is the top of the map


def categorical_density(
    bins: np.ndarray, codes: np.ndarray, colours: Sequence[str], shape: tuple[int, int] = IMAGE_SHAPE
) -> np.ndarray:
    """(rows, columns, 4) uint8 RGBA image, top row = highest y: each bin's colour is the count-weighted mean of
    ``colours[codes]`` of its points (datashader's categorical shading), its opacity the log of its count.

    ``bins`` (N,) from :func:`bin_index` (-1 = left out); ``codes`` (N,) ints in ``[0, len(colours))``.
    """
    n_bins, n_codes = shape[0] * shape[1], len(colours)
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) != len(bins):
        raise ValueError(f"codes has {len(codes):,} values for {len(bins):,} points.")
    if len(codes) and (codes.min() < 0 or codes.max() >= n_codes):
        raise ValueError(f"codes must lie in [0, {n_codes}) (one per colour); got {codes.min()}..{codes.max()}.")
    keep = bins >= 0
    per_code = np.bincount(codes[keep] * n_bins + bins[keep], minlength=n_codes * n_bins).reshape(n_codes, n_bins)
    counts = per_code.sum(axis=0)
    rgb = per_code.T @ hex_to_rgb(colours) / np.maximum(counts, 1)[:, None]
    return _image(rgb, counts, shape)


def continuous_density(
    bins: np.ndarray,
    values: np.ndarray,
    colourscale: Sequence[str],
    shape: tuple[int, int] = IMAGE_SHAPE,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """(rows, columns, 4) uint8 RGBA image: each bin coloured by the mean of ``values`` (N,) of its points on
    ``colourscale`` (evenly spaced ``#rrggbb`` stops, low to high, over ``value_range``, default the values'
    min and max), its opacity the log of its count."""
    n_bins = shape[0] * shape[1]
    values = np.asarray(values, dtype=np.float64)
    keep = (bins >= 0) & np.isfinite(values)
    counts = np.bincount(bins[keep], minlength=n_bins)
    sums = np.bincount(bins[keep], weights=values[keep], minlength=n_bins)
    mean = sums / np.maximum(counts, 1)
    low, high = (
        value_range
        if value_range is not None
        else ((float(values[keep].min()), float(values[keep].max())) if keep.any() else (0.0, 1.0))
    )
    position = np.clip((mean - low) / (high - low if high > low else 1.0), 0, 1) * (len(colourscale) - 1)
    stops = hex_to_rgb(colourscale)
    below = np.minimum(np.floor(position).astype(np.int64), len(colourscale) - 2) if len(stops) > 1 else 0
    if len(stops) == 1:
        rgb = np.repeat(stops, n_bins, axis=0)
    else:
        t = (position - below)[:, None]
        rgb = stops[below] * (1 - t) + stops[below + 1] * t
    return _image(rgb, counts, shape)


def png_data_uri(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of an (rows, columns, 4) uint8 RGBA image (plotly's layout image
    ``source``)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGBA").save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def top_ranked(rank: np.ndarray, mask: np.ndarray, limit: int = MARKER_LIMIT) -> np.ndarray:
    """(N,) bool: at most ``limit`` of the points in ``mask``, those with the lowest ``rank`` (most suspicious)."""
    mask = np.asarray(mask, dtype=bool)
    chosen = np.flatnonzero(mask)
    if len(chosen) > limit:
        chosen = chosen[np.argsort(np.asarray(rank)[chosen], kind="stable")[:limit]]
    out = np.zeros(len(mask), dtype=bool)
    out[chosen] = True
    return out


def in_polygon(x: np.ndarray, y: np.ndarray, px: Sequence[float], py: Sequence[float]) -> np.ndarray:
    """(N,) bool: points strictly inside the closed polygon with vertices ``(px, py)``, by the even-odd rule
    (ray casting; a self-crossing lasso selects what plotly's own lasso selects). The loop runs over the
    polygon's edges, each vectorised over the points that lie in the polygon's bounding box."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    inside = np.zeros(len(x), dtype=bool)
    if len(px) < 3:
        return inside
    candidates = np.flatnonzero((x >= px.min()) & (x <= px.max()) & (y >= py.min()) & (y <= py.max()))
    cx, cy = x[candidates], y[candidates]
    odd = np.zeros(len(candidates), dtype=bool)
    for (ax, ay), (bx, by) in zip(
        zip(px, py, strict=True), zip(np.roll(px, 1), np.roll(py, 1), strict=True), strict=True
    ):
        if ay == by:
            continue
        crosses = (ay > cy) != (by > cy)
        at = ax + (cy - ay) * (bx - ax) / (by - ay)
        odd ^= crosses & (cx < at)
    inside[candidates[odd]] = True
    return inside


def points_in_selection(x: np.ndarray, y: np.ndarray, selection: Mapping | None) -> np.ndarray:
    """(N,) bool: the points inside any box or lasso of a plotly selection, as Streamlit reports it
    (``{"box": [{"x": [x0, x1], "y": [y0, y1]}, ...], "lasso": [{"x": [...], "y": [...]}, ...]}``, data
    coordinates). Points exactly on a box's edge count as inside. Raises ``ValueError`` on a malformed outline.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    chosen = np.zeros(len(x), dtype=bool)
    for box in (selection or {}).get("box") or []:
        try:
            (x0, x1), (y0, y1) = sorted(map(float, box["x"])), sorted(map(float, box["y"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"A box selection needs x and y as two numbers each; got {box!r}.") from error
        chosen |= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    for lasso in (selection or {}).get("lasso") or []:
        try:
            px, py = [float(v) for v in lasso["x"]], [float(v) for v in lasso["y"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"A lasso selection needs x and y as lists of numbers; got {lasso!r}.") from error
        if len(px) != len(py):
            raise ValueError(f"A lasso selection has {len(px)} x and {len(py)} y coordinates.")
        chosen |= in_polygon(x, y, px, py)
    return chosen
