"""Reviewing prompt/response pairs: an edited response as a ledger decision, and the cleaned set in its own format.

An **edited response** is a ``keep`` decision whose note is :data:`EDIT_NOTE` followed by the new response: it is
logged, attributed, undone and redone like every other decision (:mod:`ogaudit.review.ledger`), and the current
decision on a pair says whether its response is the edited one.

The **cleaned set** (:func:`write_instruction_split`) is the input file with removed pairs dropped and edited
responses written in; every other row is written byte for byte as it was read (JSON Lines and CSV; a Parquet file
is written again by Arrow with the same schema). Built-in tasks are written as JSON Lines. The user's file is only
read.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.dataset import Dataset
from ogaudit.data.instructions import InstructionSource, is_instructions
from ogaudit.errors import DataError

EDIT_NOTE = "edited response:\n"
"""A ``keep`` decision whose note starts with this carries the new response after it."""


def edit_note(response: str) -> str:
    """The ledger note of a decision that replaces a pair's response by ``response`` (refused when empty)."""
    if not str(response).strip():
        raise DataError("An edited response cannot be empty; remove the pair instead.")
    return EDIT_NOTE + str(response)


def edited_responses(state: pd.DataFrame) -> dict[str, str]:
    """Sample id → new response, for every pair whose current decision is an edit (:meth:`Ledger.state`)."""
    if state.empty:
        return {}
    notes = state["note"].fillna("").astype(str)
    mask = (state["action"] == "keep") & notes.str.startswith(EDIT_NOTE)
    return {str(i): note[len(EDIT_NOTE) :] for i, note in zip(state["sample_id"][mask], notes[mask], strict=True)}


def cleaned_pairs(
    dataset: Dataset, state: pd.DataFrame, *, flagged_ids=None, drop_undecided_flagged: bool = False
) -> tuple[np.ndarray, dict[int, str], dict[str, int]]:
    """What the decisions in force do to the pairs: ``(keep (N,) bool, {position: new response}, counts)``.

    ``drop_undecided_flagged`` also drops the flagged pairs (``flagged_ids``) nobody decided on or marked unsure,
    counted as ``dropped_undecided_flagged``."""
    position = {sample_id: i for i, sample_id in enumerate(dataset.sample_ids.tolist())}
    keep = np.ones(len(dataset), dtype=bool)
    removed = state.loc[state["action"] == "remove", "sample_id"] if len(state) else []
    for sample_id in removed:
        if sample_id in position:
            keep[position[sample_id]] = False
    edits = {position[i]: text for i, text in edited_responses(state).items() if i in position}
    counts = {"input": len(dataset), "kept": 0, "removed": int((~keep).sum()), "edited": len(edits)}
    if drop_undecided_flagged:
        if flagged_ids is None:
            raise ValueError("drop_undecided_flagged=True needs flagged_ids: the ids the scan flagged.")
        decided = set(state.loc[state["action"] != "unsure", "sample_id"]) if len(state) else set()
        undecided = [position[i] for i in map(str, flagged_ids) if i in position and i not in decided]
        counts["dropped_undecided_flagged"] = int(keep[undecided].sum())
        keep[undecided] = False
    counts["kept"] = int(keep.sum())
    return keep, edits, counts


def write_instruction_split(
    dataset: Dataset, state: pd.DataFrame, out: Path, *, flagged_ids=None, drop_undecided_flagged: bool = False
) -> tuple[str, dict[str, int]]:
    """Write the cleaned pairs into the folder ``out`` under the input's own name and format; return the file
    name and the counts (``input, kept, removed, edited``; see :func:`cleaned_pairs` for the options).

    Rows of the input that the audit did not read (a ``limit`` subset) are written as they were."""
    if not is_instructions(dataset):
        raise DataError(f"{dataset.describe()} is not instruction data.")
    source: InstructionSource = dataset.text_origin  # type: ignore[assignment]
    keep, edits, counts = cleaned_pairs(
        dataset, state, flagged_ids=flagged_ids, drop_undecided_flagged=drop_undecided_flagged
    )
    row_keep = np.ones(source.n_rows, dtype=bool)
    row_keep[dataset.rows[~keep]] = False
    row_edits = {int(dataset.rows[p]): text for p, text in edits.items()}
    if source.format == "builtin":
        name = f"{source.path}.jsonl"
        with open(out / name, "w", encoding="utf-8", newline="") as handle:
            ids = _builtin_ids(dataset, source)
            for row in np.flatnonzero(row_keep):
                line = {
                    "id": ids[row],
                    "prompt": source.prompts[row],
                    "response": row_edits.get(int(row), source.responses[row]),
                    "category": source.categories[row],
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        return name, counts
    name = Path(source.path).name
    if source.format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(source.path)
        field = source.fields["response"]
        if field is None:
            raise DataError(f"{source.path!r} has no response column to write an edit into.")
        values = table.column(field).to_pylist()
        for row, text in row_edits.items():
            values[row] = text
        table = table.set_column(
            table.schema.get_field_index(field), field, pa.array(values, table.schema.field(field).type)
        )
        pq.write_table(table.filter(pa.array(row_keep)), out / name)
        return name, counts
    parts = [source.prefix]
    for row in np.flatnonzero(row_keep):
        record = source.records[row]
        parts.append(_edited(source, record, row_edits[int(row)]) if int(row) in row_edits else record)
    (out / name).write_bytes("".join(parts).encode(source.encoding))
    return name, counts


def _builtin_ids(dataset: Dataset, source: InstructionSource) -> list[str]:
    ids = [f"row-{i}" for i in range(source.n_rows)]
    for sample_id, row in zip(dataset.sample_ids.tolist(), dataset.rows.tolist(), strict=True):
        ids[row] = sample_id
    return ids


def _ending(record: str) -> str:
    return record[len(record.rstrip("\r\n")) :]


def _edited(source: InstructionSource, record: str, response: str) -> str:
    """``record`` (one JSONL line or CSV record) with its response replaced by ``response``."""
    ending = _ending(record)
    fields = source.fields or {}
    if source.format == "jsonl":
        value = json.loads(record)
        if fields.get("messages") and isinstance(value.get(fields["messages"]), list):
            messages = value[fields["messages"]]
            last = max(i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant")
            messages[last]["content"] = response
        else:
            value[fields["response"]] = response
        return json.dumps(value, ensure_ascii=False) + ending
    header = next(csv.reader([source.prefix]))
    cells = next(csv.reader([record]))
    cells[header.index(fields["response"])] = response
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending or "\n").writerow(cells)
    return buffer.getvalue()
