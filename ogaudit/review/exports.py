"""Results handed to the user's own tools: FiftyOne, Label Studio, a Hugging Face dataset, Parquet and cleanlab's
label-issues frame, each in that tool's own on-disk format.

Every export starts from one table, :func:`reviewed_table`: the run's per-sample scores joined with the review's
decisions in force (one row per sample, in the dataset's order)::

    sample_id, given_label, predicted_label, suggested_label, score (higher = more suspicious), rank (1 = most
    suspicious), flagged, p_wrong (calibrated probability that the given label is wrong), p_wrong_low,
    p_wrong_high (its 90% interval), p_wrong_calibrated (False where the review card reads "not yet calibrated:
    between p_wrong_low and p_wrong_high": the card's own numbers, with the review's decisions applied as the card
    applies them), decision (the action in force, or None), reviewed_label (the label after the review: the new one for confirm / relabel, the given one
    otherwise, None for remove), annotator, decided_at [, true_label, is_noisy with planted noise]

Labels keep their type, by the one rule of :attr:`Dataset.integer_labels
<ogaudit.data.dataset.Dataset.integer_labels>` (recorded in the run as ``dataset.label_type``): integers when the
user's own arrays held them as integers, otherwise the class names as text — an ImageFolder whose folders are named
``0`` … ``9`` gives ``"0"`` … ``"9"``, as ``ogaudit.audit``'s ``result.scores`` does.

:func:`write_export` writes one format under the path it is given and nowhere else (never into the data: images
are copies of the user's files, never hard links, or PNGs encoded from the arrays), all at once: a folder is built
beside its target and renamed into place, a file is replaced atomically. Formats that carry the samples themselves
(FiftyOne: images; Label Studio: images or texts) refuse data without them, naming a format that fits.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.dataset import Dataset, whole_number_names
from ogaudit.errors import DataError, require
from ogaudit.review.calibration import EXPORT_WRONG_COLUMNS, WrongEstimate, card_wrong_columns
from ogaudit.review.ledger import LABELLED_ACTIONS
from ogaudit.storage import atomic_path, check_replaceable, write_csv

EXPORT_FORMATS = ("fiftyone", "label-studio", "hf", "parquet", "cleanlab")
"""What :func:`write_export` writes (``ogaudit export FORMAT``)."""

LABEL_COLUMNS = ("given_label", "predicted_label", "suggested_label", "reviewed_label", "true_label")
TABLE_COLUMNS = (
    "sample_id",
    "given_label",
    "predicted_label",
    "suggested_label",
    "score",
    "rank",
    "flagged",
    "p_wrong",
    "p_wrong_low",
    "p_wrong_high",
    "p_wrong_calibrated",
    "decision",
    "reviewed_label",
    "annotator",
    "decided_at",
)
"""The columns of :func:`reviewed_table`, in order (``true_label``, ``is_noisy`` follow with planted noise)."""

CLEANLAB_COLUMNS = ("is_label_issue", "label_score", "given_label", "predicted_label")
"""cleanlab's label-issues frame (``Datalab.get_issues("label")``, ``find_label_issues``' table)."""

FIFTYONE_FIELD = "ground_truth"
"""The label field FiftyOne's ``Dataset.from_dir`` fills by default; the export's fields are its attributes."""

LABEL_STUDIO_URL_PREFIX = "/data/local-files/?d="
"""Label Studio's URL for a file under ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (the export folder)."""

# ---------------------------------------------------------------- the table every export writes


def integer_labels(class_names: list[str]) -> bool:
    """Whether every class name is a whole number written plainly (``"7"``, not ``"07"`` or ``"7.0"``): what
    decides the label type of a table that carries no other word on it (``ogaudit.score``'s table read back from a
    file, a run recorded before ``label_type``)."""
    return whole_number_names(class_names)


def _integer_table(table: pd.DataFrame) -> bool:
    """Whether :func:`reviewed_table` typed ``table``'s labels as integers."""
    return str(table["given_label"].dtype) == "Int64"


