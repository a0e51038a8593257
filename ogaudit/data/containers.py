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
from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError

IN_MEMORY_SOURCES = {"arrays": "arrays (x, y)", "dataframe": "a pandas DataFrame", "torch-dataset": "a torch Dataset"}
"""``Dataset.source`` of in-memory data, and how messages name it: such data cannot be read again from a path."""

ACCEPTED = (
    "a built-in name or a path (str or os.PathLike), an ogaudit Dataset, a tuple (x, y) or (x, y, class_names) of "
    "numpy arrays or torch tensors, a pandas DataFrame (feature columns and a label column), or a "
    "torch.utils.data.Dataset yielding (x, y) pairs"
)
"""The data forms :func:`as_dataset` (and :func:`ogaudit.audit`) accept, for error messages."""

LOADER_BATCH = 256
"""Samples a torch ``DataLoader`` stacks at a time when a torch ``Dataset`` is read."""


def is_container(data: object) -> bool:
    """Whether ``data`` is one of the in-memory forms :func:`as_dataset` converts (not a path, not a Dataset)."""
    return isinstance(data, tuple) or _is_dataframe(data) or _is_torch_dataset(data)


def as_dataset(
    data: object,
    *,
    class_names: list[str] | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    fold_label_case: bool = False,
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
          (H, W, C).
    class_names : the name of each class index (labels as indices) or the allowed names (labels as names);
        default the label values present. Not with a three-element tuple, which names them itself.
    label_column : DataFrame only: the label column; default the first column named ``label``, ``class``,
        ``target``, ``y``, ... (:data:`~ogaudit.data.text.LABEL_COLUMNS`; case and spaces ignored).
    id_column : DataFrame only: a column of unique sample ids; default a column named ``id``, ``sample_id``, ...
        (:data:`~ogaudit.data.text.ID_COLUMNS`) when there is one, else the row numbers ``0 … N−1``.
    fold_label_case : see :func:`~ogaudit.data.load.load_dataset`.

    Raises
    ------
    TypeError : for anything else, naming the accepted forms (:data:`ACCEPTED`); for ``label_column`` /
        ``id_column`` with data that is not a DataFrame.
    DataError : for data of an accepted form that cannot be used (non-numeric feature columns named, a missing
        label column, repeated ids, labels not one per sample, ...), with the fix.
    """
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
    x, y = _to_numpy(data[0], "x"), _to_numpy(data[1], "y")
    return dataset_from_arrays(x, y, class_names=class_names, source="arrays", fold_label_case=fold)


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
    x = frame.iloc[:, [columns.index(c) for c in features]].to_numpy(dtype=np.float64)
    y = labels.to_numpy()
    if y.dtype == object and all(isinstance(v, int | np.integer) for v in y[:1000]):
        y = y.astype(np.int64)
    return dataset_from_arrays(x, y, ids=ids, class_names=_names(class_names), source="dataframe", fold_label_case=fold)


def _column(columns: list[str], given: str | None, known: tuple[str, ...], *, what: str, exclude=None):
    """The column ``given`` names (refused naming the columns when absent), or the first named like ``known``."""
    if given is not None:
        if str(given) not in columns:
            raise DataError(f"{what}={given!r} is not a column of the DataFrame; its columns are {columns[:20]}.")
        return str(given)
    by_key = {c.strip().lower(): c for c in reversed(columns) if c != exclude}
    return next((by_key[k] for k in known if k in by_key), None)


def _from_torch_dataset(data, class_names, fold: bool) -> Dataset:
    from torch.utils.data import DataLoader

    try:
        loader = DataLoader(data, batch_size=LOADER_BATCH, shuffle=False, num_workers=0)
        xs, ys = [], []
        for batch in loader:
            if not isinstance(batch, list | tuple) or len(batch) != 2:
                raise DataError(
                    f"The torch Dataset {type(data).__name__} must yield (x, y) pairs; a batch of its samples is "
                    f"{_described(batch)}. Wrap it so that __getitem__ returns (tensor, label)."
                )
            xs.append(_to_numpy(batch[0], "x"))
            labels = batch[1]
            ys.append(np.asarray(labels, dtype=str) if isinstance(labels, list) else _to_numpy(labels, "y"))
    except TypeError as error:  # default_collate: PIL images, dicts of mixed types, ...
        raise DataError(
            f"Cannot stack the samples of the torch Dataset {type(data).__name__} ({error}). Each sample must be "
            "(x, y) with x a tensor or array of one shape (add transforms.ToTensor() for images) and y an int or str."
        ) from error
    if not xs:
        raise DataError(f"The torch Dataset {type(data).__name__} is empty; give at least two classes of samples.")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.ndim == 4 and x.shape[1] in (1, 3):  # torch's (N, C, H, W) as ogaudit's (N, H, W, C)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return dataset_from_arrays(x, y, class_names=_names(class_names), source="torch-dataset", fold_label_case=fold)


def _names(class_names) -> list[str] | None:
    return None if class_names is None else [str(name) for name in _to_numpy(class_names, "class_names").tolist()]


def _to_numpy(value, what: str) -> np.ndarray:
    """``value`` as a numpy array: torch tensors detached and moved to the CPU, pandas objects by ``to_numpy``."""
    if _is_tensor(value):
        return value.detach().cpu().numpy()
    if hasattr(value, "to_numpy") and type(value).__module__.startswith("pandas"):
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
