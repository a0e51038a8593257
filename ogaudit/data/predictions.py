"""A model's predictions on the data, read from a file: penultimate features and probabilities (or logits), per
sample. They are all the last-layer gradient needs, ``(softmax(z) − onehot(y)) ⊗ [h, 1]``, so the default detector
flags samples from them with no model run and nothing trained (``ogaudit scan DATA --predictions FILE``,
``AuditSettings(predictions=FILE)``, ``ogaudit.score(FILE)``).

Two formats, read without running code and with their size checked before any array is decoded:

* ``.npz`` (``numpy.savez``; ``allow_pickle=False``): arrays ``features`` (N, d) and ``probs`` (N, C) or
  ``logits`` (N, C); optional ``sample_ids`` (N,), ``labels`` (N,) and ``class_names`` (C,);
* ``.parquet``: one row per sample, with list columns ``features`` and ``probs`` / ``logits``, or wide columns
  ``feature_0 … feature_{d-1}`` and ``prob_0 …`` / ``logit_0 …``; optional ``sample_id`` and ``label`` columns.

Other spellings are accepted for each (``embeddings``, ``pred_probs``, ``ids``, ``y`` …: :data:`NAMES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ogaudit.data.limits import check_budget, check_npz
from ogaudit.errors import DataError

NAMES = {
    "features": ("features", "feature", "embeddings", "embedding", "penultimate", "h"),
    "probs": ("probs", "pred_probs", "probabilities", "proba", "prob", "softmax"),
    "logits": ("logits", "logit", "scores"),
    "sample_ids": ("sample_ids", "sample_id", "ids", "id"),
    "labels": ("labels", "label", "y", "given_label"),
    "class_names": ("class_names", "classes"),
}
"""The names each field is found by (case ignored), first match wins."""
SUFFIXES = (".npz", ".parquet")
PARQUET_EXPANSION = 3
"""Memory a Parquet file's columns take when read, per uncompressed byte: the Arrow table, numpy copies."""


@dataclass(frozen=True)
class Predictions:
    """Per-sample outputs of the user's model.

    features : (N, d) float32, the input of its last linear layer.
    probs : (N, C) float32 softmax probabilities (from ``logits`` when the file held logits).
    sample_ids : (N,) str, or None (then rows are the data's samples in order).
    labels : (N,) the labels the predictions were made against, or None (the data's labels count).
    class_names : (C,) str, or None.
    source : what they were read from, for messages and the run record.
    """

    features: np.ndarray
    probs: np.ndarray
    sample_ids: np.ndarray | None
    labels: np.ndarray | None
    class_names: list[str] | None
    source: str


def read_predictions(path: str | Path) -> Predictions:
    """The :class:`Predictions` in ``path`` (module docstring). Raises :class:`DataError` naming the fix: another
    format, a missing array (with the names it looked for), arrays of the wrong shape, non-finite values,
    probabilities that are not probabilities, a file over the memory budget."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Predictions file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        fields = _read_npz(path)
    elif suffix == ".parquet":
        fields = _read_parquet(path)
    else:
        raise DataError(
            f"Predictions file {path.name!r} is not one of {', '.join(SUFFIXES)}. Save them with numpy.savez(FILE, "
            "features=..., probs=..., sample_ids=...) or as Parquet with features / probs columns."
        )
    return from_arrays(fields, source=str(path))


def from_arrays(fields: dict, *, source: str = "arrays") -> Predictions:
    """:class:`Predictions` from a mapping with ``features`` and ``probs`` or ``logits`` (and optional
    ``sample_ids``, ``labels``, ``class_names``), each checked."""
    features = _matrix(fields.get("features"), "features", source)
    if (fields.get("probs") is None) == (fields.get("logits") is None):
        raise DataError(
            f"{source}: give exactly one of probs (N, C) or logits (N, C); found "
            f"{'both' if fields.get('probs') is not None else 'neither'} (names looked for: "
            f"{', '.join(NAMES['probs'] + NAMES['logits'])})."
        )
    name = "probs" if fields.get("probs") is not None else "logits"
    outputs = _matrix(fields[name], name, source)
    if len(outputs) != len(features):
        raise DataError(f"{source}: {name} has {len(outputs)} rows but features has {len(features)}.")
    if outputs.shape[1] < 2:
        raise DataError(f"{source}: {name} has {outputs.shape[1]} column(s); one per class, at least two.")
    if name == "logits":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
    else:
        probs = outputs
        sums = probs.sum(axis=1)
        bad = (probs < 0).any(axis=1) | (probs > 1).any(axis=1) | ~np.isclose(sums, 1.0, atol=1e-3)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: probs must be probabilities, each row in [0, 1] summing to 1; {int(bad.sum())} row(s) "
                f"are not, first row {row} (sum {sums[row]:.4g}). Raw scores go in 'logits'."
            )
    ids = fields.get("sample_ids")
    if ids is not None:
        ids = np.asarray(ids).astype(str)
        if ids.shape != (len(features),):
            raise DataError(f"{source}: sample_ids must be one per row ({len(features)}); got shape {ids.shape}.")
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"{source}: sample_ids repeat; each sample once.")
    labels = fields.get("labels")
    names = fields.get("class_names")
    names = None if names is None else [str(c) for c in np.asarray(names).tolist()]
    if names is not None and len(names) != probs.shape[1]:
        raise DataError(f"{source}: class_names has {len(names)} names for {probs.shape[1]} columns of {name}.")
    return Predictions(
        features.astype(np.float32),
        probs.astype(np.float32),
        ids,
        None if labels is None else np.asarray(labels),
        names,
        source,
    )


def aligned(predictions: Predictions, sample_ids: np.ndarray, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, d), probs (N, C))`` in the order of the data's ``sample_ids`` (N,): matched by id when the
    predictions carry ids (extra rows, e.g. of a subset, are left out), else row by row (then N must agree).
    Raises :class:`DataError` for samples without predictions, another row count or other classes."""
    source = predictions.source
    if predictions.probs.shape[1] != len(class_names):
        raise DataError(
            f"{source}: {predictions.probs.shape[1]} probability columns but the data have {len(class_names)} "
            f"classes {class_names[:10]}; give one column per class, in the data's class order."
        )
    if predictions.class_names is not None and predictions.class_names != [str(c) for c in class_names]:
        raise DataError(
            f"{source}: its class_names {predictions.class_names[:10]} are not the data's {class_names[:10]} (in "
            "this order); reorder the probability columns to the data's classes."
        )
    if predictions.sample_ids is None:
        if len(predictions.features) != len(sample_ids):
            raise DataError(
                f"{source}: {len(predictions.features)} rows for {len(sample_ids)} samples. Without sample_ids the "
                "rows are the data's samples in order; add sample_ids to match them by id (a subset, another order)."
            )
        return predictions.features, predictions.probs
    position = {sid: i for i, sid in enumerate(predictions.sample_ids.tolist())}
    wanted = np.asarray(sample_ids).astype(str).tolist()
    missing = [sid for sid in wanted if sid not in position]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} of the data's {len(wanted)} samples have no predictions, e.g. {missing[:3]} "
            f"(its ids look like {predictions.sample_ids[:3].tolist()}). Predict every sample, with the data's ids."
        )
    rows = np.array([position[sid] for sid in wanted], dtype=np.int64)
    return predictions.features[rows], predictions.probs[rows]


