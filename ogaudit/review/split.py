"""The cleaned split: the data with the review's decisions applied (removed samples dropped, relabelled ones
changed), written in the input's own kind beside a ``split.json`` manifest. The user's input is only read.

Images and arrays: an ``.npz``, a ``.npy`` folder, a self-contained CSV manifest with its images, or an ImageFolder
(images are copies of the user's files: copy-on-write clones where the file system has them, never hard links).
Text tables: the input's format under its own name, every row that was
not changed written byte for byte (:func:`write_text_split`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.arrays import source_arrays_for
from ogaudit.data.csvtext import csv_row
from ogaudit.data.dataset import Dataset
from ogaudit.data.text import TextSource
from ogaudit.errors import DataError
from ogaudit.review.ledger import LABELLED_ACTIONS, Ledger
from ogaudit.storage import write_json

SPLIT_MANIFEST = "split.json"


def apply_decisions(
    dataset: Dataset,
    state: pd.DataFrame,
    *,
    flagged_ids: Iterable[str] | None = None,
    drop_undecided_flagged: bool = False,
    from_source: bool = False,
) -> tuple[Dataset, dict[str, int]]:
    """The dataset with removals dropped and relabels applied, and counts of what changed.

    ``state`` is :meth:`Ledger.state`. Samples flagged but undecided (no decision, or ``unsure``) are kept,
    unless ``drop_undecided_flagged`` (which needs ``flagged_ids``). Decisions on ids not in ``dataset`` are
    ignored and counted as ``decisions_not_in_data``.

    ``from_source``: start from the labels of the user's data, not from the labels the audit read: they differ
    when noise was planted for a demo or benchmark (``dataset.true_y``), and an export must write the user's
    labels back with only the reviewers' decisions applied. The retrain check keeps the audited labels (it
    measures what cleaning the noisy data does).
    """
    if drop_undecided_flagged and flagged_ids is None:
        raise ValueError("drop_undecided_flagged=True needs flagged_ids: the ids the scan flagged.")
    position = {sample_id: i for i, sample_id in enumerate(dataset.sample_ids.tolist())}
    class_index = {name: i for i, name in enumerate(dataset.class_names)}
    in_data = state[state["sample_id"].isin(position)]
    keep = np.ones(len(dataset), dtype=bool)
    given = dataset.true_y if from_source and dataset.true_y is not None else dataset.y
    y = given.copy()
    for sample_id, action, final_label in in_data[["sample_id", "action", "final_label"]].itertuples(index=False):
        if action == "remove":
            keep[position[sample_id]] = False
        elif action in LABELLED_ACTIONS:
            if final_label not in class_index:
                raise DataError(
                    f"{sample_id!r} was relabelled to {final_label!r}, which is not a class of this dataset "
                    f"{dataset.class_names}. Export with the data the review was made on."
                )
            y[position[sample_id]] = class_index[final_label]
    removed = int((~keep).sum())
    dropped = 0
    if drop_undecided_flagged:
        decided = set(in_data.loc[in_data["action"] != "unsure", "sample_id"])
        undecided = [position[i] for i in {str(i) for i in flagged_ids} if i in position and i not in decided]
        dropped = int(keep[undecided].sum())
        keep[undecided] = False
    counts = {
        "input": len(dataset),
        "kept": int(keep.sum()),
        "removed": removed,
        "relabelled": int(((y != given) & keep).sum()),
        "dropped_undecided_flagged": dropped,
        "decisions_not_in_data": len(state) - len(in_data),
    }
    true_y = None if from_source else dataset.true_y
    return replace(dataset, y=y, true_y=true_y).subset(keep), counts


def export_split(
    dataset: Dataset,
    ledger: Ledger,
    out: str | Path,
    *,
    flagged_ids: Iterable[str] | None = None,
    drop_undecided_flagged: bool = False,
) -> dict:
    """Write the cleaned data into the new or empty folder ``out``, all at once; return ``split.json``.

    ``out`` gets ``<name>.npz`` (arrays and built-ins); for a CSV manifest, the kept images at their original
    relative paths plus ``<manifest name>.csv`` with the final labels; for an ImageFolder, one sub-folder per
    final class. Images are copies (:func:`copy_file`), never hard links (an edit of the export would reach the
    user's file) or symlinks (``load_dataset`` refuses those leading outside the folder), so every export loads
    back with ``load_dataset``. See
    :func:`apply_decisions` for the options.
    """
    out = Path(out).absolute()
    if out.is_symlink():
        raise DataError(f"{str(out)!r} is a symbolic link; a split is written only to a new or empty folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{str(out)!r} exists and is not an empty folder. Choose a new or empty output folder.")
    if dataset.kind == "imagefolder" and out.resolve().is_relative_to(Path(dataset.root).resolve()):
        raise DataError(
            f"{str(out)!r} is inside the image folder {dataset.root!r}, where it would be read as a class. "
            "Choose an output folder outside the data."
        )
    if dataset.kind == "instructions":  # prompt/response pairs: removals and edited responses
        cleaned, counts = dataset, {}
    else:
        cleaned, counts = apply_decisions(
            dataset,
            ledger.state(),
            flagged_ids=flagged_ids,
            drop_undecided_flagged=drop_undecided_flagged,
            from_source=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex}.part"
    staging.mkdir()
    try:
        if dataset.kind == "instructions":
            from ogaudit.review.instructions import write_instruction_split

            written, counts = write_instruction_split(
                dataset,
                ledger.state(),
                staging,
                flagged_ids=flagged_ids,
                drop_undecided_flagged=drop_undecided_flagged,
            )
        elif dataset.is_text:  # the input's own format: CSV/TSV/JSONL/Parquet, rows as they were
            from ogaudit.review.split import write_text_split

            written = write_text_split(cleaned, staging)
            counts["skipped_at_load_written_as_they_were"] = len(dataset.skipped)
        elif dataset.kind == "imagefolder":
            written = _write_image_folder(cleaned, staging)
        elif dataset.kind == "csv":
            written = _write_manifest(cleaned, staging, name=Path(dataset.source).name)
        elif dataset.kind == "fiftyone":
            written = _write_fiftyone(cleaned, staging)
        elif dataset.table_origin is not None:  # images held in a Hugging Face table: its rows, as Parquet
            written = _write_image_table(cleaned, staging)
        elif dataset.paths is not None:  # a table of image paths (Parquet/Arrow): a self-contained manifest
            written = _write_manifest(cleaned, staging, name=f"{Path(dataset.source).stem}.csv")
        elif dataset.kind == "npy":
            written = _write_npy_folder(cleaned, staging / Path(dataset.source).name)
        else:
            name = Path(dataset.source).name if dataset.kind == "npz" else f"{Path(str(dataset.source)).name}.npz"
            written = _write_npz(cleaned, staging / name)
        manifest = {
            "data": written,
            "format": dataset.text_origin.format
            if dataset.is_text
            else "npz"
            if dataset.kind in ("npz", "builtin")
            else "parquet"
            if dataset.table_origin is not None
            else "csv"
            if dataset.kind == "hf"
            else dataset.kind,
            # names, not the server's absolute paths (the manifest travels with the split to whoever gets it);
            # the fingerprints say which data and ledger it came from
            "source": Path(str(dataset.source)).name,
            "source_fingerprint": dataset.fingerprint(),
            "ledger": ledger.path.name,
            "ledger_dataset_fingerprint": ledger.stored_fingerprint,
            "class_names": list(dataset.class_names),
            "counts": counts,
            "drop_undecided_flagged": drop_undecided_flagged,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(staging / SPLIT_MANIFEST, manifest)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_npz(dataset: Dataset, path: Path) -> str:
    """The user's own arrays (same keys, dtypes, shapes, layouts and values; only removed rows dropped and
    relabelled samples' labels changed); a built-in as ``x``, ``y``, ``ids``, ``class_names``."""
    path = path.with_suffix(".npz")
    if dataset.origin is not None:
        np.savez(path, **source_arrays_for(dataset))
    else:
        np.savez(path, x=dataset.x, y=dataset.y, ids=dataset.sample_ids, class_names=np.array(dataset.class_names))
    return path.name


NPY_EXPORT_BLOCK_ROWS = 4096


def _write_npy_folder(dataset: Dataset, folder: Path) -> str:
    """A folder of ``.npy`` arrays that :func:`~ogaudit.data.arrays.load_npy_folder` reads back: the user's own arrays
    as :func:`_write_npz` writes them, ``x`` copied a block of rows at a time (it may be larger than memory)."""
    folder.mkdir(parents=True)
    origin, rows = dataset.origin, dataset.rows
    others = replace(dataset, origin=replace(origin, arrays={k: v for k, v in origin.arrays.items() if k != "x"}))
    for name, array in source_arrays_for(others).items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
    x = origin.arrays["x"]
    out = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=x.dtype, shape=(len(rows), *x.shape[1:]))
    for start in range(0, len(rows), NPY_EXPORT_BLOCK_ROWS):
        out[start : start + NPY_EXPORT_BLOCK_ROWS] = x[rows[start : start + NPY_EXPORT_BLOCK_ROWS]]
    out.flush()
    del out
    return folder.name