def reviewed_table(
    scores: pd.DataFrame,
    decisions: pd.DataFrame | None,
    class_names: list[str],
    *,
    integer: bool,
    p_wrong: np.ndarray | None = None,
    wrong: WrongEstimate | None = None,
) -> pd.DataFrame:
    """One row per sample (``scores``' order) with the review's decisions in force: :data:`TABLE_COLUMNS`.

    Parameters
    ----------
    scores : the run's table or :func:`ogaudit.score`'s: ``sample_id, given_label, predicted_label,
        suggested_label, score, rank, flagged`` (``p_wrong``, ``true_label``, ``is_noisy`` when present).
    decisions : :meth:`~ogaudit.review.ledger.Ledger.state` (``sample_id, action, final_label, annotator,
        decided_at``), or None when nothing was reviewed. Decisions on ids not in ``scores`` are left out.
    class_names : the run's classes.
    integer : keyword-only: whether the labels leave as integers (``Run.integer_labels``,
        ``Dataset.integer_labels``); else as the class names (text).
    p_wrong : (N,) the packaged curve's P(given label is wrong) for a run without the data-level estimate (the
        card's fallback), overriding the ``p_wrong`` columns; NaN when neither.
    wrong : the card's :class:`~ogaudit.review.calibration.WrongEstimate` (already updated with ``decisions``)
        when the caller has it; else it is worked out from ``scores`` and ``decisions`` as the card does.

    ``p_wrong``, ``p_wrong_low``, ``p_wrong_high`` and ``p_wrong_calibrated`` are the card's
    (:func:`~ogaudit.review.calibration.card_wrong_columns`): a sample whose card reads "not yet calibrated:
    between 3% and >99%" has ``p_wrong_calibrated`` False and that interval.
    """
    missing = [
        c
        for c in ("sample_id", "given_label", "predicted_label", "suggested_label", "score", "rank", "flagged")
        if c not in scores
    ]
    if missing:
        raise DataError(
            f"The scores lack column(s) {missing}; give an audit's result, a project or ogaudit.score's table."
        )
    table = pd.DataFrame({"sample_id": scores["sample_id"].astype(str).to_numpy()})
    for column in ("given_label", "predicted_label", "suggested_label"):
        table[column] = scores[column].astype(str).to_numpy()
    table["score"] = scores["score"].to_numpy(dtype=np.float64)
    table["rank"] = scores["rank"].to_numpy(dtype=np.int64)
    table["flagged"] = scores["flagged"].to_numpy(dtype=bool)
    state = None if decisions is None else decisions[["sample_id", "action"]]
    for column, values in card_wrong_columns(scores, state, p_wrong=p_wrong, wrong=wrong).items():
        table[column] = values
    table["decision"] = None
    table["reviewed_label"] = table["given_label"]
    table["annotator"] = None
    table["decided_at"] = None
    if decisions is not None and len(decisions):
        state = decisions.drop_duplicates("sample_id", keep="last").set_index("sample_id")
        rows = table["sample_id"].map(pd.Series(np.arange(len(state)), index=state.index))
        decided = rows.notna().to_numpy()
        taken = state.iloc[rows[decided].astype(np.int64).to_numpy()]
        action = taken["action"].to_numpy(dtype=object)
        final = taken["final_label"].to_numpy(dtype=object)
        reviewed = np.where(np.isin(action, LABELLED_ACTIONS), final, table.loc[decided, "given_label"].to_numpy())
        reviewed = np.where(action == "remove", None, reviewed)
        table.loc[decided, "decision"] = action
        table.loc[decided, "reviewed_label"] = reviewed
        table.loc[decided, "annotator"] = taken["annotator"].to_numpy(dtype=object)
        table.loc[decided, "decided_at"] = taken["decided_at"].astype(object).to_numpy()
    if "true_label" in scores:
        table["true_label"] = scores["true_label"].astype(str).to_numpy()
    if "is_noisy" in scores:
        table["is_noisy"] = scores["is_noisy"].to_numpy(dtype=bool)
    return typed_labels(table, integer=integer)