def _find(names: list[str], field: str) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[n] for n in NAMES[field] if n in lower), None)


def _read_npz(path: Path) -> dict:
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {field: saved[key] for field in NAMES if (key := _find(list(saved.files), field)) is not None}
    except ValueError as error:  # an object array: a pickle numpy refuses to load
        raise DataError(f"{path.name!r}: {error}. Save plain arrays (strings as str, not objects).") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path.name!r} is not a readable .npz ({error}).") from None


def _read_parquet(path: Path) -> dict:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError ... for a damaged file
        raise DataError(f"{path.name!r} is not a readable Parquet file ({error}).") from None
    size = 0
    for i in range(metadata.num_row_groups):  # decoded: 8 bytes a value (encodings such as RLE store far fewer)
        group = metadata.row_group(i)
        values = sum(group.column(j).num_values for j in range(group.num_columns)) * 8
        size += max(group.total_byte_size, values)
    check_budget(
        size * PARQUET_EXPANSION,
        what=repr(path.name),
        detail=f"{metadata.num_rows:,} rows of predictions, {size:,} bytes decoded",
    )
    import pyarrow as pa

    from ogaudit.data.text import check_parquet_decoded

    texts = [  # ids, labels, any text column: a text may be stored once and named by every row (dictionary pages)
        field.name
        for field in pq.ParquetFile(path).schema_arrow
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
    ]
    if texts:
        check_parquet_decoded(path, texts, metadata.num_rows, repr(path.name))
    frame = pq.read_table(path).to_pandas()
    columns = [str(c) for c in frame.columns]
    fields: dict = {}
    for field in ("features", "probs", "logits"):
        key = _find(columns, field)
        if key is not None:
            fields[field] = np.stack([np.asarray(v, dtype=np.float64) for v in frame[key]]) if len(frame) else None
            continue
        prefix = {"features": ("feature_", "h_"), "probs": ("prob_", "p_"), "logits": ("logit_",)}[field]
        wide = [c for c in columns if any(re.fullmatch(re.escape(p) + r"\d+", c) for p in prefix)]
        if wide:
            wide.sort(key=lambda c: int(re.search(r"\d+$", c).group()))
            fields[field] = frame[wide].to_numpy(dtype=np.float64)
    for field in ("sample_ids", "labels"):
        key = _find(columns, field)
        if key is not None:
            fields[field] = frame[key].to_numpy()
    return fields


def _matrix(value, name: str, source: str) -> np.ndarray:
    if value is None:
        raise DataError(f"{source}: no {name} found (names looked for: {', '.join(NAMES[name])}).")
    array = np.asarray(value)
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"{source}: {name} must be a 2-D array, one row per sample; got shape {array.shape}.")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: {name} must be numbers; got {array.dtype}.")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise DataError(
            f"{source}: {name} has NaN or infinite values in {int(bad.sum())} row(s), first at row "
            f"{int(np.flatnonzero(bad)[0])}."
        )
    return array
