"""Samples as pictures for a reviewer: thumbnails of image datasets, at a chosen size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ogaudit.data import Dataset


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
