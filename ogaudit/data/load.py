"""One entry point for every kind of data: :func:`load_dataset` picks the loader by name, suffix or layout."""

from __future__ import annotations

import os
from pathlib import Path

from ogaudit.data.arrays import load_npy_folder, load_npz
from ogaudit.data.builtins import BUILTIN_LOADERS, BUILTINS
from ogaudit.data.dataset import Dataset, stratified_subset
from ogaudit.data.images import load_csv_manifest, load_image_folder
from ogaudit.errors import DataError


def load_dataset(
    spec: str | os.PathLike,
    *,
    limit: int | None = None,
    seed: int = 0,
    fold_label_case: bool = False,
    text_options: dict | None = None,
    path_column: str | None = None,
    data_roots: list[str | os.PathLike] | None = None,
) -> Dataset:
    """Load a built-in dataset by name or a dataset from a path.

    An ``.jsonl`` / ``.csv`` / ``.parquet`` of prompt/response pairs (or chat ``messages``) and the built-ins
    ``instruct-tasks`` / ``instruct-tasks-test`` are instruction data (:mod:`ogaudit.data.instructions`).

    Parameters
    ----------
    spec : one of ``BUILTINS``, or a path to

        * a directory with one sub-folder per class (an ImageFolder; FiftyOne's ``ImageClassificationDirectoryTree``
          is the same, its ``_unlabeled`` folder left out);
        * a ``.csv`` manifest with a path and a label column (``path_column``, ``text_options["label_column"]``;
          found by name by default), paths relative to the CSV or absolute inside its folder or ``data_roots``;
        * a Hugging Face ``save_to_disk`` folder, or a ``.parquet`` / ``.arrow`` table whose rows hold an image
          (bytes or a path) and a label, a ``ClassLabel``'s names becoming the class names (:mod:`~ogaudit.data.hf`);
        * a FiftyOne image-classification export (``data/`` + ``labels.json``; :mod:`~ogaudit.data.fiftyone`);
        * an ``.npz`` with ``x``, ``y`` and optional ``ids`` and ``class_names`` (small data), or a folder with
          ``x.npy`` and ``y.npy`` (and optional ``ids.npy``, ``class_names.npy``/``.txt``/``.json``), ``x``
          memory-mapped (:func:`load_npy_folder`, data of any size);
        * a text table (below).
    limit : keep a stratified random subset of this many samples (for quick looks at large data); classes of
        at most ``KEEP_WHOLE_CLASS_SIZE`` samples are kept whole.
    seed : seeds the subset.
    fold_label_case : class names that differ only by case or surrounding spaces (``Sneaker``, ``sneaker ``)
        are one class, spelt as its most frequent variant (said in ``notes``). Without it they are refused.
    text_options : for text data (``.tsv``, ``.jsonl``, ``.parquet``, a ``.csv`` without a ``path`` column, the
        built-ins ``tweets`` and ``rotten-tomatoes``): keyword arguments of
        :func:`ogaudit.data.text.load_text_dataset` (``text_column``, ``label_column``, ``id_column``,
        ``cache_dir``, ``progress``, ``cancel``). ``label_column`` also names the label column of a manifest or
        an image table.
    path_column : the image column of a CSV manifest or an image table (default: found by name or type).
    data_roots : the folders outside a table's own folder whose images its absolute paths may name (default
        ``$OGAUDIT_DATA_ROOTS``; :mod:`ogaudit.data.manifest`).

    Raises
    ------
    DataError : for anything that cannot be used as given; the message names the value and the fix.
    """
    text = str(spec)
    from ogaudit.data.instructions import INSTRUCTION_BUILTINS, is_instruction_spec, load_instructions
    from ogaudit.data.text import is_text_spec, load_text_dataset

    check_spec(spec)
    if text in INSTRUCTION_BUILTINS or (existing_path(text) is not None and is_instruction_spec(text)):
        return load_instructions(text, limit=limit, seed=seed)  # prompt/response pairs: ogaudit.data.instructions
    label_column = (text_options or {}).get("label_column")
    image_table = _image_table(text, path_column)
    if image_table is not None:  # a .parquet / .arrow holding images: ogaudit.data.hf, before the text tables
        from ogaudit.data.hf import TableOptions, load_table_file

        options = TableOptions(
            label_column, path_column, (text_options or {}).get("text_column"), fold_label_case, data_roots
        )
        dataset = load_table_file(image_table, options)
        return dataset if limit is None else stratified_subset(dataset, limit, seed=seed)
    if path_column is None and is_text_spec(text, (text_options or {}).get("text_column")):  # ogaudit.data.text
        return load_text_dataset(text, limit=limit, seed=seed, fold_label_case=fold_label_case, **(text_options or {}))
    if text in BUILTINS:
        dataset = BUILTIN_LOADERS[text]()
    else:
        path = existing_path(text).resolve()
        if path.is_dir() and path == Path(path.anchor):
            raise DataError(
                f"{_shown(text)} is the root of the file system; ogaudit would scan every folder on the machine. Give "
                "the folder that holds your data."
            )
        try:
            dataset = _load_path(
                path, fold_label_case, label_column, path_column, data_roots, (text_options or {}).get("text_column")
            )
        except PermissionError as error:  # an unreadable folder or file met while scanning
            where = error.filename or text
            raise DataError(
                f"Cannot read {str(where)!r} while loading {_shown(text)}: permission denied. Give a folder that "
                "holds only your data and that you may read (not '/' or a system folder), or fix its permissions."
            ) from error
    if limit is not None:
        dataset = stratified_subset(dataset, limit, seed=seed)
    return dataset


