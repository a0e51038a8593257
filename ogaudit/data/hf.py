"""Hugging Face data: a ``datasets.Dataset`` held in memory, a ``save_to_disk`` folder, a folder of one split's
Parquet/Arrow shards (a Hub snapshot), and Parquet / Arrow files whose rows hold a sample and a label.

Everything is read with pyarrow from the Arrow data and the JSON description of the features (``dataset_info.json``
or the schema's ``huggingface`` metadata), never through ``datasets``' own loaders: nothing is unpickled, no code
runs, and no image is decoded before its size is read from its header and the whole load is checked against the
memory budget (:mod:`ogaudit.data.limits`). A ``ClassLabel``'s names become the class names, in their order.

A sample is an image (an ``Image`` feature, a ``{bytes, path}`` struct, a binary column named like
:data:`IMAGE_COLUMNS`, or paths in a column named like :data:`~ogaudit.data.manifest.PATH_COLUMNS`), pixels or a
feature vector as lists of numbers (one shape per row), or a text (a string column named like
:data:`~ogaudit.data.text.TEXT_COLUMNS`: the text path, :mod:`ogaudit.data.text`). The label is the first
``ClassLabel`` or a column named like :data:`~ogaudit.data.text.LABEL_COLUMNS`; the caller may name both
(``path_column``, ``label_column``). Image paths in a file are untrusted: they are read as a manifest's are
(:mod:`ogaudit.data.manifest`).
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ogaudit.data.dataset import Dataset, SkippedInput, add_notice, canonical_labels, check_labels, rare_class_notes
from ogaudit.data.hffeatures import class_label_names, features_of_schema, labels_and_skips, labels_as_names
from ogaudit.data.limits import check_budget, format_bytes, image_memory_estimate, memory_budget, read_image_header
from ogaudit.errors import DataError

HF_SOURCE = "hf-dataset"
"""``Dataset.source`` of a ``datasets.Dataset`` audited from memory."""

HF_KIND = "hf"
"""``Dataset.kind`` of data read from a Hugging Face dataset, a ``save_to_disk`` folder or a Parquet/Arrow table."""

TABLE_SUFFIXES = (".parquet", ".arrow")

IMAGE_COLUMNS = ("image", "img", "images", "picture", "photo", "image_bytes", "jpg", "png")
"""Names a column of image bytes is found by when no feature says ``Image`` (case ignored)."""

READ_BATCH_ROWS = 256
"""Rows of a Parquet file read at a time while its decoded size is counted against the memory budget."""


@dataclass
class TableSource:
    """The Arrow table a Hugging Face image dataset was read from: what a cleaned split writes back (as Parquet,
    the kept rows with their labels changed as reviewed; :func:`ogaudit.review.split.export_split`).

    table : ``pyarrow.Table``, every row as read (the ``datasets`` features in its schema's metadata).
    name : the file name a split is written under (``<source>.parquet``).
    label_column : the label column's name.
    labels : (M,) object, each row's label value as stored (a ``ClassLabel``'s index, a name ...).
    label_classes : (M,) object, the class each row was read as (None for rows left out).
    class_label : the ``ClassLabel``'s names, or None.
    """

    table: object
    name: str
    label_column: str
    labels: np.ndarray
    label_classes: np.ndarray
    class_label: list[str] | None = None


# ---------------------------------------------------------------- what a table is


def is_hf_dataset(data: object) -> bool:
    """Whether ``data`` is a ``datasets`` object (a ``Dataset``, ``DatasetDict``, ``IterableDataset`` ...).

    Never imports ``datasets``: an object of it can only exist when it was imported.
    """
    return type(data).__module__.split(".")[0] == "datasets"


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a folder ``save_to_disk`` wrote (a ``Dataset`` or a ``DatasetDict``)."""
    return path.is_dir() and (
        (path / "state.json").is_file() or (path / "dataset_dict.json").is_file() or any(path.glob("data-*.arrow"))
    )


def image_table_column(path: Path, path_column: str | None = None) -> str | None:
    """The image column of the Parquet/Arrow file ``path`` (read from its schema only), or None when it has none
    (it is then a text table or no table ogaudit reads)."""
    schema = _file_schema(path)
    return _image_column(schema, features_of_schema(schema), path_column, what=repr(str(path)))[0]


# ---------------------------------------------------------------- entry points