def typed_labels(table: pd.DataFrame, *, integer: bool) -> pd.DataFrame:
    """``table`` with its label columns as nullable integers (``Int64``) when ``integer`` (the labels were
    integers), else as strings with None for a missing label (a removed sample's reviewed label)."""
    table = table.copy()
    as_int = integer
    for column in LABEL_COLUMNS:
        if column not in table:
            continue
        values = table[column].astype(object).where(table[column].notna(), None)
        if as_int:
            table[column] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        else:
            table[column] = values.astype(object)
    return table


def cleanlab_frame(table: pd.DataFrame) -> pd.DataFrame:
    """cleanlab's label-issues frame from :func:`reviewed_table`: ``is_label_issue`` (flagged), ``label_score``
    (``1 − p_wrong``, the probability that the given label is right: lower = more likely an issue, as cleanlab's
    label quality scores), ``given_label``, ``predicted_label`` (the model's), indexed by row position like
    cleanlab's, with ``sample_id`` and the card's ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``,
    ``p_wrong_calibrated`` after them. A table without ``p_wrong`` (a run that kept no evidence) gets
    ``label_score = (rank − 1) / N`` instead: the same order, not a probability (``frame.attrs`` says so)."""
    frame = pd.DataFrame(index=pd.RangeIndex(len(table)))
    frame["is_label_issue"] = table["flagged"].to_numpy(dtype=bool)
    p_wrong = table["p_wrong"].to_numpy(dtype=np.float64)
    if np.isnan(p_wrong).any():
        n = max(len(table), 1)
        frame["label_score"] = (table["rank"].to_numpy(dtype=np.float64) - 1) / n
        frame.attrs["label_score"] = "rank-based: the run kept no evidence for P(wrong)"
    else:
        frame["label_score"] = 1.0 - p_wrong
    frame["given_label"] = table["given_label"].to_numpy()
    frame["predicted_label"] = table["predicted_label"].to_numpy()
    frame["sample_id"] = table["sample_id"].to_numpy()
    for column in EXPORT_WRONG_COLUMNS:
        if column in table:
            frame[column] = table[column].to_numpy()
    return frame


# ---------------------------------------------------------------- writing


def write_export(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    format: str,
    class_names: list[str],
    dataset: Dataset | None = None,
    url_prefix: str = LABEL_STUDIO_URL_PREFIX,
) -> Path:
    """Write :func:`reviewed_table`'s ``table`` in ``format`` (:data:`EXPORT_FORMATS`) at ``path``; return it.

    ``fiftyone``, ``label-studio`` and ``hf`` write a new or empty folder; ``parquet`` and ``cleanlab`` a file
    (``.parquet`` / ``.csv``; an earlier export of the same kind is replaced, anything else refused).
    ``dataset``: the audited data, in the table's order: the images (FiftyOne, Label Studio, an ``image``
    column in HF and Parquet) or texts (Label Studio, a ``text`` column) the export carries. ``url_prefix``:
    Label Studio only, what goes before each image's path relative to the export folder (default: Label Studio's
    local-files URL; an ``https://.../`` prefix when the folder is served elsewhere).

    Raises :class:`DataError` for an unknown format, a dataset that does not match the table, or a format that
    needs images (or texts) the data does not have; :class:`~ogaudit.errors.StorageError` for a path that is
    taken or cannot be written.
    """
    if format not in WRITERS:
        raise DataError(f"Unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}.")
    if dataset is not None and (
        len(dataset) != len(table) or not np.array_equal(dataset.sample_ids.astype(str), table["sample_id"].to_numpy())
    ):
        raise DataError(
            f"The data ({len(dataset):,} samples) is not the audited data of these scores ({len(table):,} samples, "
            "other ids or order): give the data that was audited."
        )
    writer, kind = WRITERS[format]
    target = Path(path).expanduser()
    if kind == "file":
        suffix = ".csv" if format == "cleanlab" else ".parquet"
        if target.suffix.lower() != suffix:
            raise DataError(
                f"A {format} export is a {suffix} file; give a path ending in {suffix} (got {str(target)!r})."
            )
        return writer(table, target, class_names=class_names, dataset=dataset)
    return _into_new_folder(
        target, lambda staging: writer(table, staging, class_names=class_names, dataset=dataset, url_prefix=url_prefix)
    )


