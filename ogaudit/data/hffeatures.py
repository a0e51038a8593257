"""The Hugging Face ``datasets`` metadata ogaudit reads, as JSON: the features stored in an Arrow or Parquet schema
and a ``ClassLabel``'s names, and a label column read as class names. Shared by :mod:`ogaudit.data.hf` and the
Parquet text tables of :mod:`ogaudit.data.text`; imports neither.
"""

from __future__ import annotations

import json

from ogaudit.errors import DataError


def features_of_schema(schema) -> dict:
    """The ``datasets`` features stored in an Arrow/Parquet schema's ``huggingface`` metadata (JSON), or {}."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw or len(raw) > 16 * 1024**2:
        return {}
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    features = (info.get("info") or {}).get("features") if isinstance(info, dict) else None
    return features if isinstance(features, dict) else {}


def class_label_names(feature) -> list[str] | None:
    """A `ClassLabel` feature's names (as strings, in order), or None for any other feature."""
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        names = feature.get("names")
        if isinstance(names, list) and names:
            return [str(name) for name in names]
    return None


def labels_as_names(column, names: list[str], what: str, label: str) -> list[str]:
    """A ``ClassLabel`` column's values as class names; ``""`` (no label) for None and ``-1``.

    Raises :class:`DataError` for a value outside ``names``."""
    return labels_and_skips(column, names, what, label)[0]


def labels_and_skips(column, names: list[str] | None, what: str, label: str) -> tuple[list[str], dict[int, str]]:
    """Each row's label as a class name, and ``{row: reason}`` for rows without one (None, or ``-1``: how
    ``datasets`` marks a missing ``ClassLabel``)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_nested(kind) or pa.types.is_floating(kind) and names is not None:
        raise DataError(
            f"{what}: the label column {label!r} holds {kind} values; it must hold one class (an integer or a name) "
            "per row. Name another column with --label-column."
        )
    values = column.to_pylist()
    labels, skips = [], {}
    for row, value in enumerate(values):
        if value is None or value == -1 and names is not None:
            skips[row] = "no label (None, or -1 in a ClassLabel)"
            labels.append("")
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float):
            if value != value or value != int(value):
                raise DataError(
                    f"{what}: the label column {label!r} holds the non-integer {value!r} at row {row}; labels are "
                    "class indices or names."
                )
            value = int(value)
        if names is not None and isinstance(value, int):
            if not 0 <= value < len(names):
                raise DataError(
                    f"{what}: row {row} has label {value}, outside its ClassLabel's {len(names)} names {names[:10]}. "
                    "Fix the label or the ClassLabel's names."
                )
            labels.append(names[value])
        elif isinstance(value, bytes):
            labels.append(value.decode("utf-8", "replace"))
        else:
            text = str(value)
            if not text.strip():
                skips[row] = "empty label"
            labels.append(text)
    return labels, skips
