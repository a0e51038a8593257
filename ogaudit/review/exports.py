"""What leaves the review: decisions as CSV (and back in), and a cleaned copy of the data.

Decisions CSV
    UTF-8 without a byte-order mark (import accepts one), comma-separated, RFC 4180 quoting, so names in any
    script and notes with commas, quotes or line breaks survive a round trip. A text cell that a spreadsheet
    would run as a formula (one starting with ``= + - @``, a tab or a carriage return) is written with a
    leading ``'``; import takes it off again. Cells that already start with ``'`` before such a character get
    one more, so every text survives exactly. Numbers (score, rank) are written plainly.

Cleaned split
    The data with removed samples dropped and relabels applied, in the input's own form: an ``.npz`` for
    arrays (the user's own arrays: same keys, dtypes, layouts and values, only rows dropped and labels changed)
    and built-ins, a ``path,label`` CSV manifest pointing at the original images for a manifest, and a
    class-folder tree of hard links (copies where links are impossible) for an ImageFolder, plus
    ``split.json`` saying where it came from and what changed. Manifests are data, not reports: their cells
    are not formula-escaped, so that any loader reads them as written.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.arrays import source_arrays_for
from ogaudit.data.csvtext import read_csv_table
from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError, LedgerError
from ogaudit.review.ledger import ACTIONS, LABELLED_ACTIONS, STATE_COLUMNS, Decision, Ledger
from ogaudit.storage import FORMULA_STARTS as FORMULA_STARTS  # formula escaping lives in storage; re-exported
from ogaudit.storage import atomic_path, escape_cell, unescape_cell, write_json

DECISION_COLUMNS = [c for c in STATE_COLUMNS if c != "batch_id"]
SPLIT_MANIFEST = "split.json"
MAX_CELL_CHARS = 10_000
"""An imported row with a longer cell is rejected (notes are for sentences, not documents)."""


# ---------------------------------------------------------------- decisions out


def decisions_frame(ledger: Ledger, *, ids: Iterable[str] | None = None, history: bool = False) -> pd.DataFrame:
    """The table a decisions export writes.

    Without ``history``: one row per decided sample with ``DECISION_COLUMNS``. With it: every event of
    :meth:`Ledger.history`. ``ids`` keeps exactly those samples' rows (undecided ones have none; undo and redo
    events are left out of a selection); an id not in the dataset is refused.
    """
    frame = ledger.history() if history else ledger.state()[DECISION_COLUMNS]
    if ids is not None:
        ids = [str(i) for i in ids]
        ledger.check_ids(ids)
        frame = frame[frame["sample_id"].isin(set(ids))].reset_index(drop=True)
    return frame


def decisions_csv_bytes(ledger: Ledger, *, ids: Iterable[str] | None = None, history: bool = False) -> bytes:
    """The decisions export as UTF-8 CSV bytes, e.g. for a browser download."""
    frame = decisions_frame(ledger, ids=ids, history=history)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(frame.columns)
    writer.writerows([_cell(value) for value in row] for row in frame.itertuples(index=False, name=None))
    return buffer.getvalue().encode("utf-8")


def write_decisions_csv(
    ledger: Ledger, path: str | Path, *, ids: Iterable[str] | None = None, history: bool = False
) -> Path:
    """Write the decisions export to ``path`` atomically; return the path."""
    data = decisions_csv_bytes(ledger, ids=ids, history=history)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return escape_cell(value)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


# ---------------------------------------------------------------- decisions in


@dataclass(frozen=True)
class RejectedRow:
    """A row of an imported CSV that was not stored; ``row`` counts as a spreadsheet does (header = 1)."""

    row: int
    reason: str


@dataclass
class ImportReport:
    """What an import stored (as one batch, undoable in one step) and which rows it refused, and why."""

    stored: int
    batch_id: str | None
    rejected: list[RejectedRow] = field(default_factory=list)
    already: int = 0

    def describe(self) -> str:
        lines = [f"Stored {self.stored} decision(s)" + (f" as batch {self.batch_id}." if self.batch_id else ".")]
        if self.already:
            lines.append(f"Left out {self.already} row(s) that the ledger already holds as its current decision.")
        if self.rejected:
            lines.append(f"Rejected {len(self.rejected)} row(s):")
            lines += [f"  row {r.row}: {r.reason}" for r in self.rejected]
        return "\n".join(lines)


def import_decisions(ledger: Ledger, source: str | Path | bytes, *, annotator: str) -> ImportReport:
    """Check a decisions CSV made elsewhere row by row and store the valid rows as one batch of ``annotator``.

    Reads this module's decisions export (and the ``label`` column of a history export); needs the columns
    ``sample_id`` and ``action``. A row keeps its own ``annotator`` and ``decided_at`` when it has them
    (times without a zone are taken as UTC). A row is rejected, with its reason, for an unknown sample, an
    unknown action, a label that does not fit the action, a ``given_label`` other than this dataset's (the file
    was made on other data), an unreadable time, score or rank, or for being an undo/redo or undone event.
    A row equal to the sample's current decision (action, label, annotator and time) is left out and counted in
    ``already``, so importing a ledger's own export, or one file twice, records nothing new.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    table = read_csv_table(data, required=("sample_id", "action"), what="The decisions file", error=LedgerError)
    if table.missing:
        raise LedgerError(
            f"The decisions file lacks column(s) {table.missing}; it has {table.header} ({table.delimiter_note()}). "
            "Export decisions with `ogaudit export decisions` or give a CSV with at least sample_id and action."
        )
    header = table.header
    decisions: list[Decision] = []
    rejected: list[RejectedRow] = []
    for number, cells in zip(table.numbers, table.rows, strict=True):
        if len(cells) > len(header):
            rejected.append(RejectedRow(number, f"has {len(cells)} cells but the header has {len(header)}"))
            continue
        long = [(name, len(cell)) for name, cell in zip(header, cells, strict=False) if len(cell) > MAX_CELL_CHARS]
        if long:
            name, size = long[0]
            rejected.append(
                RejectedRow(
                    number,
                    f"has a {name or 'nameless'} cell of {size:,} characters; the limit is "
                    f"{MAX_CELL_CHARS:,}: shorten it",
                )
            )
            continue
        row = dict(zip(header, [unescape_cell(cell) for cell in cells], strict=False))
        try:
            decisions.append(_row_decision(ledger, row))
        except LedgerError as error:
            rejected.append(RejectedRow(number, str(error)))
    fresh = _not_yet_recorded(ledger, decisions)
    batch_id = ledger.record(fresh, annotator=annotator) if fresh else None
    return ImportReport(stored=len(fresh), batch_id=batch_id, rejected=rejected, already=len(decisions) - len(fresh))


