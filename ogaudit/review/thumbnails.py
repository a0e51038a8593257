"""Samples as pictures for a reviewer: thumbnails of image datasets, at a chosen size, and the small ones the map
shows when the pointer rests on a point (:func:`hover_thumbnails`, as data URIs)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ogaudit.data.dataset import Dataset, to_display_pixels


def thumbnail(dataset: Dataset, index: int, size: int = 160) -> np.ndarray | None:
    """Sample ``index`` as an image array whose longer side is ``size`` pixels, or None for feature vectors.

    Small images (8×8 digits, 28×28 MNIST) are enlarged with nearest-neighbour so their pixels stay crisp.
    """
    if not dataset.is_image:
        return None
    pixels = dataset.image(index)  # uint8, also for float arrays normalised by the user's pipeline
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    scale = size / max(image.size)
    if scale != 1:
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    return np.asarray(image)


def thumbnail_strip(dataset: Dataset, indices, size: int = 48, gap: int = 3) -> np.ndarray | None:
    """The samples ``indices`` side by side, each in a ``size`` × ``size`` cell (uint8, RGB), or None for vectors."""
    if not dataset.is_image or len(indices) == 0:
        return None
    cells = []
    for index in indices:
        image = thumbnail(dataset, int(index), size)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        cell = np.full((size, size + gap, 3), 255, dtype=np.uint8)
        cell[: image.shape[0], : image.shape[1]] = image[..., :3]
        cells.append(cell)
    return np.hstack(cells)[:, :-gap]


HOVER_SIZE = 48
"""Longer side, in pixels, of the thumbnails shown when the pointer rests on a point of the map."""
HOVER_LIMIT = 2_000
"""At most this many samples get a hover thumbnail: the flagged ones by rank, then a sample of the rest."""
HOVER_BYTES = 1_500_000
"""At most this many characters of data URIs in all: the page receives them once per run (a repeated message of
this size is sent as a reference to the one the browser holds)."""
HOVER_CHUNK = 256
"""Samples read and scaled at a time (an :class:`~ogaudit.data.imagefiles.ImageFiles` decodes them then)."""


def hover_rows(rank: np.ndarray, flagged: np.ndarray, *, limit: int = HOVER_LIMIT, others: bool = True, seed: int = 0):
    """(k,) int64 rows to give a hover thumbnail, in the order they are made (the budget may stop before the end):
    the flagged rows, most suspicious (lowest ``rank``) first, then, when ``others`` (every point is drawn), a
    seeded random order of the rest; at most ``limit``.

    ``rank`` (N,) and ``flagged`` (N,) bool are a run table's columns. A density map draws only flagged samples as
    points, so it passes ``others=False``.
    """
    rank = np.asarray(rank)
    flagged = np.asarray(flagged, dtype=bool)
    if len(rank) != len(flagged):
        raise ValueError(f"rank has {len(rank):,} rows but flagged has {len(flagged):,}; give a run table's columns.")
    if limit < 0:
        raise ValueError(f"limit={limit} must be 0 or more.")
    first = np.flatnonzero(flagged)
    first = first[np.argsort(rank[first], kind="stable")]
    if not others or len(first) >= limit:
        return first[:limit].astype(np.int64)
    rest = np.flatnonzero(~flagged)
    rest = np.random.default_rng(seed).permutation(rest)[: limit - len(first)]
    return np.concatenate([first, rest]).astype(np.int64)


def _scale_axis(pixels: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """``pixels`` resized along ``axis`` to ``n_out``: nearest neighbour when enlarging (PIL's NEAREST: the source
    pixel under each target pixel's centre, so small digits stay crisp), the mean of each target pixel's source
    pixels when shrinking (a box filter over whole source pixels)."""
    n_in = pixels.shape[axis]
    if n_out == n_in:
        return pixels
    if n_out > n_in:
        source = np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)
        return np.take(pixels, source, axis=axis)
    starts = np.rint(np.arange(n_out) * (n_in / n_out)).astype(np.int64)  # each box's edges rounded to whole pixels
    sums = np.add.reduceat(pixels.astype(np.uint32), starts, axis=axis)
    counts = np.diff(np.append(starts, n_in)).astype(np.uint32)
    shape = [1] * pixels.ndim
    shape[axis] = n_out
    return ((sums + counts.reshape(shape) // 2) // counts.reshape(shape)).astype(np.uint8)


def scaled_batch(pixels: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w, C) uint8 images whose longer side is ``size``, from (n, H, W, C) uint8 ones, vectorised over the
    batch (see :func:`_scale_axis`)."""
    height, width = pixels.shape[1:3]
    scale = size / max(height, width)
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    return _scale_axis(_scale_axis(pixels, 1, out_h), 2, out_w)


def image_data_uri(image: np.ndarray, *, photo: bool = False) -> str:
    """A ``data:`` URI of one (h, w, C) uint8 image: PNG (lossless: digits, drawings, anything enlarged), or JPEG
    at quality 85 for ``photo`` (RGB shrunk from a bigger picture: a fifth of the PNG's bytes at 48 px)."""
    buffer = io.BytesIO()
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image[..., :3])
    if photo:
        picture.save(buffer, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def hover_thumbnails(dataset: Dataset, rows, *, size: int = HOVER_SIZE, budget: int = HOVER_BYTES) -> dict[str, str]:
    """``{sample_id: data URI}`` of the samples at ``rows`` (positions in ``dataset``, in priority order, e.g.
    :func:`hover_rows`), each at most ``size`` pixels on its longer side, for the map's hover.

    Read and scaled :data:`HOVER_CHUNK` samples at a time (one batched read and one vectorised resize per chunk;
    only the PNG/JPEG encoding is per image), and stopped before the URIs' total length would pass ``budget``
    characters: the samples not reached get no thumbnail. Empty for feature vectors and texts (the hover shows a
    text's start already). Raises ``ValueError`` for a ``size`` under 1 or a negative ``budget``.
    """
    if size < 1 or budget < 0:
        raise ValueError(f"size={size} must be at least 1 and budget={budget} 0 or more.")
    if not dataset.is_image or dataset.is_text:
        return {}
    rows = np.asarray(rows, dtype=np.int64)
    photo = dataset.x.shape[-1] >= 3 and max(dataset.x.shape[1:3]) > size
    thumbs: dict[str, str] = {}
    spent = 0
    for start in range(0, len(rows), HOVER_CHUNK):
        chunk = rows[start : start + HOVER_CHUNK]
        pixels = to_display_pixels(np.asarray(dataset.x[chunk]), dataset.value_range)
        for row, image in zip(chunk, scaled_batch(pixels, size), strict=True):
            uri = image_data_uri(image, photo=photo)
            if spent + len(uri) > budget:
                return thumbs
            spent += len(uri)
            thumbs[str(dataset.sample_ids[row])] = uri
    return thumbs