def from_hf_dataset(
    data,
    *,
    label_column: str | None = None,
    path_column: str | None = None,
    fold_label_case: bool = False,
) -> Dataset:
    """A ``datasets.Dataset`` held in memory (its rows in order, after any ``select``/``shuffle``/``filter``).

    Images stored as paths are read wherever they are (the object is the caller's own), relative ones against
    the current folder. See the module for the columns.

    Raises
    ------
    DataError : a ``DatasetDict`` (name a split), an ``IterableDataset`` (materialise it), no image or label
        column, labels that are no classes, data over the memory budget.
    """
    name = type(data).__name__
    if name in ("DatasetDict", "IterableDatasetDict"):
        splits = list(data.keys())
        raise DataError(
            f"This is a Hugging Face {name} with the splits {splits}; audit one split: data[{splits[0]!r}]"
            f"{' (or datasets.concatenate_datasets([...]) of several)' if len(splits) > 1 else ''}."
        )
    if name != "Dataset" or not hasattr(data, "with_format"):
        raise DataError(
            f"A Hugging Face {name} streams its rows; ogaudit needs them all. Materialise it first: "
            "datasets.Dataset.from_generator(lambda: (yield from data), features=data.features)."
        )
    table = data.with_format("arrow")[:]  # the rows in order, indices applied; Arrow, nothing decoded
    features = data.features.to_dict() if data.features is not None else {}
    return dataset_from_table(
        table,
        features,
        what="the Hugging Face Dataset",
        source=HF_SOURCE,
        folder=Path.cwd(),
        allowed=None,
        label_column=label_column,
        path_column=path_column,
        fold=fold_label_case,
    )


@dataclass(frozen=True)
class TableOptions:
    """How a table on disk (a ``save_to_disk`` folder, a Parquet/Arrow file or its shards) is read: the columns
    that hold the labels, image paths and texts (None: found by their features), whether label case is folded,
    and the data roots a listed path may lead into besides the table's own folder."""

    label_column: str | None = None
    path_column: str | None = None
    text_column: str | None = None
    fold_label_case: bool = False
    data_roots: list | None = None

    def dataset(self, table, features: dict, *, what: str, source: str, folder: Path) -> Dataset:
        """:func:`dataset_from_table` of ``table`` read from ``folder`` with these options."""
        return dataset_from_table(
            table,
            features,
            what=what,
            source=source,
            folder=folder,
            allowed=_allowed(folder, self.data_roots),
            label_column=self.label_column,
            path_column=self.path_column,
            fold=self.fold_label_case,
            text_column=self.text_column,
        )


def load_hf_folder(path: Path, options: TableOptions | None = None) -> Dataset:
    """A folder ``Dataset.save_to_disk`` wrote: ``state.json`` (the Arrow files, in order), ``dataset_info.json``
    (the features) and ``data-*.arrow`` (Arrow IPC streams, memory-mapped). Only the JSON and Arrow files are
    read; the pickled fields ``datasets`` may keep elsewhere are never loaded.
    ``options``: the columns and rules to read it with (:class:`TableOptions`; default: found by the features).

    Raises
    ------
    DataError : a ``DatasetDict`` folder (naming its split folders), a folder without ``state.json`` or with an
        Arrow file missing or outside it, and what :func:`dataset_from_table` refuses.
    """
    import pyarrow as pa

    path = Path(path).resolve()
    what = repr(str(path))
    if (path / "dataset_dict.json").is_file():
        splits = _json(path / "dataset_dict.json", what).get("splits") or sorted(
            p.name for p in path.iterdir() if (p / "state.json").is_file()
        )
        raise DataError(
            f"{what} is a Hugging Face DatasetDict saved with save_to_disk, with the splits {list(splits)}. Give one "
            f"split's folder: {str(path / str(splits[0])) if splits else str(path / 'train')!r}."
        )
    if not (path / "state.json").is_file():
        arrows = sorted(p.name for p in path.glob("*.arrow"))
        raise DataError(
            f"{what} looks like a Hugging Face save_to_disk folder ({', '.join(arrows[:3])}) but has no state.json, "
            "which lists its Arrow files in order. Save it again with dataset.save_to_disk(folder), or give one "
            "Arrow file's path."
        )
    state = _json(path / "state.json", what)
    files = state.get("_data_files")
    if not isinstance(files, list) or not files:
        raise DataError(f"{what}/state.json lists no Arrow files (_data_files). Save it again with save_to_disk.")
    tables = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".arrow"):
            raise DataError(
                f"{what}/state.json lists {str(name)[:80]!r} as a data file; only .arrow files inside the folder are "
                "read. Save it again with save_to_disk."
            )
        file = path / name
        if not file.is_file() or file.is_symlink():
            raise DataError(f"{what}/state.json lists {name!r}, which is missing (or a link). Save it again.")
        tables.append(_read_arrow(file))
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as exc:
        raise DataError(f"The Arrow files of {what} do not share one schema ({exc}). Save it again.") from exc
    info = path / "dataset_info.json"
    features = _json(info, what).get("features") if info.is_file() else None
    if not isinstance(features, dict):
        features = features_of_schema(table.schema)
    return (options or TableOptions()).dataset(table, features, what=what, source=str(path), folder=path)


