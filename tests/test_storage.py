"""Output hygiene: CSV files safe to open in a spreadsheet, and files and folders that respect the umask."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogaudit.review import decisions as decisions_module
from ogaudit.storage import (
    FORMULA_STARTS,
    atomic_path,
    current_umask,
    escape_cell,
    read_csv,
    unescape_cell,
    write_csv,
    write_json,
)

ATTACKS = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\r=1", "'=quoted"]


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_formula_cells_are_escaped_in_cells_and_column_names_and_read_back_exactly(tmp_path):
    names = ["=cat", "+dog", "bird"]  # class names are user input: in label_evidence.csv they are columns
    frame = pd.DataFrame(
        {
            "sample_id": [*ATTACKS, "plain"],
            "given_label": pd.Series(["=cat", "+dog", "bird", "@x", "-y", "=cat", "bird", "+dog"], dtype="str"),
            "score": [-0.5, 1.0, 2.5, -3.0, 0.0, 1e-9, -1e9, 7.0],
            "rank": np.arange(-4, 4),
            "flagged": [True, False] * 4,
            "note": pd.Series(["-x", None, "ok", "=1", None, "a", "b", "c"], dtype=object),
            "kind": pd.Categorical(["=a", "b"] * 4),
            **{name: np.linspace(-1, 1, 8) for name in names},
        }
    )
    write_csv(frame, tmp_path / "out.csv")
    rows = _cells(tmp_path / "out.csv")
    header, body = rows[0], rows[1:]
    assert header[-3:] == ["'=cat", "'+dog", "bird"]
    text_columns = [header.index(c) for c in ("sample_id", "given_label", "note", "kind")]
    assert all(not row[i].startswith(FORMULA_STARTS) for row in rows for i in text_columns)
    assert [row[header.index("score")] for row in body][:4] == ["-0.5", "1.0", "2.5", "-3.0"]  # numbers as they are
    assert [row[header.index("rank")] for row in body][:2] == ["-4", "-3"]
    back = read_csv(tmp_path / "out.csv", dtype={"sample_id": str})
    assert back.columns.tolist() == frame.columns.tolist()
    assert back["sample_id"].tolist() == frame["sample_id"].tolist()
    assert back["given_label"].tolist() == frame["given_label"].tolist()
    assert back["kind"].tolist() == list(frame["kind"])
    assert [None if pd.isna(v) else v for v in back["note"]] == [None if v is None else v for v in frame["note"]]
    pd.testing.assert_frame_equal(
        back[["score", "rank", "flagged", *names]], frame[["score", "rank", "flagged", *names]]
    )


def test_a_plain_pandas_read_would_show_the_escapes(tmp_path):
    """So the reader must be read_csv: pandas.read_csv alone keeps the protective quote."""
    write_csv(pd.DataFrame({"label": ["=cat"]}), tmp_path / "a.csv")
    assert pd.read_csv(tmp_path / "a.csv")["label"].tolist() == ["'=cat"]
    assert read_csv(tmp_path / "a.csv")["label"].tolist() == ["=cat"]


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(text.filter(lambda t: t.strip() != ""), text), min_size=1, max_size=6))
def test_any_text_survives_write_csv_and_read_csv(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    frame = pd.DataFrame(rows, columns=["a", "b"], dtype=object)
    write_csv(frame, path)
    assert all(not cell.startswith(FORMULA_STARTS) for row in _cells(path) for cell in row)
    back = read_csv(path, dtype=str, keep_default_na=False)
    assert back["a"].tolist() == frame["a"].tolist() and back["b"].tolist() == frame["b"].tolist()


def test_there_is_one_escaping_and_the_decisions_export_uses_it():
    assert decisions_module.escape_cell is escape_cell and decisions_module.unescape_cell is unescape_cell
    for attack in ATTACKS:
        assert unescape_cell(escape_cell(attack)) == attack and not escape_cell(attack).startswith(FORMULA_STARTS)


# ---------------------------------------------------------------- permissions


@pytest.fixture(params=[0o022, 0o002, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_respect_the_umask(tmp_path, umask):
    assert current_umask() == umask
    write_json(tmp_path / "new" / "deeper" / "run.json", {"a": 1})
    write_csv(pd.DataFrame({"x": [1]}), tmp_path / "new" / "scores.csv")
    with atomic_path(tmp_path / "new" / "head_evidence.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, a=np.zeros(2))
    for name in ("deeper/run.json", "scores.csv", "head_evidence.npz"):
        assert _mode(tmp_path / "new" / name) == 0o666 & ~umask, name
    for folder in ("new", "new/deeper"):
        assert _mode(tmp_path / folder) == 0o777 & ~umask, folder


def test_a_file_written_before_is_given_the_umask_mode_when_replaced(tmp_path, umask):
    target = tmp_path / "run.json"
    target.write_text("{}")
    target.chmod(0o600)  # as releases before this one left every result
    write_json(target, {"b": 2})
    assert _mode(target) == 0o666 & ~umask


# ---------------------------------------------------------------- every CSV an audit writes

FORMULA_CLASSES = ['=HYPERLINK("http://evil.example","open")', "+cmd|' /C calc'!A0", "-1", "@SUM(1)", "\tx"]


def _formula_cells(path: Path) -> list[str]:
    """Cells of a CSV that a spreadsheet would run as a formula: text (not a number) starting with one."""

    def is_number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    return [cell for row in _cells(path) for cell in row if cell.startswith(FORMULA_STARTS) and not is_number(cell)]


def test_formula_class_names_are_escaped_in_every_csv_an_audit_writes_and_read_back_exactly(
    tmp_path, cache_dir, digits
):
    from ogaudit.pipeline.run import AuditSettings, audit
    from ogaudit.project import Project

    index = np.flatnonzero(digits.y < len(FORMULA_CLASSES))[:200]
    data = tmp_path / "formula.npz"
    np.savez(data, x=digits.x[index], y=digits.y[index], class_names=np.array(FORMULA_CLASSES))
    out = tmp_path / "run"
    audit(data, AuditSettings(epochs=1, map_method="pca"), out_dir=out, cache_dir=cache_dir)
    written = sorted(out.rglob("*.csv"))
    # each table twice: the run's own copy under runs/<id>/ and the latest run's beside run.json
    assert sorted(p.name for p in written) == sorted(["label_evidence.csv", "map.csv", "scores.csv"] * 2)
    assert {p.name: _formula_cells(p) for p in written} == {p.name: [] for p in written}
    run = Project(out).open_run()
    assert set(run.table["given_label"]) <= set(FORMULA_CLASSES) and run.class_names == FORMULA_CLASSES


def test_the_project_tables_survive_a_carriage_return_in_a_cell(tmp_path):
    from ogaudit import results as project

    frame = pd.DataFrame({"sample_id": ["a\rb", "c"], "given_label": ["\rz", "ok"], "score": [0.5, -1.0]})
    project._write_table(frame, tmp_path / "scores.csv")  # sample ids are file names: a name may hold a CR
    back = project._read_table(tmp_path / "scores.csv")
    assert back["sample_id"].tolist() == ["a\rb", "c"] and back["given_label"].tolist() == ["\rz", "ok"]


def test_write_csv_keeps_a_carriage_return_in_a_cell(tmp_path):
    frame = pd.DataFrame({"sample_id": ["a\rb", "c"], "given_label": ["\rz", "ok"], "score": [0.5, -1.0]})
    write_csv(frame, tmp_path / "scores.csv")
    back = read_csv(tmp_path / "scores.csv", dtype={"sample_id": str, "given_label": str})
    assert back["sample_id"].tolist() == ["a\rb", "c"] and back["given_label"].tolist() == ["\rz", "ok"]
