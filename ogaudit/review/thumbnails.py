"""Samples as pictures for a reviewer: thumbnails of image datasets, at a chosen size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ogaudit.data.dataset import Dataset


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