def load_table_file(path: Path, options: TableOptions | None = None) -> Dataset:
    """A Parquet or Arrow (IPC stream or file) table of images and labels, e.g. what ``Dataset.to_parquet`` or a
    Hub snapshot holds. The features come from the schema's ``huggingface`` metadata when it has one. Parquet is
    read a batch of rows at a time and its decoded size counted against the memory budget as it is read.
    ``options``: the columns and rules to read it with (:class:`TableOptions`; default: found by the features).

    Raises
    ------
    DataError : an unreadable file, a file over the memory budget, and what :func:`dataset_from_table` refuses.
    """
    path = Path(path).resolve()
    table = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_arrow(path)
    return (options or TableOptions()).dataset(
        table, features_of_schema(table.schema), what=repr(str(path)), source=str(path), folder=path.parent
    )


SHARD_IGNORED = {"readme.md", ".gitattributes", "license", "license.md", "license.txt", "dataset_infos.json"}
"""Files a Hugging Face Hub snapshot keeps beside its Parquet shards, which are not data."""


def table_shards(path: Path) -> list[Path] | None:
    """The ``.parquet`` / ``.arrow`` files of a folder of table shards, sorted: a folder that holds only such files
    (and what :data:`SHARD_IGNORED` names), or a Hub snapshot whose ``data/`` folder does. None otherwise."""

    def split(folder: Path) -> tuple[list[Path], list[Path]]:
        try:
            entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        except OSError:
            return [], [folder]
        tables = sorted(e for e in entries if e.is_file() and e.suffix.lower() in TABLE_SUFFIXES)
        return tables, [e for e in entries if e not in tables and e.name.lower() not in SHARD_IGNORED]

    if not path.is_dir():
        return None
    tables, others = split(path)
    if tables:
        return None if others else tables
    if others == [path / "data"] and (path / "data").is_dir():  # a Hub snapshot: README.md, data/
        tables, others = split(path / "data")
        return None if others or not tables else tables
    return None


def split_of(shard: Path) -> str:
    """The split a Hub shard belongs to: the name before ``-NNNNN-of-NNNNN`` (``train-00000-of-00002.parquet``)."""
    stem = shard.name.split(".")[0]
    parts = stem.split("-")
    return "-".join(parts[:-3]) if len(parts) > 3 and parts[-2] == "of" else stem


def load_table_shards(folder: Path, shards: list[Path], options: TableOptions | None = None) -> Dataset:
    """The Parquet/Arrow shards of one split, read in name order within one memory budget and audited as one
    table. Shards of several splits are refused naming them (a split is audited on its own).
    ``options``: the columns and rules to read it with (:class:`TableOptions`; default: found by the features).

    Raises
    ------
    DataError : shards of several splits, shards whose schemas differ, and what :func:`load_table_file` refuses.
    """
    import pyarrow as pa

    folder = Path(folder).resolve()
    splits: dict[str, list[Path]] = {}
    for shard in shards:
        splits.setdefault(split_of(shard), []).append(shard)
    if len(splits) > 1:
        names = sorted(splits)
        raise DataError(
            f"{str(folder)!r} holds the table shards of several splits {names[:6]} (a Hugging Face Hub layout). "
            f"Audit one split: give its file ({str(splits[names[0]][0])!r}) or a folder holding only that split's "
            "shards."
        )
    tables, total = [], 0
    for shard in shards:
        table = _read_parquet(shard, total) if shard.suffix.lower() == ".parquet" else _read_arrow(shard, total)
        total += table.nbytes
        tables.append(table)
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as exc:
        raise DataError(f"The shards in {str(folder)!r} do not share one schema ({exc}).") from exc
    return (options or TableOptions()).dataset(
        table, features_of_schema(tables[0].schema), what=repr(str(folder)), source=str(folder), folder=shards[0].parent
    )


# ---------------------------------------------------------------- from an Arrow table