def _write_manifest(dataset: Dataset, staging: Path, *, name: str) -> str:
    """A self-contained copy: the kept images at their original relative paths and ``name`` listing them."""
    rows = []
    for rel, label in zip(dataset.paths.tolist(), dataset.y.tolist(), strict=True):
        inside = _inside_copy(rel, dataset.root)
        copy_file(Path(dataset.root, rel), staging / inside)
        rows.append((inside, dataset.class_names[label]))
    with open(staging / name, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return name


EXTERNAL_FOLDER = "external"


def _inside_copy(rel: str, root: str | os.PathLike) -> str:
    """Where a listed image goes in a self-contained copy: its relative path, or for an absolute one (a manifest
    may name images in the data roots) the same path under ``external/``, never the absolute path itself.

    The result never climbs out of the copy: the loader read ``root/rel`` where it resolves (inside the table's
    folder or a data root), but its text may climb with ``..`` (``/../../srv/data/x.png``, or ``link/../../x.png``
    through a symlinked folder) and would lead out of the copy's folder. A path with a ``..`` is placed by its
    resolved location under ``external/`` instead."""
    path = Path(rel)
    if ".." in path.parts:
        path = Path(root, rel).resolve()
    elif not path.is_absolute():
        return rel
    return Path(EXTERNAL_FOLDER, *path.parts[1:]).as_posix()


def _write_image_table(dataset: Dataset, staging: Path) -> str:
    """The kept rows of a Hugging Face image table (:class:`~ogaudit.data.hf.TableSource`), every column as read
    (the image bytes untouched), the label column changed where the review relabelled: the value the input used
    for that class (a ``ClassLabel``'s index), as :func:`~ogaudit.data.load.load_dataset` reads it back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = dataset.table_origin
    rows = np.asarray(dataset.rows, dtype=np.int64)
    final = np.asarray(dataset.class_names, dtype=object)[dataset.y]
    value_of: dict[str, object] = {}
    for value, name in zip(source.labels.tolist(), source.label_classes.tolist(), strict=True):
        if name is not None:
            value_of.setdefault(name, value)
    if source.class_label is not None:  # a class no row had: its ClassLabel index
        for index, name in enumerate(source.class_label):
            value_of.setdefault(name, index)
    table = source.table.take(pa.array(rows, type=pa.int64()))
    at = table.column_names.index(source.label_column)
    labels = table.column(at).to_pylist()
    for position, (row, name) in enumerate(zip(rows.tolist(), final.tolist(), strict=True)):
        if source.label_classes[row] != name:
            labels[position] = value_of.get(name, name)
    table = table.set_column(at, table.schema.field(at), pa.array(labels, type=table.schema.field(at).type))
    pq.write_table(table, staging / source.name)
    return source.name


def _write_fiftyone(dataset: Dataset, staging: Path) -> str:
    """FiftyOne's image-classification layout again (:mod:`ogaudit.data.fiftyone`): the kept images at their paths
    and ``labels.json`` with the final labels as class indices."""
    labels = {}
    for rel, label in zip(dataset.paths.tolist(), dataset.y.tolist(), strict=True):
        inside = Path(_inside_copy(rel, dataset.root))
        inside = inside.relative_to("data") if inside.parts[0] == "data" else inside  # data.json's paths too
        copy_file(Path(dataset.root, rel), staging / "data" / inside)
        labels[inside.with_suffix("").as_posix()] = int(label)
    write_json(staging / "labels.json", {"classes": list(dataset.class_names), "labels": labels})
    return "."


_FICLONE = 0x40049409
"""Linux's ioctl that makes a file a copy-on-write clone of another (btrfs, XFS, bcachefs, overlayfs on them)."""


def copy_file(source: Path, target: Path) -> None:
    """Copy the user's file ``source`` to ``target`` (a new file; its folders are made), sharing no storage a
    later write could reach: a copy-on-write clone where the file system makes one (no bytes copied), else a
    plain copy; the modification time is kept. Never a hard link, through which an edit in place or a ``chmod``
    of the export would change the user's file, and never a symlink, which loaders refuse."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl

        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except (ImportError, OSError):  # no clones here (ext4, tmpfs, another file system): copy the bytes
        shutil.copyfile(source, target)
    shutil.copystat(source, target)


def _write_image_folder(dataset: Dataset, staging: Path) -> str:
    """``staging/<final class>/<path below the original class folder>``; a clash gets a ``~N`` suffix.

    Only classes that keep samples get a folder: torchvision's ImageFolder refuses an empty class folder."""
    for rel, label in zip(dataset.paths.tolist(), dataset.y.tolist(), strict=True):
        inner = Path(*Path(rel).parts[1:])
        target = staging / dataset.class_names[label] / inner
        clash = 0
        while target.exists():
            clash += 1
            target = target.with_name(f"{inner.stem}~{clash}{inner.suffix}")
        copy_file(Path(dataset.root, rel), target)
    return "."


_ENDING = re.compile(r"(\r\n|\n|\r)$")


def write_text_split(cleaned, folder: Path) -> str:
    """Write ``cleaned`` (a text :class:`~ogaudit.data.dataset.Dataset` after review: rows dropped, labels changed) into
    ``folder`` in its input's own format, under the input's file name; return that name.

    Rows appear in the input's order with every column as it was, rows skipped at load (an empty text or label)
    included, since no one reviewed them; an untouched row is the input's exact text
    (CSV/TSV/JSONL: same bytes, same encoding, same line ending); a relabelled row differs only in its label
    cell, which holds the class name (CSV/TSV) or the value the input used for that class (JSONL, Parquet, e.g.
    the integer 1). The user's file is only read. Built-ins are written as UTF-8 CSV with the repaired texts.

    Raises :class:`DataError` when a Parquet input changed since it was read.
    """
    source: TextSource = cleaned.text_origin
    final = np.asarray(cleaned.class_names, dtype=object)[cleaned.y]
    skipped = np.flatnonzero(np.equal(source.label_classes, None))  # never audited: written as they were
    rows = np.concatenate([cleaned.rows, skipped])
    final = np.concatenate([final, np.full(len(skipped), None, dtype=object)])
    order = np.argsort(rows, kind="stable")
    rows, final = rows[order], final[order]
    changed = np.not_equal(source.label_classes[rows], final) & ~np.equal(final, None)
    # The value the input itself used for each class (first row read as that class): keeps JSON/Arrow types.
    value_of: dict[str, object] = {}
    for value, name in zip(source.labels.tolist(), source.label_classes.tolist(), strict=True):
        if name is not None:
            value_of.setdefault(name, value)
    name = Path(source.path).name if source.builtin is None else f"{source.builtin}.csv"
    if source.builtin is not None and name.endswith(".bz2"):
        name = name[:-4]
    if source.format == "arrow":  # a Hugging Face dataset, folder or Arrow file: its table as Parquet
        name = f"{Path(source.path).stem or 'texts'}.parquet"
    target = folder / name
    if source.format in ("parquet", "arrow"):
        _write_parquet(source, rows, changed, final, value_of, target)
        return name
    parts = [source.prefix]
    for row, is_changed, label in zip(rows.tolist(), changed.tolist(), final.tolist(), strict=True):
        record = source.records[row]
        if is_changed:
            record = _relabelled_record(source, record, value_of.get(label, label), label)
        parts.append(record)
    text = "".join(parts)
    with open(target, "wb") as handle:
        handle.write(text.encode(source.encoding))
    return name


def _relabelled_record(source: TextSource, record: str, value: object, label: str) -> str:
    """``record`` (one input row, its line ending included) with only its label cell's characters replaced: every
    other character (other fields' spelling, quoting, number formats, escapes, spacing) stays as written."""
    if source.format == "jsonl":
        start, end = _json_member_span(record, source.label_column)
        written = json.dumps(value, ensure_ascii=False)
        try:
            written.encode(source.encoding)
        except UnicodeEncodeError:  # the input's own value held a lone surrogate (``"\ud800"``): escaped as it was
            written = json.dumps(value)
        return record[:start] + written + record[end:]
    start, end = _csv_cell_span(record, source.delimiter, source.columns.index(source.label_column))
    return record[:start] + csv_row([label], source.delimiter, ending="") + record[end:]


def _json_member_span(record: str, key: str) -> tuple[int, int]:
    """(start, end) of the value of the top-level member ``key`` in the JSON object ``record`` (the last one, as
    ``json.loads`` keeps, when a key repeats)."""
    decoder, scan = json.JSONDecoder(), json.decoder.scanstring
    space = re.compile(r"[ \t\n\r]*")
    at = space.match(record, 0).end() + 1  # past "{"
    found = None
    while True:
        at = space.match(record, at).end()
        if record[at] == "}":
            break
        name, at = scan(record, at + 1)
        at = space.match(record, at).end() + 1  # past ":"
        start = space.match(record, at).end()
        _, at = decoder.raw_decode(record, start)
        if name == key:
            found = (start, at)
        at = space.match(record, at).end()
        if record[at] == ",":
            at += 1
    if found is None:
        raise DataError(f"the row {record[:80]!r} has no {key!r} field to relabel")
    return found


def _csv_cell_span(record: str, delimiter: str, column: int) -> tuple[int, int]:
    """(start, end) of cell ``column`` in one CSV row, read as :mod:`csv`'s default dialect reads it (a quote
    opens a quoted cell only as its first character; ``""`` inside is a quote)."""
    ending = _ENDING.search(record)
    stop = ending.start() if ending else len(record)
    cell, start, at, quoted = 0, 0, 0, False
    while at < stop:
        char = record[at]
        if quoted:
            if char == '"':
                if record[at + 1 : at + 2] == '"':
                    at += 1
                else:
                    quoted = False
        elif char == '"' and at == start:
            quoted = True
        elif char == delimiter:
            if cell == column:
                return start, at
            cell, start = cell + 1, at + 1
        at += 1
    if cell == column:
        return start, stop
    raise DataError(f"the row {record[:80]!r} has no cell {column + 1} to relabel")  # such a row has no label


def _write_parquet(source: TextSource, rows, changed, final, value_of, target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ogaudit.storage import fingerprint

    path = Path(source.path)
    if source.table is not None:  # held since it was read (format "arrow")
        table = source.table
    elif not path.is_file() or fingerprint(path.read_bytes()) != source.file_fingerprint:
        raise DataError(
            f"{source.path!r} changed or moved since it was audited, so its rows cannot be written back. Scan "
            "the file as it is now, then export."
        )
    else:
        table = pq.read_table(path)
    table = table.take(pa.array(rows, type=pa.int64()))
    at = table.column_names.index(source.label_column)
    labels = table.column(at).to_pylist()
    for position in np.flatnonzero(changed).tolist():
        labels[position] = value_of.get(final[position], final[position])
    column = pa.array(labels, type=table.schema.field(at).type)
    table = table.set_column(at, table.schema.field(at), column)
    pq.write_table(table, target)
