"""The map's hover pictures: which samples get one, the vectorised resize against PIL's, the byte budget, and what
each data URI holds."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from ogaudit.review.thumbnails import (
    HOVER_SIZE,
    hover_rows,
    hover_thumbnails,
    image_data_uri,
    scaled_batch,
    thumbnail,
)


def decode(uri: str) -> Image.Image:
    kind, payload = uri.split(",", 1)
    assert kind in ("data:image/png;base64", "data:image/jpeg;base64")
    return Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))


def test_hover_rows_flagged_by_rank_first_then_a_seeded_sample_of_the_rest():
    rank = np.array([5, 1, 4, 2, 3, 6, 7, 8])
    flagged = np.array([False, True, False, True, True, False, False, False])
    rows = hover_rows(rank, flagged, limit=6, seed=0)
    assert rows[:3].tolist() == [1, 3, 4]  # the flagged rows, most suspicious first
    assert len(rows) == 6 and set(rows[3:]) <= {0, 2, 5, 6, 7} and len(set(rows)) == 6
    assert np.array_equal(rows, hover_rows(rank, flagged, limit=6, seed=0))
    assert hover_rows(rank, flagged, limit=2).tolist() == [1, 3]
    assert hover_rows(rank, flagged, limit=6, others=False).tolist() == [1, 3, 4]  # a density map's points
    with pytest.raises(ValueError, match="rank has 8 rows but flagged has 2"):
        hover_rows(rank, flagged[:2])


def smooth_images(n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """(n, *shape) uint8 pictures with edges and gradients (random 6×6 images enlarged bilinearly), not noise."""
    rng = np.random.default_rng(0)
    height, width, channels = shape
    images = []
    for _ in range(n):
        coarse = Image.fromarray(
            rng.integers(0, 256, (6, 6, channels), dtype=np.uint8).squeeze(-1)
            if channels == 1
            else rng.integers(0, 256, (6, 6, channels), dtype=np.uint8)
        )
        images.append(np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR)).reshape(shape))
    return np.stack(images)


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (10, 7, 3), (96, 96, 3), (100, 61, 1)])
def test_scaled_batch_matches_pil_per_image(shape):
    """The reference is PIL one image at a time: NEAREST when enlarging (exactly), BOX when shrinking (close: PIL
    weighs the source pixels a target pixel covers in part, this takes whole ones)."""
    pixels = smooth_images(5, shape)
    batch = scaled_batch(pixels, HOVER_SIZE)
    height, width = shape[:2]
    scale = HOVER_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    assert batch.shape == (5, size[1], size[0], shape[2]) and batch.dtype == np.uint8
    for image, scaled in zip(pixels, batch, strict=True):
        picture = Image.fromarray(image[..., 0] if shape[2] == 1 else image)
        if scale > 1:
            reference = np.asarray(picture.resize(size, Image.Resampling.NEAREST))
            assert np.array_equal(scaled.reshape(reference.shape), reference)
        else:
            reference = np.asarray(picture.resize(size, Image.Resampling.BOX)).astype(int)
            assert np.abs(scaled.reshape(reference.shape).astype(int) - reference).mean() < 1


def test_hover_thumbnails_are_each_samples_own_picture(digits):
    rows = np.array([5, 0, 17])
    thumbs = hover_thumbnails(digits, rows)
    assert list(thumbs) == [str(digits.sample_ids[r]) for r in rows]  # in the order asked
    for row, uri in zip(rows, thumbs.values(), strict=True):
        picture = decode(uri)
        assert picture.format == "PNG" and picture.size == (HOVER_SIZE, HOVER_SIZE)
        assert np.array_equal(np.asarray(picture), thumbnail(digits, int(row), HOVER_SIZE))  # as the cards show it


def test_hover_thumbnails_stop_at_the_byte_budget(digits):
    everything = hover_thumbnails(digits, np.arange(40))
    lengths = [len(uri) for uri in everything.values()]
    budget = sum(lengths[:10]) + lengths[10] // 2
    capped = hover_thumbnails(digits, np.arange(40), budget=budget)
    assert list(capped) == list(everything)[:10] and sum(map(len, capped.values())) <= budget
    assert hover_thumbnails(digits, np.arange(40), budget=0) == {}


def test_hover_thumbnails_of_photos_are_jpeg_and_of_vectors_none(digits):
    photos = np.random.default_rng(1).integers(0, 256, (4, 96, 64, 3), dtype=np.uint8)
    data = replace(digits, x=photos, y=digits.y[:4], sample_ids=np.array(["a", "b", "c", "d"]))
    thumbs = hover_thumbnails(data, [3, 0])
    assert list(thumbs) == ["d", "a"]
    assert decode(thumbs["d"]).format == "JPEG" and decode(thumbs["d"]).size == (32, 48)
    vectors = replace(digits, x=digits.x.reshape(len(digits), -1).astype(np.float32))
    assert hover_thumbnails(vectors, [0, 1]) == {}
    with pytest.raises(ValueError, match="size=0"):
        hover_thumbnails(digits, [0], size=0)


def test_image_data_uri_is_lossless_png_for_grey_images():
    image = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48, 1).astype(np.uint8)
    assert np.array_equal(np.asarray(decode(image_data_uri(image))), image[..., 0])