def _not_yet_recorded(ledger: Ledger, decisions: list[Decision]) -> list[Decision]:
    """``decisions`` without those equal to their sample's current decision in ``ledger``.

    Equal: same action and label, and the same annotator and ``decided_at`` where the row gives them.
    """
    if not decisions:
        return []
    current = ledger.state().set_index("sample_id")
    fresh = []
    for decision in decisions:
        if decision.sample_id in current.index:
            now = current.loc[decision.sample_id]
            same = (
                now["action"] == decision.action
                and (decision.action not in LABELLED_ACTIONS or now["final_label"] == decision.label)
                and decision.annotator in (None, now["annotator"])
                and decision.decided_at in (None, now["decided_at"])
            )
            if same:
                continue
        fresh.append(decision)
    return fresh


def _row_decision(ledger: Ledger, row: Mapping[str, str]) -> Decision:
    """One CSV row as a :class:`Decision`, or :class:`LedgerError` saying why it cannot be stored."""
    if row.get("event", "") not in ("", "decide"):
        raise LedgerError(f"is a {row['event']!r} event, not a decision")
    if row.get("undone", "").lower() == "true":
        raise LedgerError("was undone in the ledger it came from")
    sample_id = row.get("sample_id", "")
    if not sample_id:
        raise LedgerError("has no sample_id")
    if sample_id not in ledger.given_labels:
        raise LedgerError(f"unknown sample id {sample_id!r}: it is not in this dataset")
    given = row.get("given_label", "")
    if given and given != ledger.given_labels[sample_id]:
        raise LedgerError(
            f"given_label {given!r} but this dataset labels {sample_id!r} as "
            f"{ledger.given_labels[sample_id]!r}: the file was made on other data"
        )
    action = row.get("action", "").strip().lower()
    label = (row.get("final_label") or row.get("label")) if action in LABELLED_ACTIONS else None
    if action not in ACTIONS:
        raise LedgerError(f"unknown action {row.get('action', '')!r}; use one of {', '.join(ACTIONS)}")
    ledger.check_decision(action, label)
    return Decision(
        sample_id,
        action,
        label,
        annotator=row.get("annotator", "").strip() or None,
        decided_at=_parse_time(row.get("decided_at", "")),
        note=row.get("note") or None,
        score=_parse_number(row, "score", float),
        rank=_parse_number(row, "rank", int),
        run=row.get("run") or None,
    )


