"""A memory budget for loading untrusted data, checked from file headers before anything is decoded.

A few megabytes on disk can decode to gigabytes: a 6000×6000 PNG of one colour is ~120 kB and 144 MB decoded,
an ``.npz`` of zeros compresses about 1000:1. Jobs run as threads of the app's server, so a job that runs out
of memory takes the server (and every reviewer) down with it. Before an image folder, an uploaded zip or an
``.npz`` is decoded, its headers are read (an image's size and mode, an array's shape and dtype), the memory
the loader will need is estimated from them, and the load is refused with a :class:`DataError` stating the
estimate when it exceeds the budget.

The budget is ``OGAUDIT_MEMORY_BUDGET`` when set (``"4G"``, ``"512M"``, ``"8GiB"``, plain bytes, or a share
of the machine such as ``"25%"``), else half of the memory this process may use: the smaller of the
machine's RAM (``os.sysconf``) and the container's cgroup limit, when there is one.
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ogaudit.errors import DataError, SettingsError

MEMORY_BUDGET_ENV = "OGAUDIT_MEMORY_BUDGET"
UPLOAD_BUDGET_ENV = "OGAUDIT_UPLOAD_BUDGET"
DEFAULT_UPLOAD_BUDGET = "1G"
"""An uploaded zip is small data: at most this much decoded, whatever the machine; bigger data go under
``OGAUDIT_DATA_ROOTS`` on the server. A visitor's upload then cannot make the audit job grow past it."""
DEFAULT_BUDGET_FRACTION = 0.5
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
# Bytes per pixel as Pillow holds a decoded image: 1 for 1/L/P, 2 for 16-bit, 4 for everything else
# (RGB is stored as 4 bytes per pixel).
_ONE_BYTE_MODES = {"1", "L", "P"}
_TWO_BYTE_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
# Modes the loader turns into 8-bit grayscale (ogaudit.data.imagefiles._to_standard_mode); everything else becomes RGB.
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "F", *_TWO_BYTE_MODES}
NPZ_LOADED_ARRAYS = ("x", "y", "ids", "class_names")
MAX_IMAGE_PIXELS = 40_000_000
"""Pixels of one image as the loader holds it. A larger JPEG is decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft
mode: libjpeg never makes the full-size pixels) and a larger HEIC/HEIF at full size then reduced, so that a 48 to
200 MP phone photo loads; anything larger still is skipped as too large."""
JPEG_SCALES = (2, 4, 8)
HEIF_SCALES = (2, 3, 4)
HEIF_MAX_DECODE_PIXELS = 4 * MAX_IMAGE_PIXELS
"""A HEIC/HEIF is decoded at full size before it is reduced (libheif has no reduced decoding): at most this many
pixels (a 160 MP photo), counted at full size in the memory estimate's decode buffers."""
HEIF_FORMATS = {"HEIF", "AVIF"}


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (phone photos) through ``pillow-heif``; False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()


# ---------------------------------------------------------------- the budget