def _into_new_folder(target: Path, build: Callable[[Path], None]) -> Path:
    """Build the export in a hidden sibling of ``target``, then rename it into place (a new or empty folder)."""
    target = target.absolute()
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise DataError(f"{str(target)!r} exists and is not an empty folder. Choose a new or empty output folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"
    staging.mkdir()
    try:
        build(staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _need_media(dataset: Dataset | None, format: str, *, text_ok: bool) -> Dataset:
    """The dataset, if it holds what ``format`` carries (images, or texts when ``text_ok``); else why not."""
    other = "hf, parquet or cleanlab"
    if dataset is None:
        raise DataError(
            f"A {format} export carries the samples themselves, and these scores come without their data "
            f"(ogaudit.score's table): give data=... (the audited data), or export {other}."
        )
    if dataset.is_image or (text_ok and dataset.is_text):
        return dataset
    held = "texts" if dataset.is_text else "feature vectors"
    wanted = "images or texts" if text_ok else "images"
    raise DataError(f"A {format} export holds {wanted}; this data is {held} ({dataset.describe()}). Export {other}.")


MEDIA_THREADS = 1
"""Threads that write an export's images; 1 writes them in order in the calling thread. The files are the same
bytes either way. One by default: on this project's 2-core machine, quiet, 2 threads wrote FiftyOne's 5,000 PNGs
in 1.25× the time of one and Label Studio's in 1.02× (``benchmarks/bench_exports.py``): Pillow's Python per file
holds the GIL, and only the encoding (about a fifth) runs beside it. More may pay where file writes wait on
storage (a network file system)."""


def _media_files(dataset: Dataset, folder: Path, *, name: str) -> list[str]:
    """Each sample's image under ``folder`` as ``<row>.<ext>`` (row = position, zero-padded: never a name from
    the data): a copy of the user's file (:func:`~ogaudit.review.split.copy_file`), or a PNG of the array, written by
    :data:`MEDIA_THREADS` threads, each a contiguous block of rows. Returns the paths relative to ``folder``'s
    parent (``name/000012.png``), in row order."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from ogaudit.review.split import copy_file

    folder.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(dataset))))
    files = dataset.paths is not None and dataset.root is not None

    def write(rows: range) -> list[str]:
        written = []
        for row in rows:
            stem = f"{row:0{width}d}"
            if files:
                source = Path(dataset.root, str(dataset.paths[row]))
                file = f"{stem}{source.suffix.lower()}"
                copy_file(source, folder / file)
            else:
                pixels = dataset.image(row)
                file = f"{stem}.png"
                Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(folder / file)
            written.append(f"{name}/{file}")
        return written

    n, threads = len(dataset), max(1, min(MEDIA_THREADS, len(dataset) // 64))
    if threads == 1:
        return write(range(n))
    step = -(-n // (threads * 8))  # blocks of rows: a slow block does not hold the others up
    with ThreadPoolExecutor(threads, thread_name_prefix="ogaudit-export") as pool:
        blocks = pool.map(write, [range(start, min(start + step, n)) for start in range(0, n, step)])
        return [path for block in blocks for path in block]


def _plain(value):
    """A cell as JSON takes it: numpy scalars as Python ones, NA as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _records(table: pd.DataFrame, columns) -> list[dict]:
    columns = [c for c in columns if c in table]
    return [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in table[columns].itertuples(index=False)]


def _write_fiftyone(table, folder: Path, *, class_names, dataset, url_prefix) -> None:
    """FiftyOne's ``FiftyOneImageClassificationDataset``: ``data/`` with the images and ``labels.json``
    ``{"classes": [...], "labels": {"<row>": {"label": class index, "confidence": 1 − p_wrong, "attributes":
    {sample_id, score, rank, flagged, p_wrong, p_wrong_low, p_wrong_high, p_wrong_calibrated, suggested_label, predicted_label, decision, reviewed_label}}}}``.
    ``fo.Dataset.from_dir(folder, fo.types.FiftyOneImageClassificationDataset)`` makes one sample per image
    whose ``ground_truth`` is the given label, with those attributes (``sample.ground_truth.p_wrong``)."""
    dataset = _need_media(dataset, "fiftyone", text_ok=False)
    files = _media_files(dataset, folder / "data", name="data")
    index = {str(name): i for i, name in enumerate(class_names)}
    attributes = (
        "sample_id",
        "score",
        "rank",
        "flagged",
        *EXPORT_WRONG_COLUMNS,
        "suggested_label",
        "predicted_label",
        "decision",
        "reviewed_label",
        "annotator",
    )
    labels = {}
    for file, row in zip(files, _records(table, ("given_label", *attributes)), strict=True):
        p_wrong = row["p_wrong"]
        labels[Path(file).stem] = {
            "label": index[str(row.pop("given_label"))],
            "confidence": None if p_wrong is None else round(1.0 - p_wrong, 6),
            "attributes": row,
        }
    payload = {"classes": [str(name) for name in class_names], "labels": labels}
    (folder / "labels.json").write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")


def label_studio_config(class_names: list[str], *, text: bool) -> str:
    """Label Studio's labeling config (its image- or text-classification template) with one choice per class."""
    from xml.sax.saxutils import quoteattr

    choices = "\n".join(f"    <Choice value={quoteattr(str(name))}/>" for name in class_names)
    if text:
        head = '  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text" choice="single" showInLine="true">'
    else:
        head = '  <Image name="image" value="$image"/>\n  <Choices name="label" toName="image" choice="single" showInLine="true">'
    return f"<View>\n{head}\n{choices}\n  </Choices>\n</View>\n"


def _write_label_studio(table, folder: Path, *, class_names, dataset, url_prefix) -> None:
    """Label Studio tasks: ``tasks.json`` (one task per sample, most suspicious first; ``data`` has the image URL
    or the text and the audit's columns; one prediction, model_version ``ogaudit``, choosing the suggested
    label with ``score`` = P(wrong)), ``label_config.xml`` (the image- or text-classification template with the
    classes) and, for images, ``images/``."""
    dataset = _need_media(dataset, "label-studio", text_ok=True)
    text = dataset.is_text
    if text:
        media = [str(t) for t in dataset.texts]
    else:
        media = [url_prefix + rel for rel in _media_files(dataset, folder / "images", name="images")]
    columns = (
        "sample_id",
        "given_label",
        "suggested_label",
        "predicted_label",
        "score",
        "rank",
        "flagged",
        *EXPORT_WRONG_COLUMNS,
        "decision",
        "reviewed_label",
    )
    rows = _records(table, columns)
    tasks = []
    for position in np.argsort(table["rank"].to_numpy(), kind="stable"):
        row = rows[position]
        data = {("text" if text else "image"): media[position], **row}
        prediction = {
            "model_version": "ogaudit",
            "result": [
                {
                    "from_name": "label",
                    "to_name": "text" if text else "image",
                    "type": "choices",
                    "value": {"choices": [str(row["suggested_label"])]},
                }
            ],
        }
        if row["p_wrong"] is not None:
            prediction["score"] = row["p_wrong"]
        tasks.append({"data": data, "predictions": [prediction]})
    (folder / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (folder / "label_config.xml").write_text(label_studio_config(class_names, text=text), encoding="utf-8")


EXPORT_CHUNK = 1024
"""Rows per Arrow batch of the Parquet and HF exports: the samples' bytes are read a chunk at a time, so memory
holds one chunk of images, not the data set."""


def _schema(table: pd.DataFrame, dataset: Dataset | None, class_names: list[str], *, indices: bool):
    """The Arrow schema of the export's table (every chunk has it, also a chunk whose decisions are all None):
    label columns as int64 (integer labels, or class indices with ``indices``) or strings; ``text`` or ``image``
    (``struct<bytes, path>``, as Hugging Face stores images) when ``dataset`` has them."""
    import pyarrow as pa

    label = pa.int64() if indices or _integer_table(table) else pa.string()
    fields = []
    for column in table.columns:
        if column in LABEL_COLUMNS:
            kind = label
        elif column in ("score", "p_wrong", "p_wrong_low", "p_wrong_high"):
            kind = pa.float64()
        elif column == "rank":
            kind = pa.int64()
        elif column in ("flagged", "is_noisy", "p_wrong_calibrated"):
            kind = pa.bool_()
        else:
            kind = pa.string()
        fields.append(pa.field(column, kind))
    if dataset is not None and dataset.is_text:
        fields.append(pa.field("text", pa.string()))
    elif dataset is not None and dataset.is_image:
        fields.append(pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    return pa.schema(fields)


def _arrow_chunks(table: pd.DataFrame, dataset: Dataset | None, schema, class_names: list[str], *, indices: bool):
    """The table as Arrow batches of :data:`EXPORT_CHUNK` rows with ``schema``, the samples added: an image file's
    bytes as they are (never decoded), or a PNG of the array; labels as class indices with ``indices``."""
    import pyarrow as pa
    from PIL import Image

    index = {str(name): i for i, name in enumerate(class_names)}
    for start in range(0, max(len(table), 1), EXPORT_CHUNK):
        chunk = table.iloc[start : start + EXPORT_CHUNK].copy()
        if indices:
            for column in LABEL_COLUMNS:
                if column in chunk:
                    chunk[column] = pd.array([None if pd.isna(v) else index[str(v)] for v in chunk[column]], "Int64")
        rows = range(start, start + len(chunk))
        if "text" in schema.names:
            chunk["text"] = [str(dataset.texts[row]) for row in rows]
        elif "image" in schema.names:
            images = []
            for row in rows:
                if dataset.paths is not None and dataset.root is not None:
                    source = Path(dataset.root, str(dataset.paths[row]))
                    images.append({"bytes": source.read_bytes(), "path": source.name})
                else:
                    pixels = dataset.image(row)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
                    images.append({"bytes": buffer.getvalue(), "path": None})
            chunk["image"] = images
        yield pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)


def hf_features(schema, class_names: list[str], *, class_label: bool | None = None) -> dict:
    """The ``datasets`` features of the export's ``schema``, as a dict ``datasets.Features.from_dict`` reads: label
    columns as ``ClassLabel`` with the class names (``class_label``; default: when the labels are names, or the
    integers ``0 … C−1`` in order, where index and value agree), else as they are; ``image`` an ``Image``."""
    import pyarrow as pa

    names = [str(name) for name in class_names]
    if class_label is None:
        class_label = _class_labels(names, integer=whole_number_names(names))
    kinds = {pa.bool_(): "bool", pa.int64(): "int64", pa.float64(): "float64", pa.string(): "string"}
    features = {}
    for field in schema:
        if field.name in LABEL_COLUMNS and class_label:
            features[field.name] = {"_type": "ClassLabel", "names": names}
        elif field.name == "image":
            features[field.name] = {"_type": "Image"}
        else:
            features[field.name] = {"_type": "Value", "dtype": kinds.get(field.type, "string")}
    return features


def _class_labels(names: list[str], *, integer: bool) -> bool:
    """Whether the HF export stores labels as ``ClassLabel``: names, or integers that are their own indices."""
    return not integer or names == [str(i) for i in range(len(names))]


def _write_chunks(table, path: Path, *, class_names, dataset, indices: bool) -> dict:
    """The export's table and samples as one Parquet file at ``path``, a chunk at a time, with the ``datasets``
    features in its schema metadata (``huggingface``); returns the features."""
    import pyarrow.parquet as pq

    schema = _schema(table, dataset, class_names, indices=indices)
    features = hf_features(schema, class_names, class_label=indices)
    hf = {b"huggingface": json.dumps({"info": {"features": features}}).encode(), EXPORT_MARK: b"export"}
    writer = None
    try:
        for chunk in _arrow_chunks(table, dataset, schema, class_names, indices=indices):
            if writer is None:  # pandas' metadata of the first chunk (nullable Int64 labels) and the features
                writer = pq.ParquetWriter(path, chunk.schema.with_metadata({**(chunk.schema.metadata or {}), **hf}))
            writer.write_table(chunk.replace_schema_metadata(writer.schema.metadata))
    finally:
        if writer is not None:
            writer.close()
    return features


def _write_hf(table, folder: Path, *, class_names, dataset, url_prefix) -> None:
    """A ``datasets.Dataset`` saved with ``save_to_disk`` (``datasets.load_from_disk(folder)`` reads it): the
    table's columns, label columns as ``ClassLabel`` (see :func:`hf_features`), and ``image`` or ``text``.

    Built from a Parquet file written a chunk at a time (``Dataset.from_parquet`` memory-maps what it reads), in a
    scratch folder beside ``folder`` that is removed afterwards: memory holds one chunk, the disk briefly two
    copies."""
    datasets = require("datasets", feature="The hf export (or export parquet, which datasets reads)", extra="hf")
    scratch = folder.parent / f"{folder.name}.scratch"
    scratch.mkdir()
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # its "Saving the dataset" bar is not ours to show
    try:
        features = _write_chunks(
            table,
            scratch / "table.parquet",
            class_names=class_names,
            dataset=dataset,
            indices=_class_labels(class_names, integer=_integer_table(table)),
        )
        hf = datasets.Dataset.from_parquet(
            str(scratch / "table.parquet"),
            features=datasets.Features.from_dict(features),
            cache_dir=str(scratch / "cache"),
        )
        hf.save_to_disk(str(folder))
        del hf
    finally:
        if shown:
            datasets.enable_progress_bars()
        shutil.rmtree(scratch, ignore_errors=True)


EXPORT_MARK = b"ogaudit"
"""The key in an exported Parquet file's schema metadata that marks it as ogaudit's (replaceable by a later
export); any other Parquet file at the path is the user's and is refused."""


def _marked_parquet(path: Path) -> bool:
    """Whether ``path`` is a Parquet file whose schema metadata carries :data:`EXPORT_MARK`."""
    import pyarrow.parquet as pq

    try:
        return EXPORT_MARK in (pq.read_schema(path).metadata or {})
    except Exception:  # noqa: BLE001 - unreadable or not Parquet: not ours
        return False


def _write_parquet(table, path: Path, *, class_names, dataset) -> Path:
    """The table (labels typed as in :func:`typed_labels`), with ``image`` / ``text`` when the data has them,
    as one Parquet file written a chunk at a time; its schema metadata carries the ``datasets`` features
    (``huggingface`` key), so ``datasets.load_dataset("parquet", data_files=path)`` reads images as images."""
    path = check_replaceable(path, ours=lambda head: head == b"" or _marked_parquet(path), what="a Parquet export")
    with atomic_path(path) as tmp:
        _write_chunks(table, tmp, class_names=class_names, dataset=dataset, indices=False)
    return path


def _write_cleanlab(table, path: Path, *, class_names, dataset) -> Path:
    """:func:`cleanlab_frame` as CSV, row positions implied by the order (``pd.read_csv(path)`` reads it back
    with integer labels as integers; text cells a spreadsheet would run as a formula are escaped,
    :func:`~ogaudit.storage.read_csv` takes the escapes off)."""
    earlier = (*CLEANLAB_COLUMNS, "sample_id")  # cleanlab_frame's header marks its export (before P(wrong)'s columns)
    headers = {",".join(earlier).encode(), ",".join((*earlier, *EXPORT_WRONG_COLUMNS)).encode()}
    path = check_replaceable(
        path,
        ours=lambda head: head == b"" or head.split(b"\n", 1)[0].removesuffix(b"\r") in headers,
        what="a cleanlab label-issues CSV written by ogaudit",
    )
    return write_csv(cleanlab_frame(table), path)


WRITERS: dict[str, tuple[Callable, str]] = {
    "fiftyone": (_write_fiftyone, "folder"),
    "label-studio": (_write_label_studio, "folder"),
    "hf": (_write_hf, "folder"),
    "parquet": (_write_parquet, "file"),
    "cleanlab": (_write_cleanlab, "file"),
}