def _parse_time(text: str) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError):  # OverflowError: a time at the calendar's ends moved into UTC
        raise LedgerError(
            f"decided_at {text[:60]!r} is not an ISO time between years 1 and 9999 like 2024-05-01T12:30:00+00:00"
        ) from None


def _parse_number(row: Mapping[str, str], column: str, kind: type) -> float | int | None:
    text = row.get(column, "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise LedgerError(f"{column} {text[:60]!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is int and not -(2**63) <= value < 2**63:
        raise LedgerError(f"{column} {text[:60]!r} is too large: it must fit in 64 bits (below 9.2e18)")
    return value


# ---------------------------------------------------------------- cleaned split


def apply_decisions(
    dataset: Dataset,
    state: pd.DataFrame,
    *,
    flagged_ids: Iterable[str] | None = None,
    drop_undecided_flagged: bool = False,
) -> tuple[Dataset, dict[str, int]]:
    """The dataset with removals dropped and relabels applied, and counts of what changed.

    ``state`` is :meth:`Ledger.state`. Samples flagged but undecided (no decision, or ``unsure``) are kept,
    unless ``drop_undecided_flagged`` (which needs ``flagged_ids``). Decisions on ids not in ``dataset`` are
    ignored and counted as ``decisions_not_in_data``.
    """
    if drop_undecided_flagged and flagged_ids is None:
        raise ValueError("drop_undecided_flagged=True needs flagged_ids: the ids the scan flagged.")
    position = {sample_id: i for i, sample_id in enumerate(dataset.sample_ids.tolist())}
    class_index = {name: i for i, name in enumerate(dataset.class_names)}
    in_data = state[state["sample_id"].isin(position)]
    keep = np.ones(len(dataset), dtype=bool)
    y = dataset.y.copy()
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
        "relabelled": int(((y != dataset.y) & keep).sum()),
        "dropped_undecided_flagged": dropped,
        "decisions_not_in_data": len(state) - len(in_data),
    }
    return replace(dataset, y=y).subset(keep), counts


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
    final class. Images are hard links (copies across file systems), never symlinks, which ``load_dataset``
    refuses when they lead outside the folder, so every export loads back with ``load_dataset``. See
    :func:`apply_decisions` for the options.
    """
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{str(out)!r} exists and is not an empty folder. Choose a new or empty output folder.")
    if dataset.kind == "imagefolder" and out.resolve().is_relative_to(Path(dataset.root).resolve()):
        raise DataError(
            f"{str(out)!r} is inside the image folder {dataset.root!r}, where it would be read as a class. "
            "Choose an output folder outside the data."
        )
    cleaned, counts = apply_decisions(
        dataset, ledger.state(), flagged_ids=flagged_ids, drop_undecided_flagged=drop_undecided_flagged
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex}.part"
    staging.mkdir()
    try:
        if dataset.is_text:  # the input's own format: CSV/TSV/JSONL/Parquet, rows as they were
            from ogaudit.data.text import write_text_split

            written = write_text_split(cleaned, staging)
            counts["skipped_at_load_written_as_they_were"] = len(dataset.skipped)
        elif dataset.kind == "imagefolder":
            written = _write_image_folder(cleaned, staging)
        elif dataset.kind == "csv":
            written = _write_manifest(cleaned, staging, name=Path(dataset.source).name)
        elif dataset.kind == "npy":
            written = _write_npy_folder(cleaned, staging / Path(dataset.source).name)
        else:
            name = Path(dataset.source).name if dataset.kind == "npz" else f"{dataset.source}.npz"
            written = _write_npz(cleaned, staging / name)
        manifest = {
            "data": written,
            "format": dataset.text_origin.format
            if dataset.is_text
            else "npz"
            if dataset.kind in ("npz", "builtin")
            else dataset.kind,
            "source": dataset.source,
            "source_fingerprint": dataset.fingerprint(),
            "ledger": str(ledger.path),
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
        _link_or_copy(Path(dataset.root, rel), staging / rel)
        rows.append((rel, dataset.class_names[label]))
    with open(staging / name, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return name


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy across file systems); never a symlink, which loaders refuse."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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
        _link_or_copy(Path(dataset.root, rel), target)
    return "."
