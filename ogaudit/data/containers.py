"""Data a Python user already holds, as a :class:`~ogaudit.data.dataset.Dataset`: arrays (numpy or torch), a
pandas DataFrame, or a torch ``Dataset`` of ``(x, y)`` pairs.

Every container becomes arrays and goes through :func:`~ogaudit.data.arrays.dataset_from_arrays`, so it is
checked, converted and exported exactly as an ``.npz`` holding the same arrays would be: the same samples give the
same :meth:`~ogaudit.data.dataset.Dataset.fingerprint`, hence the same model, cache entries and scores. pandas and
torch are imported only when such an object is given (never at import time).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.dataset import Dataset, add_notice
from ogaudit.data.limits import check_budget, format_bytes, memory_budget
from ogaudit.errors import DataError

IN_MEMORY_SOURCES = {
    "arrays": "arrays (x, y)",
    "dataframe": "a pandas DataFrame",
    "torch-dataset": "a torch Dataset",
    "hf-dataset": "a Hugging Face datasets.Dataset",
}
"""``Dataset.source`` of in-memory data, and how messages name it: such data cannot be read again from a path."""

ACCEPTED = (
    "a built-in name or a path (str or os.PathLike), an ogaudit Dataset, a tuple (x, y) or (x, y, class_names) of "
    "numpy arrays or torch tensors, a pandas DataFrame (feature columns and a label column), a "
    "torch.utils.data.Dataset yielding (x, y) pairs, or a Hugging Face datasets.Dataset of images and labels"
)
"""The data forms :func:`as_dataset` (and :func:`ogaudit.audit`) accept, for error messages."""

LOADER_BATCH = 256
"""Samples a torch ``DataLoader`` stacks at a time when a torch ``Dataset`` is read."""


def is_container(data: object) -> bool:
    """Whether ``data`` is one of the in-memory forms :func:`as_dataset` converts (not a path, not a Dataset)."""
    from ogaudit.data.hf import is_hf_dataset

    return isinstance(data, tuple) or _is_dataframe(data) or _is_torch_dataset(data) or is_hf_dataset(data)


def as_dataset(
    data: object,
    *,
    class_names: list[str] | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    fold_label_case: bool = False,
    path_column: str | None = None,
) -> Dataset:
    """An in-memory container as a :class:`Dataset` (its ``source`` one of :data:`IN_MEMORY_SOURCES`).

    Parameters
    ----------
    data : one of
        * a tuple ``(x, y)`` or ``(x, y, class_names)``: ``x`` (N, F) feature vectors or (N, H, W[, C]) images
          (channels-first (N, C, H, W) is read too), ``y`` (N,) labels as class indices or names; numpy arrays,
          torch tensors (moved to the CPU) or anything ``numpy.asarray`` reads;
        * a pandas DataFrame: one row per sample, numeric feature columns and a label column;
        * a ``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs, read in order in batches of
          :data:`LOADER_BATCH` with a ``DataLoader``; per-sample image tensors (C, H, W) with C = 1 or 3 become
          (H, W, C);
        * a Hugging Face ``datasets.Dataset`` whose rows hold an image (``Image`` feature, bytes or paths) and a
          label (a ``ClassLabel``, whose names become the class names, or names / indices), read from its Arrow
          data as :func:`ogaudit.data.hf.from_hf_dataset` says (no image decoded before the memory check).
    class_names : the name of each class index (labels as indices) or the allowed names (labels as names);
        default the label values present. Not with a three-element tuple, which names them itself.
    label_column : DataFrame or Hugging Face Dataset: the label column; default the first column named ``label``, ``class``,
        ``target``, ``y``, ... (:data:`~ogaudit.data.text.LABEL_COLUMNS`; case and spaces ignored).
    id_column : DataFrame only: a column of unique sample ids; default a column named ``id``, ``sample_id``, ...
        (:data:`~ogaudit.data.text.ID_COLUMNS`) when there is one, else the row numbers ``0 … N−1``.
    fold_label_case : see :func:`~ogaudit.data.load.load_dataset`.
    path_column : Hugging Face Dataset only: the image column (default: its ``Image`` feature, or found by type
        and name).

    Raises
    ------
    TypeError : for anything else, naming the accepted forms (:data:`ACCEPTED`); for ``label_column`` /
        ``id_column`` with data that is not a DataFrame.
    DataError : for data of an accepted form that cannot be used (non-numeric feature columns named, a missing
        label column, repeated ids, labels not one per sample, ...), with the fix. In particular: data that
        would need more than the memory budget (:mod:`ogaudit.data.limits`), estimated before anything is
        copied (a torch Dataset from its length and first sample, or while it is read when it has no length);
        labels that are missing, non-integral numbers, huge integers or a mix of numbers and names (every value
        is checked, the first bad row named); sparse (scipy or torch), nested and 'meta' tensors; masked arrays
        with masked values (refused, never filled: fill or drop them yourself; an array with nothing masked is
        read as it is); torch Datasets whose samples differ in shape or fail to load (the sample named). A
        DataFrame whose label-like column other than the labels holds the same values is refused; one holding
        other values is kept as a feature, said in ``notes``. bfloat16 and float16 tensors are read as float32.
    """
    from ogaudit.data.hf import from_hf_dataset, is_hf_dataset

    if is_hf_dataset(data):
        if class_names is not None or id_column is not None:
            raise TypeError(
                "class_names and id_column do not apply to a Hugging Face Dataset: its ClassLabel names the classes. "
                "Leave them out (cast the label column to a ClassLabel to name the classes)."
            )
        return from_hf_dataset(
            data, label_column=label_column, path_column=path_column, fold_label_case=fold_label_case
        )
    if path_column is not None:
        raise TypeError(f"path_column names the image column of a Hugging Face Dataset; data is {_described(data)}.")
    if (label_column is not None or id_column is not None) and not _is_dataframe(data):
        raise TypeError(
            f"label_column and id_column name columns of a pandas DataFrame; data is a {type(data).__name__}. "
            "Drop them (a text table's columns are set with AuditSettings(label_column=..., id_column=...))."
        )
    if isinstance(data, tuple):
        return _from_tuple(data, class_names, fold_label_case)
    if _is_dataframe(data):
        return _from_dataframe(data, class_names, label_column, id_column, fold_label_case)
    if _is_torch_dataset(data):
        return _from_torch_dataset(data, class_names, fold_label_case)
    raise TypeError(f"data must be {ACCEPTED}; got {_described(data)}.")


def _from_tuple(data: tuple, class_names, fold: bool) -> Dataset:
    if len(data) not in (2, 3):
        raise TypeError(
            f"A data tuple is (x, y) or (x, y, class_names); got a tuple of {len(data)} element(s) "
            f"({', '.join(_described(v) for v in data[:4])})."
        )
    if len(data) == 3:
        if class_names is not None:
            raise TypeError("class_names is given twice: as the tuple's third element and as class_names=. Give one.")
        class_names = data[2]
    if class_names is not None:
        class_names = [str(name) for name in _to_numpy(class_names, "class_names").tolist()]
    x_estimate = _array_estimate(data[0])
    if x_estimate is not None:  # before any copy: a tensor on a GPU, a broadcast view, a memory map
        check_budget(x_estimate[0], what="the arrays (x, y)", detail=x_estimate[1])
    x, y = _to_numpy(data[0], "x"), _to_numpy(data[1], "y")
    if isinstance(data[1], list | tuple):  # numpy would make [1, "cat", None] strings: check the values as given
        typed = _label_array(np.asarray(data[1], dtype=object), "y")
        if typed.dtype != object:
            y = typed
    if x_estimate is None:  # a list or other sequence: read as an array first
        estimate, detail = _array_estimate(x)
        check_budget(estimate, what="the arrays (x, y)", detail=detail)
    return dataset_from_arrays(x, _label_array(y, "y"), class_names=class_names, source="arrays", fold_label_case=fold)


def _array_estimate(value) -> tuple[int, str] | None:
    """Bytes :func:`dataset_from_arrays` needs for ``x`` given as ``value`` (a numpy array or torch tensor; None
    for anything else): the float32 (or uint8 image) array models read, plus the copy that reading ``value``
    makes unless it already lies in memory as one contiguous block (a tensor on a GPU or of a dtype numpy lacks,
    a broadcast or strided view, a memory map: each counted at the full size it becomes)."""
    if _is_tensor(value):
        _check_tensor(value, "x")
        shape, itemsize = tuple(value.shape), value.element_size()
        resident = (
            value.device.type == "cpu"
            and value.layout == sys.modules["torch"].strided
            and not value.is_nested
            and value.is_contiguous()
            and value.dtype not in _HALF_DTYPES()
        )
        if value.dtype in _HALF_DTYPES():
            itemsize = 4  # converted to float32
        dtype = str(value.dtype).removeprefix("torch.")
    elif isinstance(value, np.ndarray):
        shape, itemsize, dtype = value.shape, value.dtype.itemsize, str(value.dtype)
        resident = value.flags.c_contiguous and not _is_memory_map(value)
    else:
        return None
    values = int(np.prod(shape, dtype=object)) if shape else 0
    held = values * (1 if dtype == "uint8" and len(shape) >= 3 else 4)
    copy = 0 if resident else values * itemsize
    detail = f"x {shape} {dtype}: {format_bytes(held)} as the models' array" + (
        f", {format_bytes(copy)} to read it into memory" if copy else ""
    )
    return held + copy, detail


def _is_memory_map(array: np.ndarray) -> bool:
    import mmap

    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def _HALF_DTYPES() -> tuple:
    torch = sys.modules["torch"]
    return (torch.bfloat16, torch.float16)


def _from_dataframe(frame, class_names, label_column, id_column, fold: bool) -> Dataset:
    from ogaudit.data.text import ID_COLUMNS, LABEL_COLUMNS

    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise DataError(f"The DataFrame repeats column names {sorted({c for c in columns if columns.count(c) > 1})}.")
    if len(frame) == 0:
        raise DataError("The DataFrame has no rows; give one row per sample.")
    label = _column(columns, label_column, LABEL_COLUMNS, what="label_column")
    if label is None:
        raise DataError(
            f"The DataFrame has no label column: none of its columns {columns[:12]}{' …' if len(columns) > 12 else ''} "
            f"is named like a label ({', '.join(LABEL_COLUMNS)}). Name it: label_column='your_column'."
        )
    ids_name = _column(columns, id_column, ID_COLUMNS, what="id_column", exclude=label)
    labels = frame.iloc[:, columns.index(label)]
    missing = labels.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"The label column {label!r} is empty in {int(missing.sum())} row(s), first at row "
            f"{int(np.flatnonzero(missing)[0])}. Drop those rows: frame.dropna(subset=[{label!r}])."
        )
    ids = None
    if ids_name is not None:
        ids = frame.iloc[:, columns.index(ids_name)].astype(str).to_numpy()
        if len(set(ids.tolist())) != len(ids) and id_column is None:
            raise DataError(
                f"The DataFrame's column {ids_name!r} looks like sample ids but repeats values; it is neither ids nor "
                f"a feature. Drop it, or pass id_column= naming a column of unique ids."
            )
    features = [c for c in columns if c not in (label, ids_name)]
    if not features:
        raise DataError(f"The DataFrame has no feature columns besides {label!r}; give at least one numeric column.")
    kinds = {c: frame.dtypes.iloc[columns.index(c)] for c in features}
    refused = [c for c, dtype in kinds.items() if getattr(dtype, "kind", "O") not in "biuf"]
    if refused:
        raise DataError(
            f"The DataFrame's feature columns must be numeric; {len(refused)} {'is' if len(refused) == 1 else 'are'} "
            f"not: {refused[:10]}"
            f"{' …' if len(refused) > 10 else ''} (dtypes {[str(kinds[c]) for c in refused[:5]]}). Drop them "
            "(frame.drop(columns=[...])), encode them as numbers (pandas.get_dummies), or name the label column "
            "with label_column=."
        )
    values = len(frame) * len(features)  # sparse columns too: to_numpy expands them
    check_budget(
        values * (8 + 4),
        what="the DataFrame",
        detail=f"{len(frame):,} rows x {len(features):,} feature columns: {format_bytes(values * 8)} as float64, "
        f"{format_bytes(values * 4)} as the models' float32 array",
    )
    also_labels = [c for c in features if c != label and _column([c], None, LABEL_COLUMNS, what="") is not None]
    for other in also_labels:
        if labels.dtype.kind in "biuf" and np.array_equal(
            frame.iloc[:, columns.index(other)].to_numpy(dtype=np.float64), labels.to_numpy(dtype=np.float64)
        ):
            raise DataError(
                f"The DataFrame's column {other!r} holds the same values as the label column {label!r}; as a "
                f"feature it would give every label away. Drop it: frame.drop(columns=[{other!r}]), or name the "
                "label column with label_column=."
            )
    x = frame.iloc[:, [columns.index(c) for c in features]].to_numpy(dtype=np.float64)
    y = _label_array(labels.to_numpy(), f"the label column {label!r}")
    dataset = dataset_from_arrays(
        x, y, ids=ids, class_names=_names(class_names), source="dataframe", fold_label_case=fold
    )
    if also_labels:
        add_notice(
            dataset.notes,
            f"The DataFrame's column {label!r} is taken as the labels; {also_labels} also "
            f"look{'s' if len(also_labels) == 1 else ''} like label columns and {'is' if len(also_labels) == 1 else 'are'} "
            "kept as features. Name the labels with label_column=, and drop columns that are not features.",
        )
    return dataset


MAX_LABEL_INT = 2**62
"""Integer labels beyond this magnitude are refused: they are ids or hashes, not classes."""


def _label_array(y: np.ndarray, what: str) -> np.ndarray:
    """An object-dtype label array typed from every value: all integers -> int64 class indices, all strings ->
    names; missing values (None, NaN), non-integral floats, huge integers and mixed types are refused naming
    the first row. Other dtypes pass unchanged (:func:`dataset_from_arrays` checks them)."""
    if y.dtype != object:
        return y
    flat = y.reshape(-1) if y.ndim == 2 and y.shape[1:] == (1,) else y
    if flat.ndim != 1:
        return y  # not one label per sample: dataset_from_arrays says so
    kinds = []
    for row, value in enumerate(flat.tolist()):
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and value != value):
            raise DataError(
                f"{what} has a missing label (None or NaN) at row {row}. Drop the samples without a label, or "
                "give them one."
            )
        if isinstance(value, bool):
            kind = "bool"
        elif isinstance(value, int):
            if abs(value) > MAX_LABEL_INT:
                raise DataError(
                    f"{what} holds the integer {value} at row {row}, too large for a class index; labels are class "
                    "indices or names. Map such values to classes, or give them as strings."
                )
            kind = "int"
        elif isinstance(value, float):
            if not np.isfinite(value) or value != int(value):
                raise DataError(
                    f"{what} holds the non-integer number {value!r} at row {row}; labels are integer class indices "
                    "or class names (strings). Round or map them to classes."
                )
            kind = "int"
        elif isinstance(value, str | bytes):
            kind = "str"
        else:
            raise DataError(
                f"{what} holds a {type(value).__name__} ({str(value)[:40]!r}) at row {row}; labels are integer "
                "class indices or class names (strings)."
            )
        kinds.append(kind)
        if kind != kinds[0]:
            raise DataError(
                f"{what} mixes label types: row 0 is {kinds[0]} ({flat[0]!r}) but row {row} is {kind} "
                f"({value!r}). Give every label as an integer index or every label as a name: e.g. y.astype(str)."
            )
    if kinds and kinds[0] in ("int", "bool"):
        return np.array([int(v) for v in flat.tolist()], dtype=np.int64 if kinds[0] == "int" else bool).reshape(y.shape)
    return y


def _column(columns: list[str], given: str | None, known: tuple[str, ...], *, what: str, exclude=None):
    """The column ``given`` names (refused naming the columns when absent), or the first named like ``known``."""
    if given is not None:
        if str(given) not in columns:
            raise DataError(f"{what}={given!r} is not a column of the DataFrame; its columns are {columns[:20]}.")
        return str(given)
    by_key = {c.strip().lower(): c for c in reversed(columns) if c != exclude}
    return next((by_key[k] for k in known if k in by_key), None)


def _from_torch_dataset(data, class_names, fold: bool) -> Dataset:
    """Read every ``(x, y)`` sample in order, :data:`LOADER_BATCH` at a time, within the memory budget: a
    dataset with a length is estimated from it and its first sample before anything else is read; one without
    (an ``IterableDataset``) is counted while it is read and stopped once over the budget."""
    from torch.utils.data import IterableDataset

    name = type(data).__name__
    budget = memory_budget()
    length = None
    if not isinstance(data, IterableDataset) and hasattr(type(data), "__len__"):
        try:
            length = len(data)
        except Exception as error:  # noqa: BLE001 - the user's __len__: any failure is theirs to fix
            raise DataError(f"len() of the torch Dataset {name} failed ({type(error).__name__}: {error}).") from error
        if length < 0:
            raise DataError(f"The torch Dataset {name} says its length is {length}; __len__ must return N ≥ 0.")
    samples = _samples(data, length)
    xs, ys, batch_x, batch_y = [], [], [], []
    first_shape = None
    read = 0
    for index, sample in samples:
        x, y = _sample_pair(sample, index, name)
        if first_shape is None:
            first_shape = x.shape
            if length is not None:  # before reading more: N x the first sample, as read, stacked and as float32
                per_sample = x.nbytes * 2 + x.size * 4
                check_budget(
                    length * per_sample,
                    what=f"the torch Dataset {name}",
                    detail=f"{length:,} samples like sample 0 (x {x.shape} {x.dtype}): {format_bytes(per_sample)} each "
                    "read, stacked and as float32",
                    budget=budget,
                )
        elif x.shape != first_shape:
            raise DataError(
                f"Sample {index} of the torch Dataset {name} has x of shape {x.shape} but sample 0 has "
                f"{first_shape}; every sample must have one shape. Resize or pad them in the Dataset's transform "
                "(e.g. transforms.Resize((H, W)) for images)."
            )
        batch_x.append(x)
        batch_y.append(y)
        read += x.nbytes * 2 + x.size * 4
        if len(batch_x) == LOADER_BATCH:
            xs.append(np.stack(batch_x))
            ys.append(_stack_labels(batch_y, index + 1 - len(batch_y), name))
            batch_x, batch_y = [], []
            if length is None:
                check_budget(
                    read,
                    what=f"the torch Dataset {name}",
                    detail=f"{index + 1:,} samples read so far, stopped there",
                    budget=budget,
                )
    if batch_x:
        xs.append(np.stack(batch_x))
        ys.append(_stack_labels(batch_y, index + 1 - len(batch_y), name))
    if not xs:
        raise DataError(f"The torch Dataset {name} is empty; give at least two classes of samples.")
    text = [part.dtype.kind in "US" for part in ys]
    if any(text) and not all(text):
        first = text.index(not text[0])
        raise _mixed_labels(name, (0, ys[0][0]), (first * LOADER_BATCH, ys[first][0]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    del xs, ys
    if x.ndim == 4 and x.shape[1] in (1, 3, 4):  # torch's (N, C, H, W) as ogaudit's (N, H, W, C)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return dataset_from_arrays(x, y, class_names=_names(class_names), source="torch-dataset", fold_label_case=fold)


def _samples(data, length: int | None):
    """``(index, sample)`` in order: ``data[i]`` for ``i < length``, else the dataset's iterator; the user's own
    failures become a DataError naming the index."""
    name = type(data).__name__
    if length is not None:
        for index in range(length):
            try:
                sample = data[index]
            except Exception as error:  # noqa: BLE001 - the user's __getitem__
                raise DataError(
                    f"Reading sample {index} of the torch Dataset {name} failed ({type(error).__name__}: {error}). "
                    "Fix its __getitem__ (or its __len__, if it claims more samples than it has)."
                ) from error
            yield index, sample
        return
    index = 0
    try:
        iterator = iter(data)
    except Exception as error:  # noqa: BLE001
        raise DataError(f"The torch Dataset {name} cannot be iterated ({type(error).__name__}: {error}).") from error
    while True:
        try:
            sample = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001 - the user's __iter__
            raise DataError(
                f"Reading sample {index} of the torch Dataset {name} failed ({type(error).__name__}: {error})."
            ) from error
        yield index, sample
        index += 1


def _sample_pair(sample, index: int, name: str) -> tuple[np.ndarray, object]:
    if not isinstance(sample, list | tuple) or len(sample) != 2:
        raise DataError(
            f"The torch Dataset {name} must yield (x, y) pairs; sample {index} is {_described(sample)}. Wrap it so "
            "that __getitem__ returns (tensor, label)."
        )
    x, y = sample
    if type(x).__module__.startswith("PIL"):
        raise DataError(
            f"Sample {index} of the torch Dataset {name} is a PIL image; add transforms.ToTensor() so that x is a "
            "tensor."
        )
    x = _to_numpy(x, f"x of sample {index}")
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise DataError(
            f"x of sample {index} of the torch Dataset {name} has dtype {x.dtype}; each x must be a numeric tensor "
            "or array of one shape (add transforms.ToTensor() for images)."
        )
    if isinstance(y, str | bytes):
        return x, y
    label = _to_numpy(y, f"y of sample {index}")
    if label.dtype == object or label.dtype.kind not in "biufUS":
        raise DataError(
            f"y of sample {index} of the torch Dataset {name} is {_described(y)}; each y must be an int or a str."
        )
    return x, label


def _mixed_labels(name: str, one: tuple[int, object], other: tuple[int, object]) -> DataError:
    """The error for a torch Dataset whose labels mix names and numbers: two ``(sample index, label)`` examples."""
    return DataError(
        f"The torch Dataset {name} mixes label types: sample {one[0]} has {one[1]!r} but sample {other[0]} has "
        f"{other[1]!r}. Give every y as an int (class index) or every y as a str (class name)."
    )


def _stack_labels(labels: list, start: int, name: str) -> np.ndarray:
    """The labels of samples ``start …`` as one array; names and numbers mixed are refused naming the sample."""
    text = [isinstance(v, str | bytes) or v.dtype.kind in "US" for v in labels]
    if any(text) and not all(text):
        first = text.index(not text[0])
        raise _mixed_labels(name, (start, labels[0]), (start + first, labels[first]))
    if any(text):
        return np.asarray([v if isinstance(v, str | bytes) else str(v.item()) for v in labels], dtype=str)
    return np.stack(labels)


def _names(class_names) -> list[str] | None:
    return None if class_names is None else [str(name) for name in _to_numpy(class_names, "class_names").tolist()]


def _to_numpy(value, what: str) -> np.ndarray:
    """``value`` as a numpy array: torch tensors detached and moved to the CPU (bfloat16 and float16 as
    float32), pandas objects by ``to_numpy``; sparse matrices and tensors, nested and 'meta' tensors and masked
    arrays with masked values are refused with the fix."""
    if _is_tensor(value):
        return _tensor_to_numpy(value, what)
    module = type(value).__module__
    if module.startswith("scipy.sparse"):
        raise DataError(
            f"{what} is a scipy sparse matrix ({type(value).__name__} of shape {getattr(value, 'shape', '?')}); give a "
            f"dense array: {what.split()[0]}.toarray() (mind its size: N x F values)."
        )
    if isinstance(value, np.ma.MaskedArray):
        if np.ma.getmaskarray(value).any():
            raise DataError(
                f"{what} is a masked array with {int(np.ma.getmaskarray(value).sum())} masked value(s); ogaudit "
                "does not guess them. Drop those samples, or fill them yourself: array.filled(value)."
            )
        return np.asarray(value.data)  # nothing masked: the values as they are
    if hasattr(value, "to_numpy") and module.startswith("pandas"):
        return value.to_numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DataError(f"{what} cannot be read as an array ({error}); give a numpy array or a torch tensor.") from None
    if array.dtype == object and what == "x":
        raise DataError(
            f"{what} holds Python objects (dtype object, e.g. {type(array.flat[0]).__name__}); give a numeric array "
            "of one shape per sample: numpy.stack(samples).astype('float32')."
        )
    return array


def _tensor_to_numpy(tensor, what: str) -> np.ndarray:
    torch = sys.modules["torch"]
    _check_tensor(tensor, what)
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.to(torch.float32)  # numpy has no bfloat16; models compute in float32 anyway
    return tensor.cpu().resolve_conj().resolve_neg().numpy()


def _check_tensor(tensor, what: str) -> None:
    """Refuse tensors whose values cannot be read as one dense array, with the fix."""
    torch = sys.modules["torch"]
    shown = what.split()[0]
    if tensor.is_nested:
        raise DataError(
            f"{what} is a nested tensor (samples of different shapes); give one shape per sample: pad them, "
            f"e.g. torch.nested.to_padded_tensor({shown}, 0.0), or resize them first."
        )
    if tensor.layout != torch.strided:
        raise DataError(
            f"{what} is a sparse tensor (layout {str(tensor.layout).removeprefix('torch.')}); give a dense one: "
            f"{shown}.to_dense() (mind its size: {tuple(tensor.shape)})."
        )
    if tensor.device.type == "meta":
        raise DataError(
            f"{what} is a 'meta' tensor: it has a shape {tuple(tensor.shape)} but no values to read. Give the "
            "tensor with its data (create or load it on 'cpu' or a GPU; a real tensor can be moved with .to('cpu'))."
        )
    if tensor.dtype.is_complex:
        raise DataError(f"{what} has complex dtype {tensor.dtype}; give real numbers (e.g. {shown}.abs()).")


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_dataframe(value) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _is_torch_dataset(value) -> bool:
    if "torch" not in sys.modules:  # not imported: value cannot be a torch Dataset
        return False
    from torch.utils.data import Dataset as TorchDataset

    return isinstance(value, TorchDataset)


def _described(value) -> str:
    """A value as an error message names it: its type, and its shape when it has one."""
    if isinstance(value, str | os.PathLike):
        return f"{type(value).__name__} {str(value)[:80]!r}"
    shape = getattr(value, "shape", None)
    return f"a {type(value).__module__}.{type(value).__qualname__}" + (
        f" of shape {tuple(shape)}" if shape is not None else ""
    )
