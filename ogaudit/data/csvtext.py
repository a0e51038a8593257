"""CSV files as people save them: one reader for every CSV ogaudit reads (manifests, decisions imports).

Spreadsheets write CSVs in many shapes. This module decodes the text (UTF-8 with or without a byte-order mark,
UTF-16 as Excel's "Unicode text" writes it) and finds the delimiter (``,`` ``;`` tab or ``|``; Excel's
``sep=;`` first line is honoured) from the header, which must hold the columns the caller needs. Text in another
encoding (Windows-1252 / Latin-1 from Excel's plain "CSV") is refused with the byte, the likely encoding and the
fix, never guessed: a wrong guess would silently change names. Every cell is a ``str``: nothing is turned into a
missing value, so ``NA``, ``None``, ``null`` and ``nan`` stay the text they are.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


@dataclass(frozen=True)
class CsvTable:
    """A decoded CSV: ``header`` (names stripped and lower-cased), ``rows`` (lists of cells, ``str``) and where
    each row starts in the file (``numbers``, counted as a spreadsheet does: the header is row 1)."""

    header: list[str]
    rows: list[list[str]]
    numbers: list[int]
    delimiter: str
    encoding: str
    missing: list[str]
    sniffed: str | None

    def column(self, name: str) -> int:
        return self.header.index(name)

    def delimiter_note(self) -> str:
        """Which delimiter the text seems to use, for a message about missing columns."""
        if self.sniffed is None:
            return "no delimiter among , ; tab | splits its first row into the needed columns"
        return f"its delimiter looks like a {DELIMITER_NAMES.get(self.sniffed, repr(self.sniffed))} ({self.sniffed!r})"


def decode_text(raw: bytes, *, what: str, error: type[Exception]) -> tuple[str, str]:
    """``(text, encoding name)`` of a CSV file's bytes, or ``error`` naming the byte, the likely encoding and the fix.

    Accepts UTF-8 (a byte-order mark is dropped) and UTF-16 with a byte-order mark, or without one when the text
    is plainly UTF-16 (every other byte NUL).
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif len(raw) >= 4 and raw[1] == 0 and raw[3] == 0 and raw[0] != 0:
        encoding = "utf-16-le"
    elif len(raw) >= 4 and raw[0] == 0 and raw[2] == 0 and raw[1] != 0:
        encoding = "utf-16-be"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        hint = ""
        if encoding == "utf-8-sig":
            try:
                raw.decode("cp1252")
                hint = (
                    " It looks like Windows-1252 / Latin-1 text, which Excel writes for plain 'CSV (Comma delimited)'."
                )
            except UnicodeDecodeError:
                pass
        raise error(
            f"{what} is not UTF-8 (byte {exc.start}: {bad!r}).{hint} Save it as UTF-8: in Excel, "
            "File > Save As > 'CSV UTF-8 (Comma delimited)'; elsewhere, choose the UTF-8 encoding."
        ) from exc


def read_csv_table(raw: bytes, *, required: Sequence[str], what: str, error: type[Exception]) -> CsvTable:
    """Decode ``raw`` and split it into a header and rows, finding the delimiter from the ``required`` columns.

    Parameters
    ----------
    raw : the file's bytes.
    required : lower-case column names the header must hold; the delimiter is the one of ``DELIMITERS`` whose
        split of the first row yields most of them (a comma first when several tie).
    what : how messages name the file, e.g. ``"'/data/labels.csv'"``.
    error : the exception class to raise (:class:`~ogaudit.errors.DataError`, ``LedgerError`` ...).

    Returns
    -------
    CsvTable : with ``missing`` the required columns that no delimiter yields (the caller refuses the file, using
        :meth:`CsvTable.delimiter_note` to name the delimiter found).

    Raises
    ------
    error : for undecodable bytes or an empty file.
    """
    text, encoding = decode_text(raw, what=what, error=error)
    if not text.strip():
        raise error(f"{what} is empty. It needs a header with the columns {list(required)} and one row per entry.")
    forced = None
    first, _, rest = text.partition("\n")
    if first.strip().lower().startswith("sep=") and len(first.strip()) == 5:  # Excel's delimiter hint line
        forced, text = first.strip()[4], rest
    # Raise the parser's per-cell cap to the file's size: a long cell is then one the caller can reject by row,
    # not an error that aborts the whole file. Only ever raised, so concurrent readers are unaffected.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    candidates = [forced] if forced else list(DELIMITERS)
    headers = {d: _header(text, d) for d in candidates}
    chosen = max(candidates, key=lambda d: sum(name in headers[d] for name in required))  # first wins ties
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=chosen)
    rows, numbers = [], []
    try:
        header = [name.strip().lower() for name in next(reader)]
        for number, cells in enumerate(reader, start=2):
            if any(cell.strip() for cell in cells):
                rows.append(cells)
                numbers.append(number)
    except csv.Error as exc:
        raise error(f"{what} cannot be read as CSV after row {len(rows) + 1}: {exc}. Save it again as CSV.") from exc
    missing = [name for name in required if name not in header]
    guess = forced or (chosen if not missing else _sniff(text))
    return CsvTable(header, rows, numbers, chosen, encoding, missing, guess)


def _header(text: str, delimiter: str) -> list[str]:
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    except csv.Error:
        return []
    return [name.strip().lower() for name in first]


def _sniff(text: str) -> str | None:
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return None


def csv_row(cells: list[str], delimiter: str = ",", *, ending: str = "\n") -> str:
    """One CSV row of ``cells`` ending with ``ending``: a cell holding the delimiter, a quote, ``\n`` or a lone
    ``\r`` is quoted. (:mod:`csv` quotes only the characters of its ``lineterminator``: with ``"\n"`` a tweet's
    lone ``\r`` would be written bare and split the row on reading.)"""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()[:-2] + ending
