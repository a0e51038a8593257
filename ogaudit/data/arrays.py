"""Array datasets: ``.npz`` files, folders of ``.npy`` arrays (``x`` memory-mapped) and arrays in memory.

Arrays keep a reference to the user's own arrays (:class:`~ogaudit.data.dataset.SourceArrays`) so that an export
writes those back in their own encoding (:func:`source_arrays_for`); labels may be indices, names, a column,
one-hot or probability rows.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from ogaudit.data.dataset import Dataset, SourceArrays, add_notice, canonical_labels, check_labels, rare_class_notes
from ogaudit.data.imagefiles import MIN_IMAGE_SIDE
from ogaudit.data.limits import check_budget, check_npz, read_header_2_or_3
from ogaudit.errors import DataError


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
        others = sorted(p.name for p in folder.glob("*.npy") if p.stem.lower() in _LABEL_KEYS)
        hint = f" It holds {others[0]}: rename it y.npy if it holds the labels." if others else ""
        raise DataError(
            f"{str(folder)!r} has x.npy but no y.npy.{hint} Save the labels beside it: numpy.save('y.npy', labels)."
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
            if version == (1, 0):  # numpy refuses headers over 10,000 bytes
                shape, fortran, dtype = fmt.read_array_header_1_0(handle)
            else:  # 3.0 is 2.0 with UTF-8 text (field names): numpy's own reader for both
                shape, fortran, dtype = read_header_2_or_3(handle, version)
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
                f"{_npz_keys_hint(archive.files)}Save it as numpy.savez(path, x=samples, y=labels)."
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
        or 3 (C = 4, RGBA: the alpha channel is dropped, with a :class:`DataNotice`); other 4-D arrays are
        flattened to vectors when their sides are under ``MIN_IMAGE_SIDE``, else refused, as are 5-D and higher.
        Any int, uint, bool or float dtype. ``uint8`` images are used as they are; other images become float32
        without rounding, scaled per channel by their range for models and thumbnails (``Dataset.value_range``). Images under ``MIN_IMAGE_SIDE``
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
            wrong = ~np.isfinite(flat) | (flat != np.round(flat))
            raise DataError(
                f"y must hold integer class indices or class names; found {int(wrong.sum())} non-integer or missing "
                f"value(s), first at row {int(np.flatnonzero(wrong)[0])}, e.g. {flat[wrong][:3].tolist()}. For "
                "scores per class give (N, C) rows; else round or map them to classes (drop unlabelled samples)."
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
        add_notice(notes, text)
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
            add_notice(notes, message)
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
    add_notice(
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
    elif x.ndim == 4 and x.shape[3] == 4 and min(x.shape[1:3]) >= MIN_IMAGE_SIDE:
        images = x[..., :3]
        add_notice(notes, f"{what} of shape {x.shape} is read as RGBA images; the alpha channel is dropped (RGB kept).")
    elif x.ndim == 4 and x.shape[1] == 4 and min(x.shape[2:4]) >= MIN_IMAGE_SIDE:
        images = x[:, :3].transpose(0, 2, 3, 1)
        add_notice(
            notes,
            f"{what} of shape {x.shape} is read as channels-first RGBA images; the alpha channel is dropped (RGB kept).",
        )
    elif x.ndim >= 5 or (x.ndim == 4 and max(min(x.shape[1:3]), min(x.shape[2:4])) >= MIN_IMAGE_SIDE):
        raise DataError(
            f"{what} has shape {x.shape}, which reads as neither feature vectors nor images: images are (N, H, W) or "
            "(N, H, W, C) / (N, C, H, W) with C = 1 or 3 channels (4, RGBA, is read as RGB). Convert images to "
            "grayscale or RGB first, or give feature vectors as (N, F): x.reshape(len(x), -1)."
        )
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


_SAMPLE_KEYS = ("x", "images", "image", "data", "features", "inputs", "imgs", "samples", "pixels")
_LABEL_KEYS = ("y", "labels", "label", "targets", "target", "classes", "class")


def _npz_keys_hint(keys: list[str]) -> str:
    """What an ``.npz`` without ``x``/``y`` looks like (Keras' train/test split, other names) and the one-line fix."""
    found = {key.lower(): key for key in keys}
    for suffix in ("_train", "train"):
        x, y = (
            next((found[k + suffix] for k in names if k + suffix in found), None)
            for names in (_SAMPLE_KEYS, _LABEL_KEYS)
        )
        if x and y:
            return (
                f"It looks like a train/test split ({x!r}, {y!r}): audit one split, e.g. "
                f"d = numpy.load(path); numpy.savez('train.npz', x=d[{x!r}], y=d[{y!r}]). "
            )
    x = next((found[k] for k in _SAMPLE_KEYS if k in found), None)
    y = next((found[k] for k in _LABEL_KEYS if k in found), None)
    if x and y:
        return f"Its samples and labels look like {x!r} and {y!r}: d = numpy.load(path); numpy.savez(new, x=d[{x!r}], y=d[{y!r}]). "
    return ""
