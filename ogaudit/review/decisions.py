"""The decisions CSV: a review's decisions written for people and spreadsheets (formula cells escaped), and
decisions made elsewhere imported back into a ledger."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.data.csvtext import read_csv_table
from ogaudit.errors import LedgerError
from ogaudit.review.calibration import EXPORT_WRONG_COLUMNS, card_wrong_columns
from ogaudit.review.ledger import ACTIONS, LABELLED_ACTIONS, STATE_COLUMNS, Decision, Ledger
from ogaudit.storage import atomic_path, check_replaceable, escape_cell, unescape_cell

DECISION_COLUMNS = [c for c in STATE_COLUMNS if c != "batch_id"]
TEAM_COLUMNS = ["tags", "status", "assigned_to"]
EXPORT_COLUMNS = DECISION_COLUMNS + list(EXPORT_WRONG_COLUMNS) + TEAM_COLUMNS
"""The decisions CSV's columns: a sample's current decision, the review card's P(wrong) (``p_wrong``,
``p_wrong_low``, ``p_wrong_high``, ``p_wrong_calibrated``: False where the card reads "not yet calibrated"; empty
without a run's table), then the team's view of it (:mod:`ogaudit.review.team`): its tags (joined with ``, ``),
status and assignees (joined with ``, ``)."""
_EARLIER_EXPORT_COLUMNS = DECISION_COLUMNS + TEAM_COLUMNS
"""The header of a decisions CSV written before it carried P(wrong) (a later export may replace it)."""


MAX_CELL_CHARS = 10_000
"""An imported row with a longer cell is rejected (notes are for sentences, not documents)."""


def decisions_frame(
    ledger: Ledger,
    *,
    ids: Iterable[str] | None = None,
    history: bool = False,
    run_table: pd.DataFrame | None = None,
    p_wrong: np.ndarray | None = None,
) -> pd.DataFrame:
    """The table a decisions export writes.

    Without ``history``: one row per decided sample with :data:`EXPORT_COLUMNS`, then one per undecided sample
    that is assigned, noted or tagged (no action); ``note`` is the card's note (:meth:`Ledger.annotate`) where it
    has one, else the decision's. With it: every event of :meth:`Ledger.history`. ``ids`` keeps exactly those
    samples' rows (undo and redo events are left out of a selection); an id not in the dataset is refused.

    ``run_table``: the run's score table (``sample_id``, ``p_wrong``, ``p_wrong_low``, ``p_wrong_high``); the
    P(wrong) columns are then the review card's, with the ledger's decisions in force applied as the card applies
    them (:func:`~ogaudit.review.calibration.card_wrong_columns`); ``p_wrong`` ((N,), the table's rows) the
    packaged curve's value for a run without the data-level estimate. Without ``run_table`` they are empty.
    """
    if history:
        frame = ledger.history()
    else:
        state = ledger.state()
        frame = _with_team(ledger, state[DECISION_COLUMNS])
        frame = _with_wrong(frame, state, run_table, p_wrong)
    if ids is not None:
        ids = [str(i) for i in ids]
        ledger.check_ids(ids)
        frame = frame[frame["sample_id"].isin(set(ids))].reset_index(drop=True)
    return frame


DECISION_LABEL_COLUMNS = ("given_label", "final_label", "label")
"""The label columns of a decisions table (``label`` in the history)."""


def typed_decisions(frame: pd.DataFrame, *, integer: bool) -> pd.DataFrame:
    """``frame`` (:func:`decisions_frame`'s) with its label columns as nullable integers (``Int64``) when
    ``integer`` (the run's labels were integers: ``Run.integer_labels``), else unchanged (text, None where a
    decision has no label). The decisions CSV stays text either way."""
    if not integer:
        return frame
    frame = frame.copy()
    for column in DECISION_LABEL_COLUMNS:
        if column in frame:
            frame[column] = pd.array([None if pd.isna(v) else int(v) for v in frame[column]], dtype="Int64")
    return frame


def _with_team(ledger: Ledger, decided: pd.DataFrame) -> pd.DataFrame:
    """``decided`` with the team's columns, and rows for undecided samples that are assigned, noted or tagged."""
    from ogaudit.review.team import sample_status

    team = sample_status(ledger).set_index("sample_id")
    rest = [s for s in team.index if s not in set(decided["sample_id"])]
    undecided = pd.DataFrame({"sample_id": pd.Series(rest, dtype=object)})
    undecided["given_label"] = [ledger.given_labels.get(s) for s in rest]
    frame = pd.concat([decided, undecided.reindex(columns=DECISION_COLUMNS)], ignore_index=True) if rest else decided
    frame = frame.reset_index(drop=True)
    card = frame["sample_id"].map(team["note"]) if len(team) else pd.Series(None, index=frame.index)
    frame["note"] = card.where(card.notna(), frame["note"])
    frame["note"] = frame["note"].astype(object).where(frame["note"].notna(), None)
    joined = {s: ", ".join(v) for s, v in team["tags"].items() if v}
    frame["tags"] = [joined.get(s) for s in frame["sample_id"]]
    frame["status"] = [team["status"].get(s) for s in frame["sample_id"]]
    assignees = {s: ", ".join(v) for s, v in team["assigned_to"].items() if v}
    frame["assigned_to"] = [assignees.get(s) for s in frame["sample_id"]]
    return frame[_EARLIER_EXPORT_COLUMNS]


def _with_wrong(
    frame: pd.DataFrame, state: pd.DataFrame, run_table: pd.DataFrame | None, p_wrong: np.ndarray | None
) -> pd.DataFrame:
    """``frame`` with :data:`~ogaudit.review.calibration.EXPORT_WRONG_COLUMNS` before the team's columns: each
    sample's card values (None where unknown: no run table, or a sample not in it)."""
    frame = frame.copy()
    if run_table is None or len(frame) == 0:
        for column in EXPORT_WRONG_COLUMNS:
            frame[column] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        return frame[EXPORT_COLUMNS]
    columns = card_wrong_columns(run_table, state[["sample_id", "action"]], p_wrong=p_wrong)
    rows = pd.Series(np.arange(len(run_table)), index=run_table["sample_id"].astype(str).to_numpy())
    position = frame["sample_id"].astype(str).map(rows)
    known = position.notna().to_numpy()
    at = position[known].astype(np.int64).to_numpy()
    for column in EXPORT_WRONG_COLUMNS:
        values = np.full(len(frame), None, dtype=object)
        if column == "p_wrong_calibrated":
            values[known] = [bool(v) for v in columns[column][at]]
        else:
            values[known] = [None if np.isnan(v) else float(v) for v in columns[column][at]]
        frame[column] = values
    return frame[EXPORT_COLUMNS]


def decisions_csv_bytes(
    ledger: Ledger,
    *,
    ids: Iterable[str] | None = None,
    history: bool = False,
    run_table: pd.DataFrame | None = None,
    p_wrong: np.ndarray | None = None,
) -> bytes:
    """The decisions export as UTF-8 CSV bytes, e.g. for a browser download (``run_table``, ``p_wrong``: as for
    :func:`decisions_frame`)."""
    frame = decisions_frame(ledger, ids=ids, history=history, run_table=run_table, p_wrong=p_wrong)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(frame.columns)
    writer.writerows([_cell(value) for value in row] for row in frame.itertuples(index=False, name=None))
    return buffer.getvalue().encode("utf-8")


def write_decisions_csv(
    ledger: Ledger,
    path: str | Path,
    *,
    ids: Iterable[str] | None = None,
    history: bool = False,
    run_table: pd.DataFrame | None = None,
    p_wrong: np.ndarray | None = None,
) -> Path:
    """Write the decisions export to ``path`` atomically; return the path (``~`` expanded).

    ``path`` may be an earlier decisions export, which is replaced; any other existing file is refused
    (:func:`~ogaudit.storage.check_replaceable`), so a slip of the path never overwrites data.
    """
    path = check_replaceable(path, ours=_is_decisions_csv, what="a decisions CSV")
    data = decisions_csv_bytes(ledger, ids=ids, history=history, run_table=run_table, p_wrong=p_wrong)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


HISTORY_COLUMNS = [
    *("seq", "event", "batch_id", "by", "at", "sample_id", "action", "label", "annotator", "decided_at", "note"),
    *("score", "rank", "run", "target", "undone", "settles"),
]
"""The columns of the history export (:meth:`Ledger.history`), which a later history export may replace."""


def _is_decisions_csv(head: bytes) -> bool:
    """Whether a file's first bytes are those of a decisions export (current decisions or history): its whole
    header line, not a first column (a user's CSV may start with ``sample_id``), or an empty file."""
    line = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].removesuffix(b"\r")
    return head == b"" or line in (
        ",".join(EXPORT_COLUMNS).encode(),
        ",".join(_EARLIER_EXPORT_COLUMNS).encode(),
        ",".join(HISTORY_COLUMNS).encode(),
    )


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
    undecided: int = 0

    def describe(self) -> str:
        lines = [f"Stored {self.stored} decision(s)" + (f" as batch {self.batch_id}." if self.batch_id else ".")]
        if self.already:
            lines.append(f"Left out {self.already} row(s) that the ledger already holds as its current decision.")
        if self.undecided:
            lines.append(f"Left out {self.undecided} row(s) without an action (assigned or noted, not decided).")
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
    undecided = 0
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
        if "status" in header and not row.get("action", "").strip() and row.get("sample_id"):
            undecided += 1  # an export's row for a sample assigned or noted but not decided
            continue
        try:
            decisions.append(_row_decision(ledger, row))
        except LedgerError as error:
            rejected.append(RejectedRow(number, str(error)))
    fresh = _not_yet_recorded(ledger, decisions)
    batch_id = ledger.record(fresh, annotator=annotator) if fresh else None
    return ImportReport(
        stored=len(fresh),
        batch_id=batch_id,
        rejected=rejected,
        already=len(decisions) - len(fresh),
        undecided=undecided,
    )


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
