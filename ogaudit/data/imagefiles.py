"""Reading image files: headers checked before decoding, tool junk, EXIF orientation, one mode and size, and
:class:`ImageFiles`, the samples of a folder too large to hold, decoded a batch at a time.

Files that tools leave behind are never samples (:func:`is_tool_junk`, the one rule for folders, manifests and
uploads); photos are turned as their EXIF orientation says.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ogaudit.data.limits import MAX_IMAGE_PIXELS, ImageHeader, decode_reduced, header_of, open_image, reduction
from ogaudit.errors import DataError
from ogaudit.storage import fingerprint

IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".heic",
    ".heif",
    ".hif",
}


MAX_SIDE = 224


MIN_IMAGE_SIDE = 4
"""Images need this many pixels a side for the CNN's two pooling steps; smaller image files are skipped, and
smaller arrays are read as feature vectors."""


TOOL_JUNK_NAMES = {
    "__macosx": "macOS zip metadata",
    "thumbs.db": "Windows thumbnail cache",
    "ehthumbs.db": "Windows thumbnail cache",
    "ehthumbs_vista.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "$recycle.bin": "Windows recycle bin",
    "system volume information": "Windows system folder",
    "@eadir": "Synology thumbnail folder",
    "#recycle": "NAS recycle bin",
    "#snapshot": "NAS snapshot folder",
    "lost+found": "file-system recovery folder",
    "__pycache__": "Python cache",
    "icon\r": "macOS folder icon",
}


def tool_junk_reason(relative_path: str) -> str | None:
    """Why ``relative_path`` is something a tool left behind rather than data, or None when it is not.

    One rule for every entry point (ImageFolder, manifest rows, zip uploads): a path is junk when any of its parts
    is hidden (starts with ``.``: ``.DS_Store``, AppleDouble ``._x.png``, ``.ipynb_checkpoints``, ``.git``,
    ``.thumbnails``, ``.Trash-1000`` ...), is a known metadata or cache name (``__MACOSX``, ``Thumbs.db``,
    ``desktop.ini``, ``@eaDir``, ``$RECYCLE.BIN``, ``lost+found`` ...; any case), is an Office lock file (``~$x``)
    or an editor backup (``x~``). Both ``/`` and ``\\`` separate parts; ``.`` and ``..`` parts are not junk
    (escaping the root is refused elsewhere).
    """
    for part in re.split(r"[\\/]", relative_path):
        if part in ("", ".", ".."):
            continue
        known = TOOL_JUNK_NAMES.get(part.casefold())
        if known:
            return f"left by a tool ({part!r}: {known}), not a sample"
        if part.startswith("."):
            return f"left by a tool ({part!r}: a hidden file or folder), not a sample"
        if part.startswith("~$") or part.endswith("~"):
            return f"left by a tool ({part!r}: a lock file or editor backup), not a sample"
    return None


def is_tool_junk(relative_path: str) -> bool:
    """Whether ``relative_path`` (``/`` or ``\\`` separated) is left by a tool, never data; see
    :func:`tool_junk_reason`."""
    return tool_junk_reason(relative_path) is not None


def read_image(path: Path) -> tuple[Image.Image | None, str | None]:
    """Open and fully decode one image as a viewer shows it (EXIF orientation applied); return it or the reason
    it cannot be used."""
    try:
        with open_image(path) as image:  # sizes checked here (Pillow's own guard is left to open_image)
            width, height = image.size
            if reduction(image) is None:
                return None, _too_large(image)
            if min(width, height) < MIN_IMAGE_SIDE:
                return None, f"image too small ({width}x{height} pixels; at least {MIN_IMAGE_SIDE} a side)"
            decoded = decode_reduced(image)
            return _to_standard_mode(ImageOps.exif_transpose(decoded)), None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None, "image too large (decompression bomb guard)"
    except UnidentifiedImageError:
        return None, "not a readable image"
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as error:
        return None, f"corrupt or truncated image: {error}"


def _too_large(image: Image.Image) -> str:
    width, height = image.size
    if image.format == "JPEG":
        return f"image too large ({width}x{height} pixels; a JPEG up to {MAX_IMAGE_PIXELS * 64:,} is read at 1/8 scale)"
    return f"image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,}; JPEG and HEIC photos are reduced)"


def read_image_as_shown(path: str | Path) -> Image.Image:
    """One image file as a viewer shows it: decoded, EXIF orientation applied, in its own mode.

    For thumbnails and previews of files. Raises :class:`DataError` naming the file when it cannot be read.
    """
    try:
        with open_image(path) as image:
            if reduction(image) is None:
                raise DataError(f"Cannot show the image {str(path)!r}: {_too_large(image)}.")
            return ImageOps.exif_transpose(decode_reduced(image))
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"Cannot read the image {str(path)!r}: {error}.") from error


def _to_standard_mode(image: Image.Image) -> Image.Image:
    """Bring any PIL mode to 8-bit "L" (grayscale) or "RGB"."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(values.max(), 1.0)
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode in ("1", "L"):
        return image.convert("L")
    if image.mode == "LA":
        return image.convert("L")
    return image.convert("RGB")


DATA_WORKERS = min(4, os.cpu_count() or 1)
"""Worker processes that decode image files for a forward pass (``torch.utils.data.DataLoader``)."""