def dataset_from_table(
    table,
    features: dict,
    *,
    what: str,
    source: str,
    folder: Path,
    allowed: tuple[Path, ...] | None,
    label_column: str | None = None,
    path_column: str | None = None,
    fold: bool = False,
    text_column: str | None = None,
) -> Dataset:
    """A :class:`Dataset` from an Arrow ``table`` of images and labels described by the Hugging Face
    ``features`` (``{column: {"_type": "Image" | "ClassLabel" | "Value", ...}}``; may be empty).

    Parameters
    ----------
    table : ``pyarrow.Table``, one row per sample.
    features : the features as ``datasets.Features.to_dict()`` writes them.
    what : how messages name the data.
    source : ``Dataset.source``.
    folder : the folder relative image paths are read against.
    allowed : folders besides ``folder`` that image paths may lead to; None: anywhere (data the caller holds).
    label_column, path_column : the label and image columns (default: found, see the module).
    text_column : a table with no image column is text when it has this column (default: one named like
        :data:`~ogaudit.data.text.TEXT_COLUMNS`): a text :class:`Dataset` whose ``text_origin`` keeps the table
        (a cleaned split writes it back as Parquet).
    fold : see :func:`~ogaudit.data.load.load_dataset` (``fold_label_case``).

    Returns
    -------
    Dataset : ``kind`` :data:`HF_KIND`; ``x`` (N, H, W, C) uint8 decoded from the bytes, or, when every image
        is a path, the files as an ImageFolder's (``paths``, streamed when large); ``sample_ids`` the id column
        (``id``, ``sample_id`` ...) when there is one, else the row number (or the path).

    Raises
    ------
    DataError : no image column (a text column then names the fix), no label column, a named column missing,
        labels outside a ``ClassLabel``, ids that repeat, no usable image, more than the memory budget.
    """
    import pyarrow as pa

    from ogaudit.data.text import ID_COLUMNS, LABEL_COLUMNS, TEXT_COLUMNS

    schema = table.schema
    columns = list(schema.names)
    image, image_kind = _image_column(schema, features, path_column, what=what)
    if image is None:
        text = text_column or next(
            (c for c in columns if c.strip().lower() in TEXT_COLUMNS and _is_string(schema.field(c).type)), None
        )
        if text is not None:
            return _text_dataset(table, features, what, source, text, label_column, fold)
        raise DataError(
            f"{what} has no image column: none of its columns {columns[:20]} holds images (a datasets Image "
            f"feature, a {{bytes, path}} struct, binary image bytes, or image paths named {', '.join(IMAGE_COLUMNS)}"
            "). Name it: --path-column NAME (path_column= in Python)."
        )
    label = _label_column(columns, features, label_column, image, LABEL_COLUMNS, what)
    names = class_label_names(features.get(label))
    others = [c for c in columns if c != label and (features.get(c) or {}).get("_type") == "ClassLabel"]
    chosen = (
        f"the labels are the column {label!r}, the first ClassLabel; {others[:5]} are ClassLabels too: name "
        "another with --label-column (label_column= in Python)"
        if others and label_column is None
        else None
    )
    ident = next((c for c in columns if c.strip().lower() in ID_COLUMNS and c not in (image, label)), None)
    n = table.num_rows
    if n == 0:
        raise DataError(f"{what} has no rows.")
    labels, label_skips = labels_and_skips(table.column(label), names, what, label)
    ids = [str(v) for v in table.column(ident).to_pylist()] if ident is not None else None
    if ids is not None and len(set(ids)) != n:
        ids = None  # not unique: not ids (the row number is)
    if image_kind == "array":
        return _noted(_from_arrays(table.column(image), labels, label_skips, names, ids, what, source, fold), chosen)
    column = table.column(image)
    check_budget(  # the image column is copied into Python objects next: its size first
        column.nbytes, what=what, detail=f"{format_bytes(column.nbytes)} in the image column {image!r}"
    )
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if image_kind == "struct":
        blobs, paths = column.field("bytes").to_pylist(), column.field("path").to_pylist()
    elif image_kind == "bytes":
        blobs, paths = column.to_pylist(), [None] * n
    else:
        blobs, paths = [None] * n, column.to_pylist()
    if all(b is None for b in blobs):  # files only: read as a manifest's
        return _noted(_from_paths(paths, labels, label_skips, names, ids, what, source, folder, allowed, fold), chosen)
    dataset = _noted(
        _from_bytes(blobs, paths, labels, label_skips, names, ids, what, source, folder, allowed, fold), chosen
    )
    classes = np.full(n, None, dtype=object)
    classes[dataset.rows] = np.asarray(dataset.class_names, dtype=object)[dataset.y]
    raw = np.empty(n, dtype=object)
    raw[:] = table.column(label).to_pylist()
    name = f"{Path(source).stem if source != HF_SOURCE else source}.parquet"
    dataset.table_origin = TableSource(table, name, label, raw, classes, names)
    return dataset