def total_memory() -> int:
    """Bytes of memory this process may use: the machine's RAM, or the cgroup limit when smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in _CGROUP_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def parse_size(text: str, *, total: int | None = None) -> int:
    """Bytes from ``"4G"``, ``"512M"``, ``"8GiB"``, ``"1000000"`` (units are powers of 1024) or ``"25%"`` of
    ``total`` (this machine's memory by default)."""
    share = _SHARE.match(text)
    if share:
        fraction = float(share.group(1)) / 100
        if not 0 < fraction <= 1:
            raise SettingsError(f"{MEMORY_BUDGET_ENV}={text!r}: a share of memory must be above 0% and at most 100%.")
        return int(fraction * (total_memory() if total is None else total))
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise SettingsError(
            f"{MEMORY_BUDGET_ENV}={text!r} is not a memory size. Give bytes with an optional unit, e.g. "
            "'4G', '512M', '8GiB', or a share of this machine's memory, e.g. '25%'."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class MemoryBudget:
    """How many bytes a single load may need, and where that figure comes from (for messages)."""

    bytes: int
    source: str


def memory_budget(environ: Mapping[str, str] | None = None) -> MemoryBudget:
    """The budget: ``OGAUDIT_MEMORY_BUDGET`` when set, else half of :func:`total_memory`."""
    environ = os.environ if environ is None else environ
    text = environ.get(MEMORY_BUDGET_ENV, "").strip()
    if text:
        return MemoryBudget(parse_size(text), f"{MEMORY_BUDGET_ENV}={text}")
    total = total_memory()
    return MemoryBudget(
        int(total * DEFAULT_BUDGET_FRACTION),
        f"half of the {format_bytes(total)} this machine has; set {MEMORY_BUDGET_ENV} to change it",
    )


def upload_budget(environ: Mapping[str, str] | None = None) -> MemoryBudget:
    """The budget of one uploaded zip: ``OGAUDIT_UPLOAD_BUDGET`` (default 1G), never above :func:`memory_budget`."""
    environ = os.environ if environ is None else environ
    text = environ.get(UPLOAD_BUDGET_ENV, "").strip() or DEFAULT_UPLOAD_BUDGET
    overall = memory_budget(environ)
    upload = parse_size(text)
    if upload >= overall.bytes:
        return overall
    return MemoryBudget(upload, f"{UPLOAD_BUDGET_ENV}={text} for uploads; larger data go in OGAUDIT_DATA_ROOTS")


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; powers of 1024, as :func:`parse_size` reads them."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} TiB"


def check_budget(estimate: int, *, what: str, detail: str, budget: MemoryBudget | None = None) -> None:
    """Raise :class:`DataError` when ``estimate`` bytes exceed the budget; the message gives both figures."""
    budget = memory_budget() if budget is None else budget
    if estimate > budget.bytes:
        raise DataError(
            f"Refused {what}: loading it would need about {format_bytes(estimate)} of memory ({detail}), over "
            f"the memory budget of {format_bytes(budget.bytes)} ({budget.source}). Use fewer or smaller "
            f"images or arrays, or raise {MEMORY_BUDGET_ENV} (e.g. {MEMORY_BUDGET_ENV}=16G) if the machine has "
            "the memory to spare."
        )


# ---------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageHeader:
    """An image's size and Pillow mode, read from its header without decoding the pixels."""

    width: int
    height: int
    mode: str
    decode_pixels: int = 0
    """Pixels the decoder makes when more than the image as held (a large HEIC, decoded then reduced)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Bytes Pillow needs for the pixels in the file's own mode, while decoding."""
        return max(self.pixels, self.decode_pixels) * _bytes_per_pixel(self.mode)

    @property
    def standard_bytes(self) -> int:
        """Bytes of the image in the loader's mode (8-bit grayscale, or RGB held as 4 bytes per pixel)."""
        return self.pixels * (1 if self.mode in _GRAYSCALE_MODES else 4)


def _bytes_per_pixel(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in _TWO_BYTE_MODES else 4


def open_image(source: str | Path | BinaryIO) -> Image.Image:
    """``Image.open`` (lazy: the header only), with the size checked by this module rather than by Pillow's own
    decompression-bomb guard, whose fixed limit (179 MP) would refuse a 200 MP phone JPEG that is decoded at a
    reduced scale. Past that guard only a JPEG is opened, by its own plugin; anything else it refuses stays
    refused (:class:`PIL.Image.DecompressionBombError`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except Image.DecompressionBombError:
            if hasattr(source, "seek"):
                source.seek(0)
            from PIL import JpegImagePlugin

            try:
                image = JpegImagePlugin.JpegImageFile(source)
            except (SyntaxError, OSError, ValueError):
                raise Image.DecompressionBombError("image too large for a reduced decode") from None
            if reduction(image) is None:
                image.close()
                raise Image.DecompressionBombError("image too large for a reduced decode") from None
            return image


def reduction(image: Image.Image, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, bool] | None:
    """``(scale, full_decode)``: an opened image is held at 1/scale of its size (1: as it is), decoded at full size
    first when ``full_decode``; None when it is too large to hold at all."""
    width, height = image.size
    if width * height <= max_pixels:
        return 1, False
    if image.format == "JPEG" and width * height <= max_pixels * JPEG_SCALES[-1] ** 2:
        scales, full = JPEG_SCALES, False
    elif image.format in HEIF_FORMATS and width * height <= HEIF_MAX_DECODE_PIXELS:
        scales, full = HEIF_SCALES, True
    else:
        return None
    for scale in scales:
        if math.ceil(width / scale) * math.ceil(height / scale) <= max_pixels:
            return scale, full
    return None


def header_of(image: Image.Image, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageHeader:
    """The header of an opened image as the loader holds it: reduced when :func:`reduction` says so, with the
    pixels its decoder makes; its full size when it is too large to hold (the loader then skips it)."""
    width, height = image.size
    plan = reduction(image, max_pixels)
    if plan is None or plan[0] == 1:
        return ImageHeader(int(width), int(height), image.mode)
    scale, full = plan
    return ImageHeader(math.ceil(width / scale), math.ceil(height / scale), image.mode, width * height if full else 0)


def decode_reduced(image: Image.Image, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an opened image as :func:`header_of` describes it: a large JPEG at reduced scale in the decoder
    (draft mode), a large HEIC at full size then reduced. The caller checked that it is not too large."""
    plan = reduction(image, max_pixels) or (1, False)
    scale, full = plan
    if scale > 1 and not full:
        width, height = image.size  # Pillow picks the largest scale whose size is at least the one asked for:
        image.draft(image.mode, (max(1, width // scale), max(1, height // scale)))  # floor, so it picks this one
    image.load()
    if scale > 1 and full:
        return image.reduce(scale)
    return image


def read_image_header(source: str | Path | BinaryIO) -> ImageHeader | None:
    """Size and mode from the header of an image file or open binary stream, as the loader will hold it (see
    :func:`header_of`); None when it is not a readable image (the loader then skips it with its reason). Never
    decodes the pixel data."""
    try:
        with open_image(source) as image:  # lazy: reads the header only; .load() would decode
            return header_of(image)
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def image_memory_estimate(
    headers: Iterable[ImageHeader], *, max_image_pixels: int, max_side: int, workers: int | None = None
) -> tuple[int, str]:
    """Peak bytes the image loader (:func:`ogaudit.data.images.load_image_folder`) needs, and how that adds up.

    The loader decodes every image, keeps each in its standard mode until all are decoded, then stacks them
    at ``max_side`` pixels at most. So: the sum of the kept images, plus a decode buffer for the largest
    image on each of ``workers`` threads, plus the stacked array. Images over ``max_image_pixels`` are
    skipped unread by the loader and do not count.
    """
    counted = [h for h in headers if h.pixels <= max_image_pixels]
    if not counted:
        return 0, "no image to decode"
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    kept = sum(h.standard_bytes for h in counted)
    decoding = min(workers, len(counted)) * max(h.decoded_bytes + h.standard_bytes for h in counted)
    largest = max(counted, key=lambda h: h.pixels)
    scale = min(1.0, max_side / max(largest.width, largest.height))
    channels = 1 if all(h.mode in _GRAYSCALE_MODES for h in counted) else 3
    stacked = len(counted) * round(largest.width * scale) * round(largest.height * scale) * channels
    total_pixels = sum(h.pixels for h in counted)
    detail = (
        f"{len(counted):,} images, {total_pixels / 1e6:,.0f} megapixels in all, the largest "
        f"{largest.width}x{largest.height}: {format_bytes(kept)} decoded, {format_bytes(decoding)} of decode "
        f"buffers, {format_bytes(stacked)} stacked"
    )
    return kept + decoding + stacked, detail


def check_image_files(
    root: str | Path, rel_paths: Iterable[str], *, what: str, max_image_pixels: int, max_side: int
) -> None:
    """Read the headers of ``root/rel`` for each path and refuse (:class:`DataError`) what would not fit the
    memory budget, before any image is decoded."""
    root = Path(root)
    headers = [h for rel in rel_paths if (h := read_image_header(root / rel)) is not None]
    estimate, detail = image_memory_estimate(headers, max_image_pixels=max_image_pixels, max_side=max_side)
    check_budget(estimate, what=what, detail=detail)


def check_image_archive(
    archive: zipfile.ZipFile,
    members: Iterable[zipfile.ZipInfo],
    *,
    what: str,
    suffixes: Iterable[str],
    max_image_pixels: int,
    max_side: int,
    budget: MemoryBudget | None = None,
) -> None:
    """As :func:`check_image_files` for the image members of an open zip, before anything is extracted.

    Only the first bytes of each member are decompressed: enough for the header."""
    suffixes = {s.lower() for s in suffixes}
    headers = []
    for member in members:
        if Path(member.filename).suffix.lower() not in suffixes:
            continue
        try:
            with archive.open(member) as stream:
                header = read_image_header(stream)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError):
            continue  # a damaged or encrypted member: extracting it reports that
        if header is not None:
            headers.append(header)
    estimate, detail = image_memory_estimate(headers, max_image_pixels=max_image_pixels, max_side=max_side)
    check_budget(estimate, what=what, detail=detail, budget=budget)


# ---------------------------------------------------------------- arrays


@dataclass(frozen=True)
class ArrayHeader:
    """Shape and dtype of one ``.npy`` member of an ``.npz``, from its header."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def read_npz_headers(path: str | Path, names: Iterable[str] | None = None) -> list[ArrayHeader]:
    """The headers of the members of the ``.npz`` at ``path`` (all of them, or those named ``names``, without
    ``.npy``), reading only the start of each member.

    The loader keeps every member (exports write them back), so every member counts: an ``.npy`` member by the
    shape and dtype of its header, in any ``.npy`` format version (1.0, 2.0 and 3.0); any other member by its
    declared size, which is all that reading it returns. A member whose ``.npy`` header cannot be read is refused
    (:class:`DataError`): an estimate that left it out would let it past the budget. Not a readable zip: ``[]``
    (numpy's own loader then says so, by name)."""
    wanted = None if names is None else set(names)
    headers = []
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                name = member.filename.removesuffix(".npy")
                if wanted is not None and name not in wanted:
                    continue
                with archive.open(member) as stream:
                    header = _npy_header(name, stream)
                if header is None:
                    header = ArrayHeader(member.filename, (member.file_size,), np.dtype(np.uint8))
                headers.append(header)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error):
        return []  # not a readable zip: numpy's own loader says so, by name
    return headers


_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(name: str, stream: BinaryIO) -> ArrayHeader | None:
    """The header of an ``.npy`` stream; None when it is not ``.npy`` at all (no magic: numpy returns its bytes).
    An ``.npy`` whose header cannot be read is refused."""
    fmt = np.lib.format
    start = stream.read(len(_NPY_MAGIC))
    if start != _NPY_MAGIC:
        return None
    try:
        major, minor = stream.read(2)
        version = (major, minor)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = read_header_2_or_3(stream, version)
        else:
            raise ValueError(f"unknown .npy format version {major}.{minor}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as error:
        raise DataError(
            f"Refused the array {name!r}: its .npy header cannot be read ({error}), so the memory it needs is "
            "unknown. Save the arrays again with numpy.savez."
        ) from None
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):  # numpy refuses it only when the array is read, after the others were
        raise DataError(
            f"Refused the array {name!r}: its .npy header declares the shape {shape}, with a negative dimension. "
            "The file is damaged or crafted; save the arrays again with numpy.savez."
        )
    return ArrayHeader(name, shape, np.dtype(dtype))


def read_header_2_or_3(stream: BinaryIO, version: tuple[int, int]):
    """Format 2.0 and 3.0 headers differ only in their text's encoding (latin-1, UTF-8): numpy's own reader for
    both when this numpy has it, else its 2.0 reader (which reads any ASCII 3.0 header)."""
    impl = getattr(np.lib, "_format_impl", np.lib.format)
    reader = getattr(impl, "_read_array_header", None)
    if reader is not None:
        return reader(stream, version)
    return np.lib.format.read_array_header_2_0(stream)


def npz_memory_estimate(headers: Iterable[ArrayHeader]) -> tuple[int, str]:
    """Bytes the ``.npz`` loader needs: every array as stored, plus a float32 copy of ``x`` unless it already
    is uint8 images or float32 (what :func:`ogaudit.data.arrays.dataset_from_arrays` turns it into)."""
    headers = list(headers)
    stored = sum(h.nbytes for h in headers)
    extra = 0
    for h in headers:
        if h.name == "x" and h.dtype not in (np.dtype(np.uint8), np.dtype(np.float32)):
            extra = int(np.prod(h.shape, dtype=object)) * 4
    shown = sorted(headers, key=lambda h: -h.nbytes)
    parts = ", ".join(f"{h.name} {h.shape} {h.dtype}" for h in shown[:6])
    if len(shown) > 6:
        parts += f" and {len(shown) - 6} more"
    detail = f"{parts}: {format_bytes(stored)} as stored" + (f", {format_bytes(extra)} as float32" if extra else "")
    return stored + extra, detail


def check_npz(path: str | Path) -> None:
    """Refuse (:class:`DataError`) an ``.npz`` whose arrays (every member, as their headers declare them)
    exceed the memory budget, before any array data is read."""
    estimate, detail = npz_memory_estimate(read_npz_headers(path))
    check_budget(estimate, what=repr(str(path)), detail=detail)


# ---------------------------------------------------------------- Arrow IPC


def _fb_table(buf: bytes, pos: int):
    """A flatbuffer table at ``pos``: a function from field number to the field's position (None when absent)."""
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    size = struct.unpack_from("<H", buf, vtable)[0]

    def field(number: int) -> int | None:
        at = 4 + 2 * number
        if at >= size:
            return None
        offset = struct.unpack_from("<H", buf, vtable + at)[0]
        return pos + offset if offset else None

    return field


def _fb_ref(buf: bytes, at: int) -> int:
    return at + struct.unpack_from("<I", buf, at)[0]


def _ipc_message_bytes(metadata: bytes, body) -> int:
    """What one IPC message's body decodes to: its size, or for compressed buffers the sum of the decoded lengths
    each one starts with (Arrow's ``BodyCompression``: an int64, ``-1`` for a buffer left uncompressed), read from
    the message's flatbuffer (``Message.header`` → ``RecordBatch.buffers``, or a ``DictionaryBatch``'s data)."""
    root = _fb_table(metadata, struct.unpack_from("<I", metadata, 0)[0])
    kind_at, header_at = root(1), root(2)
    kind = metadata[kind_at] if kind_at is not None else 0
    if kind not in (2, 3) or header_at is None:  # 2 DictionaryBatch, 3 RecordBatch
        return 0
    batch_at = _fb_ref(metadata, header_at)
    if kind == 2:
        data = _fb_table(metadata, batch_at)(1)
        if data is None:
            return 0
        batch_at = _fb_ref(metadata, data)
    batch = _fb_table(metadata, batch_at)
    if batch(3) is None or batch(2) is None:  # no compression: the body is what is held
        return body.size
    vector = _fb_ref(metadata, batch(2))
    raw = memoryview(body)
    total = 0
    for i in range(struct.unpack_from("<I", metadata, vector)[0]):
        offset, length = struct.unpack_from("<qq", metadata, vector + 4 + 16 * i)
        if length >= 8:
            decoded = struct.unpack_from("<q", raw, offset)[0]
            total += length - 8 if decoded == -1 else decoded
    return total


def arrow_ipc_decoded_bytes(path: str | Path) -> int:
    """What every record batch of the Arrow IPC stream or file ``path`` decodes to, read from the messages' headers
    and each compressed buffer's length prefix, never decompressing one (a compressed batch of zeros can be 1000×
    its file). Raises ``ValueError`` (or pyarrow's errors) for a file that is not Arrow IPC."""
    import pyarrow as pa

    total = 0
    with pa.memory_map(str(path)) as source:
        if source.read(6) == b"ARROW1":  # the file format: the stream follows the magic and its padding
            source.read(2)
        else:
            source.seek(0)
        for message in pa.ipc.MessageReader.open_stream(source):
            if message.body is not None:
                try:
                    total += _ipc_message_bytes(message.metadata.to_pybytes(), message.body)
                except struct.error as error:
                    raise ValueError(f"a damaged Arrow message ({error})") from error
    return total