def image_headers(root: Path, rels: list[str]) -> list[ImageHeader | None]:
    """Each file's size as shown (EXIF orientation applied) and mode, from its header; None when unreadable."""

    def read(rel: str) -> ImageHeader | None:
        try:
            with open_image(root / rel) as image:
                header = header_of(image)
                turned = _orientation(image) in (5, 6, 7, 8)  # transposed or rotated a quarter turn
                return replace(header, width=header.height, height=header.width) if turned else header
        except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(read, rels))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored) from what the header gave. Pillow's ``PngImageFile.getexif``
    decodes the whole image to look for an ``eXIf`` chunk after the pixels, so a PNG's is read only from a chunk
    before them (where the PNG specification puts it)."""
    if image.format == "PNG":
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(0x0112, 1))
    return int(image.getexif().get(0x0112, 1))


def header_problem(header: ImageHeader) -> str | None:
    """The reason :func:`read_image` would skip an image of this size, from its header."""
    if header.width * header.height > MAX_IMAGE_PIXELS:  # held reduced when it could be (header_of): too large
        return (
            f"image too large ({header.width}x{header.height} pixels, limit {MAX_IMAGE_PIXELS:,}; JPEG and HEIC "
            "photos are reduced)"
        )
    if min(header.width, header.height) < MIN_IMAGE_SIDE:
        return f"image too small ({header.width}x{header.height} pixels; at least {MIN_IMAGE_SIDE} a side)"
    return None


GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
"""Modes :func:`_to_standard_mode` turns into 8-bit grey; every other mode becomes RGB."""


def common_layout(headers: list[ImageHeader]) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` that :func:`stack_images` gives these images, from their headers."""
    if not headers:
        return None
    width, height = Counter((h.width, h.height) for h in headers).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    channels = 3 if any(h.mode not in GREY_MODES for h in headers) else 1
    return max(1, round(height * scale)), max(1, round(width * scale)), channels


class ImageFiles:
    """Image files read when asked, as a read-only uint8 array (N, H, W, C) would be.

    Every file is decoded as :func:`read_image` decodes it (EXIF orientation, standard mode), converted to
    ``mode`` and resized (bilinear) to ``size`` exactly as :func:`stack_images` does, so its pixels equal the
    in-memory array's. Indexing: an int gives (H, W, C); an int array or mask gives (n, H, W, C), decoded; a slice
    gives another :class:`ImageFiles` (nothing decoded), and ``numpy.asarray`` decodes it. :meth:`batches` decodes
    in ``DATA_WORKERS`` worker processes (a :class:`torch.utils.data.DataLoader`), for forward passes.

    Raises :class:`DataError` naming the file when one cannot be decoded (its header was readable at load).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, root: str | Path, paths: np.ndarray, size: tuple[int, int], mode: str):
        self.root, self.paths, self.size, self.mode = Path(root), np.asarray(paths), tuple(size), mode

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size[1], self.size[0], 3 if self.mode == "RGB" else 1)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({str(self.root)!r}, {len(self)} files, shape {self.shape})"

    def take(self, index) -> ImageFiles:
        """The files at ``index`` (int array, mask or slice), still unread."""
        return ImageFiles(self.root, self.paths[index], self.size, self.mode)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(index)
        if np.ndim(index) == 0:
            return self.decode(int(index))
        chosen = self.paths[np.asarray(index)]
        return (
            np.stack([self._decode_path(rel) for rel in chosen])
            if len(chosen)
            else np.zeros((0, *self.shape[1:]), np.uint8)
        )

    def __array__(self, dtype=None, copy=None):
        pixels = self[np.arange(len(self))]
        return pixels if dtype is None else pixels.astype(dtype)

    def decode(self, index: int) -> np.ndarray:
        """Sample ``index`` as (H, W, C) uint8."""
        return self._decode_path(self.paths[index])

    def _decode_path(self, rel: str) -> np.ndarray:
        image, problem = read_image(self.root / rel)
        if problem:
            raise DataError(
                f"{rel!r} under {str(self.root)!r} cannot be decoded ({problem}), though its header was readable "
                "when the data were listed. Remove or replace the file, then scan again."
            )
        image = image.convert(self.mode)
        if image.size != self.size:
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        pixels = np.array(image, dtype=np.uint8)  # a writable copy, as torch expects
        return pixels if pixels.ndim == 3 else pixels[..., None]

    def batches(self, batch_size: int, *, workers: int | None = None):
        """Yield (b, H, W, C) uint8 arrays of ``batch_size`` samples in order, decoded by worker processes."""
        import torch.utils.data

        workers = DATA_WORKERS if workers is None else workers
        loader = torch.utils.data.DataLoader(
            _DecodedFiles(self),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers if len(self) > batch_size else 0,
        )
        for batch in loader:
            yield batch.numpy()

    def digest(self) -> str:
        """SHA-256 (16 hex) of the layout, the paths and every file's bytes, read a file at a time."""
        import hashlib

        sha = hashlib.sha256(fingerprint("image-files", list(self.size), self.mode, self.paths).encode())
        for rel in self.paths:
            with open(self.root / rel, "rb") as handle:
                while block := handle.read(1 << 20):
                    sha.update(block)
        return sha.hexdigest()[:16]


class _DecodedFiles:
    """``torch.utils.data.Dataset`` of one :class:`ImageFiles`: item ``i`` is its (H, W, C) uint8 tensor."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        import torch

        return torch.from_numpy(self.files.decode(index))


def stack_images(images: list[Image.Image]) -> np.ndarray:
    """One array of a common size and mode: the most frequent size (sides capped at ``MAX_SIDE``)."""
    rgb = any(image.mode == "RGB" for image in images)
    width, height = Counter(image.size for image in images).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    arrays = []
    for image in images:
        image = image.convert("RGB" if rgb else "L")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    x = np.stack(arrays)
    return x if x.ndim == 4 else x[..., None]