def _noted(dataset: Dataset, note: str | None) -> Dataset:
    """``dataset`` with ``note`` (a choice the loader made for the user) said in its notes, when there is one."""
    if note:
        add_notice(dataset.notes, note)
    return dataset


def _numeric_lists(kind) -> bool:
    """Whether an Arrow type is a list (nested any depth) whose values are numbers."""
    import pyarrow as pa

    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return False
    while pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _from_arrays(column, labels, label_skips, names, ids, what, source, fold) -> Dataset:
    """Samples held as lists of numbers (pixels (H, W[, C]) or feature vectors), one shape for every row, read
    as arrays are (:func:`~ogaudit.data.arrays.dataset_from_arrays`); rows without a label are left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ogaudit.data.arrays import dataset_from_arrays

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    check_budget(2 * array.nbytes, what=what, detail=f"{format_bytes(array.nbytes)} of numbers, read and copied")
    shape = [n]
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            raise DataError(f"{what}: a sample of the array column is empty (null); give every row its values.")
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        if len(lengths) and lengths.min() != lengths.max():
            odd = int(np.flatnonzero(lengths != lengths[0])[0]) // max(1, int(np.prod(shape[1:])))
            raise DataError(
                f"{what}: samples differ in shape (sample {odd} has a side of {int(lengths[odd] if odd < len(lengths) else 0)}, "
                f"sample 0 of {int(lengths[0])}); every sample needs one shape. Resize or pad them first."
            )
        shape.append(int(lengths[0]) if len(lengths) else 0)
        array = array.flatten()
    x = array.to_numpy(zero_copy_only=False).reshape(shape)
    keep = np.array([row not in label_skips for row in range(n)], dtype=bool)
    dataset = dataset_from_arrays(
        x[keep],
        np.asarray(labels, dtype=object)[keep].astype(str),
        ids=np.flatnonzero(keep).astype(str) if ids is None else np.asarray(ids)[keep],
        class_names=names,
        source=source,
        kind=HF_KIND,
        fold_label_case=fold,
    )
    dataset.skipped.extend(SkippedInput(f"row {row}", reason) for row, reason in sorted(label_skips.items()))
    return dataset


def _text_dataset(table, features, what, source, text, label_column, fold) -> Dataset:
    """A text table held in Arrow (a Hugging Face dataset, folder or Arrow file), read as
    :func:`~ogaudit.data.text.load_text_dataset` reads a Parquet file; a ``ClassLabel`` names the classes."""
    import pyarrow as pa

    from ogaudit.data.text import TextSource, _columns, _dataset, _missing, _objects

    columns = list(table.schema.names)
    if label_column is None:
        label_column = next((c for c in columns if (features.get(c) or {}).get("_type") == "ClassLabel"), None)
    text, label, ident, ident_given = _columns(columns, text, label_column, None, what)
    names = class_label_names(features.get(label))

    def strings(name: str) -> list[str]:
        column = table.column(name)
        if pa.types.is_nested(column.type):
            raise DataError(f"{what}: column {name!r} holds {column.type} values; it must hold one value a row.")
        values = column.to_pylist()
        return ["" if _missing(v) else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]

    origin = TextSource(
        path=source,
        format="arrow",
        columns=columns,
        text_column=text,
        label_column=label,
        id_column=ident,
        labels=_objects(table.column(label).to_pylist()),
        line_numbers=np.arange(table.num_rows, dtype=np.int64),
        table=table,
        class_order=names,
    )
    labels = strings(label) if names is None else labels_as_names(table.column(label), names, what, label)
    ids = strings(ident) if ident is not None else None
    return _dataset(origin, strings(text), labels, ids, ident_given, fold=fold, kind="text", name=source)


def _from_paths(paths, labels, label_skips, names, ids, what, source, folder, allowed, fold) -> Dataset:
    from ogaudit.data.images import _dataset_from_files, _manifest_path

    skipped = [SkippedInput(f"row {row}", reason) for row, reason in label_skips.items()]
    rows = [row for row in range(len(paths)) if row not in label_skips]
    rels = [_manifest_path(str(paths[row] or "")) for row in rows]
    root = Path(folder).resolve()
    if allowed is None:  # the caller's own data: read where it is, named relative to the folder its files share
        absolute = [str((root / rel).resolve()) for rel in rels if rel]
        root = Path(os.path.commonpath(absolute)) if absolute else root
        root = root if root.is_dir() else root.parent
        rels = [os.path.relpath((Path(folder) / rel).resolve(), root) if rel else rel for rel in rels]
        allowed = ()
    dataset = _dataset_from_files(
        root,
        rels,
        [labels[row] for row in rows],
        kind=HF_KIND,
        source=Path(source) if source != HF_SOURCE else None,
        skipped=skipped,
        fold=fold,
        ordered=False,
        allowed=tuple(allowed),
        class_order=names,
    )
    dataset.source = source
    return dataset


def _from_bytes(blobs, paths, labels, label_skips, names, ids, what, source, folder, allowed, fold) -> Dataset:
    """Images from their bytes (a path where a row has none, read as a manifest's is), headers first."""
    from ogaudit.data.imagefiles import MAX_SIDE, header_problem, read_image, stack_images
    from ogaudit.data.images import _file_problem, _manifest_path
    from ogaudit.data.limits import MAX_IMAGE_PIXELS

    n = len(blobs)
    root = Path(folder).resolve()
    skipped: list[SkippedInput] = []
    sources: list[tuple[int, object]] = []  # (row, bytes or file path)
    for row in range(n):
        shown = f"row {row}" if ids is None else f"row {row} (id {ids[row]})"
        if row in label_skips:
            skipped.append(SkippedInput(shown, label_skips[row]))
            continue
        blob = blobs[row]
        if blob is not None:
            sources.append((row, bytes(blob)))
            continue
        rel = _manifest_path(str(paths[row] or ""))
        problem = "no image (neither bytes nor a path)" if not rel else None
        if problem is None and allowed is not None:
            problem = _file_problem(root, rel, tuple(allowed))
        if problem:
            skipped.append(SkippedInput(shown, problem))
        else:
            sources.append((row, root / rel))
    held = sum(len(item) for _, item in sources if isinstance(item, bytes))
    budget = memory_budget()
    check_budget(held, what=what, detail=f"{format_bytes(held)} of encoded image bytes", budget=budget)

    def opened(item):
        return io.BytesIO(item) if isinstance(item, bytes) else item

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        headers = list(pool.map(lambda pair: read_image_header(opened(pair[1])), sources))
    usable = []
    for (row, item), header in zip(sources, headers, strict=True):
        problem = "not a readable image" if header is None else header_problem(header)
        if problem:
            skipped.append(SkippedInput(f"row {row}", problem))
        else:
            usable.append((row, item, header))
    estimate, detail = image_memory_estimate(
        [h for _, _, h in usable], max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE
    )
    check_budget(
        held + estimate, what=what, detail=f"{format_bytes(held)} of image bytes held; {detail}", budget=budget
    )
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        decoded = list(pool.map(lambda triple: read_image(opened(triple[1])), usable))
    images, rows = [], []
    for (row, _, _), (picture, problem) in zip(usable, decoded, strict=True):
        if problem:
            skipped.append(SkippedInput(f"row {row}", problem))
        else:
            images.append(picture)
            rows.append(row)
    if not images:
        reasons = sorted({item.reason for item in skipped})[:3]
        raise DataError(f"No usable image in {what} ({len(skipped)} row(s) skipped: {'; '.join(reasons)}).")
    kept_labels = [labels[row] for row in rows]
    mapping, fold_notes = canonical_labels(kept_labels, fold=fold, what=what)
    notes: list[str] = []
    for text in fold_notes:
        add_notice(notes, text)
    present = list(dict.fromkeys(mapping[label] for label in kept_labels))
    if names is not None:
        class_names = list(dict.fromkeys(mapping.get(name, name) for name in names))
    else:
        class_names = sorted(present, key=_class_sort_key)
    if skipped:
        notes.append(f"{len(skipped)} row(s) skipped, e.g. {skipped[0].path}: {skipped[0].reason}.")
    index = {name: i for i, name in enumerate(class_names)}
    sample_ids = np.array([ids[row] for row in rows] if ids is not None else [str(row) for row in rows])
    dataset = Dataset(
        x=stack_images(images),
        y=np.array([index[mapping[label]] for label in kept_labels], dtype=np.int64),
        sample_ids=sample_ids,
        class_names=class_names,
        kind=HF_KIND,
        source=source,
        skipped=skipped,
        notes=notes,
        rows=np.asarray(rows, dtype=np.int64),
    )
    check_labels(dataset)
    dataset.notes.extend(rare_class_notes(dataset))
    return dataset


def _class_sort_key(name: str):
    """Integer class names in numeric order ("2" before "10"), then the rest by name."""
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


# ---------------------------------------------------------------- columns


def _image_column(schema, features: dict, given: str | None, *, what: str) -> tuple[str | None, str | None]:
    """``(name, kind)`` of the image column: kind ``"struct"`` ({bytes, path}), ``"bytes"`` or ``"path"``."""
    import pyarrow as pa

    from ogaudit.data.manifest import PATH_COLUMNS

    columns = list(schema.names)

    def kind_of(name: str) -> str | None:
        kind = schema.field(name).type
        if pa.types.is_struct(kind) and {kind.field(i).name for i in range(kind.num_fields)} >= {"bytes", "path"}:
            return "struct"
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return "bytes"
        if _is_string(kind):
            return "path"
        if _numeric_lists(kind):
            return "array"
        return None

    if given is not None:
        match = _match(columns, given)
        if match is None:
            raise DataError(f"{what} has no column {given!r} (--path-column); its columns are {columns[:20]}.")
        kind = kind_of(match)
        if kind is None:
            raise DataError(
                f"{what}: column {match!r} holds {schema.field(match).type} values; an image column holds image "
                "bytes, {bytes, path} structs (a datasets Image feature), image paths or arrays of numbers."
            )
        return match, kind
    for name in columns:
        if (features.get(name) or {}).get("_type") == "Image" and kind_of(name) in ("struct", "bytes", "path"):
            return name, kind_of(name)
    for name in columns:
        if kind_of(name) == "struct":
            return name, "struct"
    for name in columns:
        if kind_of(name) == "bytes" and name.strip().lower() in IMAGE_COLUMNS:
            return name, "bytes"
    for name in columns:
        if kind_of(name) == "path" and name.strip().lower() in PATH_COLUMNS:
            return name, "path"
    from ogaudit.data.text import TEXT_COLUMNS

    texts = [c for c in columns if c.strip().lower() in TEXT_COLUMNS and kind_of(c) == "path"]
    for name in columns if not texts else ():  # pixels or vectors as (nested) lists of numbers (a table of texts
        if kind_of(name) == "array":  # with embeddings beside them stays a text table)
            return name, "array"
    return None, None


def _label_column(columns, features, given, image, common, what) -> str:
    if given is not None:
        match = _match(columns, given)
        if match is None:
            raise DataError(f"{what} has no column {given!r} (--label-column); its columns are {columns[:20]}.")
        return match
    for name in columns:
        if (features.get(name) or {}).get("_type") == "ClassLabel":
            return name
    folded = {c.strip().lower(): c for c in reversed(columns) if c != image}
    for name in common:
        if name in folded:
            return folded[name]
    likely = [c for c in columns if c != image and c.strip().lower().endswith(("_label", "_labels", "_class"))]
    hint = f" Columns that look like labels: {likely[:6]}." if likely else ""
    raise DataError(
        f"{what} holds images (column {image!r}) but no label column: none of {[c for c in columns if c != image][:20]} "
        f"is a ClassLabel or named like a label ({', '.join(common)}).{hint} Name it: --label-column NAME "
        "(label_column= in Python)."
    )


def _match(columns: list[str], given: str) -> str | None:
    folded = {c.strip().lower(): c for c in reversed(columns)}
    return given if given in columns else folded.get(given.strip().lower())


def _is_string(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


# ---------------------------------------------------------------- files


def _allowed(folder: Path, data_roots) -> tuple[Path, ...]:
    from ogaudit.data.manifest import allowed_folders

    return allowed_folders(folder, data_roots)[1:]


def _json(path: Path, what: str) -> dict:
    size = path.stat().st_size
    if size > 64 * 1024**2:
        raise DataError(f"{what}: {path.name} is {format_bytes(size)}; a Hugging Face metadata file is small.")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{what}: {path.name} is not valid JSON ({exc}). Save the dataset again.") from exc
    if not isinstance(value, dict):
        raise DataError(f"{what}: {path.name} holds a JSON {type(value).__name__}, not an object.")
    return value


def _file_schema(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).schema_arrow
        with pa.memory_map(str(path)) as source:
            return _ipc_reader(source).schema
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(
            f"{str(path)!r} cannot be read as {path.suffix[1:].title()}: {exc}. Write it again with pyarrow, "
            "pandas or datasets."
        ) from exc


def _ipc_reader(source):
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(source)  # what datasets writes
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source)  # Arrow IPC file (Feather v2)


def _read_arrow(path: Path, already: int = 0):
    """An Arrow IPC stream or file, memory-mapped, read a record batch at a time and stopped once its size is over
    the memory budget: an IPC file may hold compressed buffers (LZ4, ZSTD), which decompress into memory."""
    import pyarrow as pa

    from ogaudit.data.limits import arrow_ipc_decoded_bytes

    what = repr(str(path))
    budget = memory_budget()
    try:
        declared = arrow_ipc_decoded_bytes(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{what} cannot be read as an Arrow file: {exc}. Save it again.") from exc
    check_budget(
        already + declared,
        what=what,
        detail=f"{format_bytes(declared)} declared by its record batches, before decoding",
        budget=budget,
    )
    batches, total = [], 0
    try:
        with pa.memory_map(str(path)) as source:
            reader = _ipc_reader(source)
            schema = reader.schema
            if isinstance(reader, pa.ipc.RecordBatchFileReader):
                batches_read = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches_read = iter(reader)
            for batch in batches_read:
                batches.append(batch)
                total += batch.nbytes
                if already + total > budget.bytes:
                    break
            table = pa.Table.from_batches(batches, schema=schema)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{what} cannot be read as an Arrow file: {exc}. Save it again.") from exc
    check_budget(
        total,
        what=what,
        detail=f"{format_bytes(total)}{' or more' if total > budget.bytes else ''} read",
        budget=budget,
    )
    return table


def _binary_leaves(fields, prefix: str = "") -> list[str]:
    """The dotted paths of the text and binary columns among ``fields`` (an Arrow schema or a struct's fields),
    inside structs too (``image.bytes``): the ones a dictionary page can repeat at no cost in the file."""
    import pyarrow as pa

    leaves = []
    for field in fields:
        kind = field.type
        if pa.types.is_struct(kind):
            leaves += _binary_leaves([kind.field(i) for i in range(kind.num_fields)], f"{prefix}{field.name}.")
        elif any(test(kind) for test in (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_string)) or (
            pa.types.is_large_string(kind)
        ):
            leaves.append(prefix + field.name)
    return leaves


def _decoded_bytes(array) -> int:
    """What ``array`` (read with its text and binary leaves as dictionaries) takes once those are decoded: each
    row's value length, summed without decoding them; other values at their Arrow size."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.DictionaryArray):
        lengths = pc.take(pc.binary_length(array.dictionary), array.indices)
        return int(pc.sum(lengths).as_py() or 0) + array.indices.nbytes
    if isinstance(array, pa.StructArray):
        return sum(_decoded_bytes(array.field(i)) for i in range(array.type.num_fields)) + (
            array.buffers()[0].size if array.buffers()[0] is not None else 0
        )
    return array.nbytes


def _check_parquet_size(handle, path: Path, already: int, budget) -> None:
    """Refuse a Parquet file whose pages, as its footer declares them, decompress past the budget, or whose text
    and binary values, measured as dictionaries (each distinct value decoded once, never once a row), add up past
    it. A dictionary page lets a few kB name one large value in every row: reading a batch of rows decoded all of
    them before they could be counted."""
    import pyarrow.parquet as pq

    what = repr(str(path))
    meta = handle.metadata
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    check_budget(
        already + declared, what=what, detail=f"{format_bytes(declared)} of pages, uncompressed", budget=budget
    )
    leaves = _binary_leaves(handle.schema_arrow)
    if not leaves:
        return
    total = 0
    for batch in pq.ParquetFile(path, read_dictionary=leaves).iter_batches(batch_size=READ_BATCH_ROWS):
        total += sum(_decoded_bytes(column) for column in batch.columns)
        if already + total > budget.bytes:
            break
    _check_decoded(already + total, what, budget, ", measured before decoding")


def _read_parquet(path: Path, already: int = 0):
    """The table, read :data:`READ_BATCH_ROWS` rows at a time, stopped once its decoded size is over the budget
    (a Parquet file's pages can decompress to far more than the file), after :func:`_check_parquet_size`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    what = repr(str(path))
    budget = memory_budget()
    batches, total = [], 0
    try:
        _check_parquet_size(pq.ParquetFile(path), path, already, budget)
        handle = pq.ParquetFile(path)
        schema = handle.schema_arrow
        for batch in handle.iter_batches(batch_size=READ_BATCH_ROWS):
            batches.append(batch)
            total += batch.nbytes
            if already + total > budget.bytes:
                break
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{what} cannot be read as Parquet: {exc}. Write it again with pyarrow or datasets.") from exc
    _check_decoded(already + total, what, budget)
    return pa.Table.from_batches(batches, schema=schema)


def _check_decoded(total: int, what: str, budget, how: str = "") -> None:
    """:func:`check_budget` on ``total`` bytes decoded so far; a reading stopped at the budget says "or more"."""
    more = " or more" if total > budget.bytes else ""
    check_budget(total, what=what, detail=f"{format_bytes(total)}{more} decoded{how}", budget=budget)