def _load_path(
    path: Path, fold_label_case: bool, label_column=None, path_column=None, data_roots=None, text_column=None
) -> Dataset:
    """The loader of an existing path, picked by layout and suffix."""
    from ogaudit.data import fiftyone, hf

    columns = {"label_column": label_column, "path_column": path_column, "data_roots": data_roots}
    table = hf.TableOptions(label_column, path_column, text_column, fold_label_case, data_roots)
    if path.is_dir() and (path / "x.npy").exists():
        return load_npy_folder(path, fold_label_case=fold_label_case)
    if hf.is_hf_folder(path):
        return hf.load_hf_folder(path, table)
    shards = hf.table_shards(path)
    if shards:
        return hf.load_table_shards(path, shards, table)
    if path.is_dir() and fiftyone.is_fiftyone_export(path):
        return fiftyone.load_fiftyone_export(path, fold_label_case=fold_label_case, data_roots=data_roots)
    if path.is_dir():
        inside_export = fiftyone.data_folder_of_export(path)
        if inside_export:
            raise DataError(inside_export)
        return load_image_folder(path, fold_label_case=fold_label_case)
    if path.suffix.lower() == ".csv":
        return load_csv_manifest(path, fold_label_case=fold_label_case, **columns)
    if path.suffix.lower() == ".npz":
        return load_npz(path, fold_label_case=fold_label_case)
    if path.suffix.lower() in hf.TABLE_SUFFIXES:  # a table with no image column (a Parquet one is read as text)
        return hf.load_table_file(path, table)
    if path.suffix.lower() == ".zip":
        raise DataError(
            f"{str(path)!r} is a zip archive: unzip it and give the folder it holds (an ImageFolder, a Hugging Face "
            "save_to_disk folder, a FiftyOne export...), or upload it in the app (New audit > Upload zip)."
        )
    if path.name == "labels.json" and fiftyone.is_fiftyone_export(path.parent):
        raise DataError(f"{str(path)!r} is a FiftyOne export's labels file: give its folder, {str(path.parent)!r}.")
    if path.name in ("dataset_info.json", "state.json", "dataset_dict.json"):
        raise DataError(
            f"{str(path)!r} belongs to a Hugging Face save_to_disk folder: give the folder, {str(path.parent)!r}."
        )
    raise DataError(
        f"Cannot read {str(path)!r}: unknown file type {path.suffix!r}. Use a directory of class folders, a .csv "
        "manifest (path,label), a Hugging Face save_to_disk folder or .parquet/.arrow table, a FiftyOne "
        "classification export, or an .npz with x and y."
    )


def _image_table(text: str, path_column: str | None) -> Path | None:
    """``text`` as a path when it names a ``.parquet`` or ``.arrow`` file holding an image column, else None."""
    from ogaudit.data.hf import TABLE_SUFFIXES, image_table_column

    path = existing_path(text)
    if path is None or not path.is_file() or path.suffix.lower() not in TABLE_SUFFIXES:
        return None
    if path.suffix.lower() == ".arrow" or image_table_column(path, path_column) is not None:
        return path.resolve()
    return None


def check_spec(spec: str | os.PathLike) -> None:
    """Refuse, with a :class:`DataError` naming the fix, a dataset name that is empty or neither a built-in nor
    an existing path: what :func:`load_dataset` checks first, cheap enough to run before any model is imported
    (``ogaudit scan`` of a mistyped path answers in a second)."""
    from ogaudit.data.instructions import INSTRUCTION_BUILTINS
    from ogaudit.data.text import TEXT_BUILTINS

    text = str(spec)
    if isinstance(spec, str) and not text.strip():
        raise DataError(
            f"Dataset {text!r} is empty: give a built-in name ({', '.join(BUILTINS)}) or the path of your data. "
            "(The current folder is read only when you name it: '.')"
        )
    if (
        text not in BUILTINS
        and text not in TEXT_BUILTINS
        and text not in INSTRUCTION_BUILTINS
        and existing_path(text) is None
    ):
        raise DataError(
            f"Dataset {_shown(text)} is neither a built-in ({', '.join(BUILTINS)}; text: "
            f"{', '.join(TEXT_BUILTINS)}; instructions: {', '.join(INSTRUCTION_BUILTINS)}) nor an existing path"
            f"{_why_not_a_path(text)}. Give a built-in name, an "
            "ImageFolder directory, a .csv manifest, a Hugging Face save_to_disk folder or .parquet/.arrow table, a "
            "FiftyOne classification export, an .npz file, a folder with x.npy and y.npy, or a text table "
            "(.csv/.tsv/.jsonl/.parquet)."
        )


def existing_path(text: str) -> Path | None:
    """``text`` as a path (``~`` expanded) when it names something that exists, else None.

    Never raises for a string that cannot be a path (too long for the file system, a NUL byte, an unknown
    ``~user``): such a string names nothing.
    """
    try:
        path = Path(text).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError, RuntimeError):
        return None


SHOWN_CHARS = 80
"""A dataset name longer than this is shown cut, with its length, in messages."""


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut to :data:`SHOWN_CHARS` characters."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}… ({len(text):,} characters)"


def _why_not_a_path(text: str) -> str:
    """Why ``text`` cannot even name a file, when that is the case (else empty)."""
    if "\x00" in text:
        return " (it contains a NUL character, which no file name can hold)"
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in Path(text).parts), default=0)
    if longest > 255 or len(text.encode("utf-8", "surrogatepass")) > 4096:
        return (
            " (it is too long to be a file name: did you pass the data itself as a string? In Python, give the "
            "arrays, a DataFrame or a Dataset instead)"
        )
    return ""
