"""The density map's data: binning, shading, the PNG, the most suspicious markers, and selection by outline
(checked against a plain loop over points and edges)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ogaudit.map.density import (
    MIN_OPACITY,
    bin_index,
    categorical_density,
    continuous_density,
    in_polygon,
    map_extent,
    png_data_uri,
    points_in_selection,
    top_ranked,
)


def _inside_reference(px: float, py: float, polygon: list[tuple[float, float]]) -> bool:
    """Even-odd ray casting, one point at a time (the slow reference)."""
    inside = False
    for i in range(len(polygon)):
        (ax, ay), (bx, by) = polygon[i], polygon[i - 1]
        if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


@pytest.mark.parametrize("seed", range(4))
def test_in_polygon_matches_a_loop_over_points(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1.5, 1.5, 2000), rng.uniform(-1.5, 1.5, 2000)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9 + seed))
    radius = rng.uniform(0.3, 1.2, len(angles))
    px, py = radius * np.cos(angles), radius * np.sin(angles)
    if seed == 3:  # a self-crossing loop (a figure eight): the even-odd rule decides, as in plotly's lasso
        px, py = np.array([-1, 1, 1, -1.0]), np.array([-1, 1, -1, 1.0])
    expected = [_inside_reference(a, b, list(zip(px, py, strict=True))) for a, b in zip(x, y, strict=True)]
    got = in_polygon(x, y, px, py)
    assert got.tolist() == expected
    assert 0 < got.sum() < len(x)


def test_points_in_selection_unites_boxes_and_lassos_and_counts_box_edges():
    x = np.array([0.0, 1.0, 2.0, 3.0, 5.0, np.nan])
    y = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 1.0])
    box = {"xref": "x", "yref": "y", "x": [1.0, 0.0], "y": [0.0, 1.0]}  # corners in either order
    lasso = {"x": [4, 6, 6, 4], "y": [4, 4, 6, 6]}
    assert points_in_selection(x, y, {"box": [box]}).tolist() == [True, True, False, False, False, False]
    both = points_in_selection(x, y, {"box": [box], "lasso": [lasso]})
    assert np.flatnonzero(both).tolist() == [0, 1, 4]
    assert not points_in_selection(x, y, {"points": [{"x": 0}]}).any() and not points_in_selection(x, y, None).any()


@pytest.mark.parametrize(
    "selection, message",
    [({"box": [{"x": [0]}]}, "box selection"), ({"lasso": [{"x": [0, 1, 2], "y": [0, 1]}]}, "3 x and 2 y")],
)
def test_points_in_selection_refuses_malformed_outlines(selection, message):
    with pytest.raises(ValueError, match=message):
        points_in_selection(np.zeros(3), np.zeros(3), selection)


def test_map_extent_pads_and_handles_degenerate_axes():
    assert map_extent(np.array([0.0, 10.0, np.inf]), np.array([5.0, 5.0, 0.0]), pad=0.1) == (-1.0, 11.0, 4.9, 5.1)
    with pytest.raises(ValueError, match="finite"):
        map_extent(np.array([np.nan]), np.array([1.0]))


def test_bin_index_puts_row_zero_at_the_lowest_y_and_drops_outside_points():
    extent = (0.0, 4.0, 0.0, 2.0)
    x = np.array([0.0, 3.99, 3.99, 0.5, 4.5, np.nan])
    y = np.array([0.0, 0.0, 1.99, 1.5, 1.0, 1.0])
    assert bin_index(x, y, extent, shape=(2, 4)).tolist() == [0, 3, 7, 4, -1, -1]


def test_categorical_density_mixes_colours_by_count_and_scales_opacity_by_log_count():
    shape = (2, 2)
    # bin 0 (bottom left): 3 red + 1 blue; bin 3 (top right): 1 blue; bins 1, 2 empty
    bins = np.array([0, 0, 0, 0, 3])
    codes = np.array([0, 0, 0, 1, 1])
    image = categorical_density(bins, codes, ["#ff0000", "#0000ff"], shape=shape)
    assert image.shape == (2, 2, 4) and image.dtype == np.uint8
    bottom_left, top_right = image[1, 0], image[0, 1]  # image row 0 is the top of the map
    assert bottom_left.tolist() == [191, 0, 64, 255]  # 3/4 red + 1/4 blue; the fullest bin is opaque
    assert top_right[:3].tolist() == [0, 0, 255]
    one = MIN_OPACITY + (1 - MIN_OPACITY) * np.log(2) / np.log(5)
    assert top_right[3] == round(255 * one)
    assert image[0, 0, 3] == 0 and image[1, 1, 3] == 0
    with pytest.raises(ValueError, match="codes must lie"):
        categorical_density(bins, codes + 1, ["#ff0000", "#0000ff"], shape=shape)


def test_continuous_density_colours_each_bin_by_its_mean():
    bins = np.array([0, 0, 1, 2])
    values = np.array([0.0, 1.0, 1.0, 0.0])  # bin 0 mean 0.5, bin 1 high, bin 2 low
    image = continuous_density(bins, values, ["#000000", "#ffffff"], shape=(1, 4), value_range=(0.0, 1.0))
    assert image[0, 0, :3].tolist() == [128, 128, 128]
    assert image[0, 1, :3].tolist() == [255, 255, 255] and image[0, 2, :3].tolist() == [0, 0, 0]
    assert image[0, 3, 3] == 0


def test_png_data_uri_round_trips_the_image():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    uri = png_data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert np.array_equal(decoded, image)


def test_top_ranked_keeps_the_most_suspicious_within_the_mask():
    rank = np.array([5, 1, 3, 2, 4, 6])
    mask = np.array([True, False, True, True, True, True])
    assert np.flatnonzero(top_ranked(rank, mask, limit=2)).tolist() == [2, 3]
    assert top_ranked(rank, mask, limit=10).tolist() == mask.tolist()
