"""Decisions CSV out and back in, cleaned splits in each input kind, and the review commands."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ogaudit.cli.review import add_review_commands
from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError, LedgerError
from ogaudit.project import Project
from ogaudit.review.decisions import (
    DECISION_COLUMNS,
    EXPORT_COLUMNS,
    decisions_csv_bytes,
    import_decisions,
    write_decisions_csv,
)
from ogaudit.review.ledger import ACTIONS, LABELLED_ACTIONS, Decision, Ledger
from ogaudit.review.split import SPLIT_MANIFEST, export_split
from ogaudit.settings import AuditSettings
from ogaudit.storage import escape_cell, unescape_cell

CLASSES = ["-1", "=cat", "птица", "犬"]
IDS = [f"id-{i}" for i in range(12)]


def open_ledger(path: Path, ids=IDS, classes=CLASSES, given=None) -> Ledger:
    given = given or [classes[i % len(classes)] for i in range(len(ids))]
    return Ledger.open(path, dataset_fingerprint="fp", sample_ids=ids, given_labels=given, class_names=classes)


def decisions(ledger: Ledger) -> pd.DataFrame:
    return ledger.state()[DECISION_COLUMNS]


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.fixture
def reviewed(tmp_path) -> Ledger:
    """A ledger with every action, unicode and formula-like text, context, a disagreement and an undo."""
    ledger = open_ledger(tmp_path / "a.sqlite")
    context = {"id-0": {"score": 0.123456789012345, "rank": 1, "run": "run-1"}, "id-1": {"score": -2.5, "rank": 2}}
    ledger.decide(
        ["id-0", "id-1"], "relabel", label="=cat", annotator="Zoë", note='=HYPERLINK("x"), "q"', context=context
    )
    ledger.decide("id-2", "remove", annotator="@bob", note="line one\nline two\r\n\ttabbed")
    ledger.decide("id-3", "keep", annotator="Zoë", note="'=already quoted")
    ledger.decide("id-4", "unsure", annotator="花子", note="-")
    ledger.decide("id-5", "confirm", label="-1", annotator="Zoë")
    ledger.decide("id-6", "remove", annotator="Zoë")
    ledger.undo("Zoë")
    ledger.decide("id-0", "keep", annotator="@bob")
    return ledger


# ---------------------------------------------------------------- decisions CSV


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("=1+1", "'=1+1"), ("+x", "'+x"), ("-2", "'-2"), ("@SUM", "'@SUM"), ("\tx", "'\tx"), ("\rx", "'\rx"),
     ("'=x", "''=x"), ("'x", "'x"), ("'", "'"), ("", ""), ("a=b", "a=b"), ("Zoë", "Zoë")],
)  # fmt: skip
def test_formula_cells_are_escaped_and_unescaped(text, escaped):
    assert escape_cell(text) == escaped
    assert unescape_cell(escaped) == text


def test_exported_csv_escapes_formulas_and_is_plain_utf8(reviewed, tmp_path):
    data = decisions_csv_bytes(reviewed)
    assert not data.startswith(b"\xef\xbb\xbf")
    header, *rows = csv_rows(data)
    assert header == EXPORT_COLUMNS
    cells = [cell for row in rows for cell in row]
    dangerous = [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == ["-2.5"]  # numbers are written as numbers
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert by_id["id-1"]["final_label"] == "'=cat" and by_id["id-0"]["annotator"] == "'@bob"
    assert by_id["id-3"]["note"] == "''=already quoted" and by_id["id-4"]["annotator"] == "花子"
    assert "id-6" not in by_id  # undone

    path = write_decisions_csv(reviewed, tmp_path / "out" / "decisions.csv")
    assert path.read_bytes() == data


def test_decisions_round_trip_through_csv(reviewed, tmp_path):
    data = decisions_csv_bytes(reviewed)
    other = open_ledger(tmp_path / "b.sqlite")
    report = import_decisions(other, data, annotator="importer")
    assert report.rejected == [] and report.stored == 6
    pd.testing.assert_frame_equal(decisions(other), decisions(reviewed))
    assert other.undo("importer").batch_id == report.batch_id  # the import is one undo step
    assert other.state().empty


def test_history_export_imports_to_the_same_state(reviewed, tmp_path):
    data = decisions_csv_bytes(reviewed, history=True)
    header = csv_rows(data)[0]
    assert {"event", "undone", "label", "target"} <= set(header)
    other = open_ledger(tmp_path / "b.sqlite")
    report = import_decisions(other, data, annotator="importer")
    reasons = [r.reason for r in report.rejected]
    assert reasons == ["was undone in the ledger it came from", "is a 'undo' event, not a decision"]
    assert decisions(other)[["sample_id", "action", "final_label", "annotator"]].equals(
        decisions(reviewed)[["sample_id", "action", "final_label", "annotator"]]
    )


def test_export_of_a_selection_has_exactly_those_ids(reviewed):
    rows = csv_rows(decisions_csv_bytes(reviewed, ids=["id-2", "id-0", "id-11"]))[1:]
    assert sorted(row[0] for row in rows) == ["id-0", "id-2"]  # id-11 is undecided
    history = csv_rows(decisions_csv_bytes(reviewed, ids=["id-0"], history=True))
    assert [row[history[0].index("sample_id")] for row in history[1:]] == ["id-0", "id-0"]
    with pytest.raises(LedgerError, match="'id-99'"):
        decisions_csv_bytes(reviewed, ids=["id-0", "id-99"])


def test_import_reports_rejected_rows_and_stores_the_rest(tmp_path):
    ledger = open_ledger(tmp_path / "a.sqlite")
    rows = [
        "sample_id,given_label,action,final_label,annotator,decided_at,score,rank,note",
        "id-0,,relabel,птица,,,0.5,3,fine",  # row 2
        "id-99,,keep,,,,,,",  # row 3
        "id-1,,destroy,,,,,,",  # row 4
        "id-2,,relabel,horse,,,,,",  # row 5
        "id-3,=cat,keep,,,,,,",  # row 6: id-3 is given '犬' here
        "id-4,,keep,,,yesterday,,,",  # row 7
        "id-5,,keep,,,,high,,",  # row 8
        ",,,,,,,,",  # blank: skipped
        "id-6,,remove,,,,,,,extra",  # row 10
        "id-7,, KEEP ,,Ann,2024-05-01T12:00:00,,,",  # row 11
    ]
    report = import_decisions(ledger, "\r\n".join(rows).encode("utf-8-sig"), annotator="lead")
    assert [(r.row, r.reason.split()[0]) for r in report.rejected] == [
        (3, "unknown"), (4, "unknown"), (5, "'relabel'"), (6, "given_label"), (7, "decided_at"), (8, "score"),
        (10, "has"),
    ]  # fmt: skip
    assert "row 6: given_label '=cat' but this dataset labels 'id-3' as '犬'" in report.describe()
    state = ledger.state().set_index("sample_id")
    assert state.index.tolist() == ["id-0", "id-7"] and report.stored == 2
    assert state.loc["id-0", ["final_label", "annotator", "score", "rank"]].tolist() == ["птица", "lead", 0.5, 3]
    assert state.loc["id-7", ["action", "annotator", "decided_at"]].tolist() == [
        "keep", "Ann", "2024-05-01T12:00:00.000000+00:00",
    ]  # fmt: skip


def test_import_without_the_needed_columns_is_refused(tmp_path):
    ledger = open_ledger(tmp_path / "a.sqlite")
    with pytest.raises(LedgerError, match=r"lacks column\(s\) \['action'\]"):
        import_decisions(ledger, b"sample_id,label\nid-0,cat\n", annotator="lead")


# Any unicode text, often starting with what formula escaping must handle.
tricky = st.characters(codec="utf-8")
cell_text = st.builds(str.__add__, st.text(st.sampled_from("'=+-@\t\r"), max_size=3), st.text(tricky, max_size=8))
names = cell_text.filter(bool)


@settings(max_examples=300)
@given(cell_text)
def test_escaping_is_safe_and_reversible(text):
    escaped = escape_cell(text)
    assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert unescape_cell(escaped) == text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_unicode_survives_the_csv_round_trip(data):
    classes = data.draw(st.lists(names, min_size=2, max_size=4, unique=True), label="classes")
    ids = data.draw(st.lists(names, min_size=1, max_size=5, unique=True), label="ids")
    given_labels = [data.draw(st.sampled_from(classes)) for _ in ids]
    decision = st.builds(
        Decision,
        sample_id=st.sampled_from(ids),
        action=st.sampled_from(ACTIONS),
        label=st.sampled_from(classes),
        annotator=names.filter(str.strip),
        note=cell_text,
        score=st.none() | st.floats(allow_nan=False),
        rank=st.none() | st.integers(0, 2**62),
        run=st.none() | names,
    )
    drawn = data.draw(st.lists(decision, min_size=1, max_size=6), label="decisions")
    drawn = [d if d.action in LABELLED_ACTIONS else Decision(**{**d.__dict__, "label": None}) for d in drawn]
    with tempfile.TemporaryDirectory() as tmp:
        source = open_ledger(Path(tmp, "a.sqlite"), ids=ids, classes=classes, given=given_labels)
        source.record(drawn, annotator="writer")
        target = open_ledger(Path(tmp, "b.sqlite"), ids=ids, classes=classes, given=given_labels)
        report = import_decisions(target, decisions_csv_bytes(source), annotator="reader")
        assert report.rejected == []
        pd.testing.assert_frame_equal(decisions(target), decisions(source))


# ---------------------------------------------------------------- cleaned split


def image_dataset(root: Path, layout: dict[str, list[str]]) -> None:
    """Tiny distinct PNGs at ``root/<class>/<file>``."""
    for n, (name, files) in enumerate(layout.items()):
        for k, file in enumerate(files):
            (root / name).mkdir(parents=True, exist_ok=True)
            pixels = np.full((6, 6), 40 * n + 7 * k, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / file)


def test_npz_split_drops_removals_and_applies_relabels(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    npz = tmp_path / "feats.npz"
    np.savez(npz, x=x, y=np.array([0, 1] * 4), ids=np.array(list("abcdefgh")), class_names=np.array(["no", "yes"]))
    dataset = load_dataset(npz)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    ledger.decide(["b", "c"], "remove", annotator="ann")
    ledger.decide("d", "relabel", label="no", annotator="ann")
    ledger.decide("e", "keep", annotator="ann")
    ledger.decide("f", "unsure", annotator="ann")

    manifest = export_split(dataset, ledger, tmp_path / "clean", flagged_ids=["b", "e", "f", "g"])
    cleaned = load_dataset(tmp_path / "clean" / "feats.npz")
    assert cleaned.sample_ids.tolist() == list("adefgh")
    assert cleaned.y.tolist() == [0, 0, 0, 1, 0, 1] and cleaned.class_names == ["no", "yes"]
    np.testing.assert_array_equal(cleaned.x, x[[0, 3, 4, 5, 6, 7]])
    assert manifest["counts"] == {
        "input": 8, "kept": 6, "removed": 2, "relabelled": 1, "dropped_undecided_flagged": 0,
        "decisions_not_in_data": 0,
    }  # fmt: skip
    assert json.loads((tmp_path / "clean" / SPLIT_MANIFEST).read_text())["source_fingerprint"] == dataset.fingerprint()

    dropped = export_split(
        dataset, ledger, tmp_path / "strict", flagged_ids=["b", "e", "f", "g"], drop_undecided_flagged=True
    )
    assert load_dataset(tmp_path / "strict" / "feats.npz").sample_ids.tolist() == list("adeh")  # f unsure, g none
    assert dropped["counts"]["dropped_undecided_flagged"] == 2
    with pytest.raises(DataError, match="not an empty folder"):
        export_split(dataset, ledger, tmp_path / "strict")


def test_builtin_split_is_written_as_npz(tmp_path, digits):
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", digits)
    ledger.decide("digits-0000", "remove", annotator="ann")
    manifest = export_split(digits, ledger, tmp_path / "clean")
    cleaned = load_dataset(tmp_path / "clean" / "digits.npz")
    assert manifest["data"] == "digits.npz" and len(cleaned) == len(digits) - 1
    assert cleaned.class_names == digits.class_names and "digits-0000" not in set(cleaned.sample_ids)


def test_image_folder_split_copies_files_into_class_folders(tmp_path):
    image_dataset(tmp_path / "data", {"cat": ["a.png", "b.png", "c.png"], "dog": ["a.png", "d.png", "e.png"]})
    dataset = load_dataset(tmp_path / "data")
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    ledger.decide("dog/a.png", "relabel", label="cat", annotator="ann")  # clashes with cat/a.png
    ledger.decide("cat/b.png", "remove", annotator="ann")
    ledger.decide("dog/d.png", "confirm", label="cat", annotator="ann")

    export_split(dataset, ledger, tmp_path / "clean")
    cleaned = load_dataset(tmp_path / "clean")
    assert cleaned.class_names == ["cat", "dog"]
    assert sorted(cleaned.sample_ids) == ["cat/a.png", "cat/a~1.png", "cat/c.png", "cat/d.png", "dog/e.png"]
    copied, original = tmp_path / "clean" / "cat" / "a~1.png", tmp_path / "data" / "dog" / "a.png"
    assert copied.read_bytes() == original.read_bytes() and not os.path.samefile(copied, original)
    assert json.loads((tmp_path / "clean" / SPLIT_MANIFEST).read_text())["counts"]["relabelled"] == 2
    with pytest.raises(DataError, match="would be read as a class"):
        export_split(dataset, ledger, tmp_path / "data" / "clean")


def test_csv_manifest_split_is_self_contained_and_loads_back(tmp_path):
    image_dataset(tmp_path / "data", {"cat": ["a.png", "b.png"], "dog": ["c.png", "d.png"]})
    manifest = tmp_path / "data" / "labels.csv"
    manifest.write_text("path,label\ncat/a.png,cat\ncat/b.png,cat\ndog/c.png,dog\ndog/d.png,dog\n")
    dataset = load_dataset(manifest)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    ledger.decide("cat/b.png", "relabel", label="dog", annotator="ann")
    ledger.decide("dog/c.png", "remove", annotator="ann")

    out = tmp_path / "exports" / "clean"
    export_split(dataset, ledger, out)
    rows = list(csv.DictReader(io.StringIO((out / "labels.csv").read_text(encoding="utf-8"))))
    assert [(row["path"], row["label"]) for row in rows] == [
        ("cat/a.png", "cat"),
        ("cat/b.png", "dog"),
        ("dog/d.png", "dog"),
    ]
    assert (out / "cat" / "b.png").read_bytes() == (tmp_path / "data" / "cat" / "b.png").read_bytes()
    cleaned = load_dataset(out / "labels.csv")
    assert len(cleaned) == 3 and not cleaned.skipped
    assert cleaned.class_names[cleaned.y[list(cleaned.sample_ids).index("cat/b.png")]] == "dog"


# ---------------------------------------------------------------- command line


@pytest.fixture
def project(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 2))
    npz = tmp_path / "data.npz"
    np.savez(npz, x=x, y=np.array([0, 1, 0, 1, 0, 1]), ids=np.array([f"p{i}" for i in range(6)]))
    dataset = dataset_from_arrays(x, np.array([0, 1, 0, 1, 0, 1]), ids=np.array([f"p{i}" for i in range(6)]))
    folder = tmp_path / "project"
    record = {
        "settings": AuditSettings().to_dict(),
        "dataset": {"spec": str(npz), "fingerprint": dataset.fingerprint(), "class_names": ["0", "1"], "samples": 6},
        "model": {"kind": "test"},
        "fingerprint": "run-1",
    }
    ids = [f"p{i}" for i in range(6)]
    labels = [str(i % 2) for i in range(6)]
    scores = pd.DataFrame(
        {
            "sample_id": ids,
            "given_label": labels,
            "predicted_label": labels,
            "suggested_label": labels,
            "score": [1 - i / 10 for i in range(6)],
            "rank": [i + 1 for i in range(6)],
            "flagged": [i < 3 for i in range(6)],
        }
    )
    Project(folder).write_run(scores, pd.DataFrame({"sample_id": ids, "x": 0.0, "y": 0.0}), record)
    return folder


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ogaudit")
    add_review_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


def test_review_commands_import_list_and_export(project, tmp_path, capsys):
    incoming = tmp_path / "incoming.csv"
    incoming.write_text("sample_id,action,final_label,note\np0,relabel,1,looks like a one\np1,remove,,\nzz,keep,,\n")
    # two rows stored, one refused: done in part, exit code 1 (as `ogaudit --help` and the README say)
    assert cli("decisions", "import", incoming, "--project", project, "--annotator", "ann") == 1
    assert "row 4: unknown sample id 'zz'" in capsys.readouterr().out
    assert cli("decisions", "import", incoming, "--project", project, "--annotator", "ann") == 1  # zz still refused
    clean = tmp_path / "clean.csv"
    clean.write_text("sample_id,action,final_label,note\np0,relabel,1,looks like a one\n")
    assert cli("decisions", "import", clean, "--project", project, "--annotator", "ann") == 0  # held already: done
    capsys.readouterr()
    assert (project / "ledger.sqlite").exists()

    assert cli("decisions", "list", "--project", project) == 0
    listing = capsys.readouterr().out
    assert "looks like a one" in listing and "p1" in listing and "zz" not in listing

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("p1\n\np2\n")
    cli("export", "decisions", "--project", project, "--out", tmp_path / "d.csv", "--ids-file", ids_file)
    assert [row["sample_id"] for row in csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text()))] == ["p1"]
    cli("export", "decisions", "--project", project, "--out", tmp_path / "h.csv", "--history")
    assert len(pd.read_csv(tmp_path / "h.csv")) == 2

    out = tmp_path / "split"
    assert cli("export", "split", "--project", project, "--out", out, "--drop-undecided-flagged") == 0
    assert "kept 4 of 6 samples (1 removed, 1 relabelled, 1 undecided flagged dropped)" in capsys.readouterr().out
    cleaned = load_dataset(out / "data.npz")
    assert cleaned.sample_ids.tolist() == ["p0", "p3", "p4", "p5"] and cleaned.y.tolist() == [1, 1, 0, 1]


def test_review_commands_need_a_dataset(tmp_path):
    with pytest.raises(DataError, match="is not a project folder"):
        cli("decisions", "list", "--project", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="pass --data"):
        cli("decisions", "list", "--project", tmp_path / "empty")


def test_exported_images_share_no_storage_with_the_users_files(tmp_path):
    """A cleaned split and a FiftyOne / Label Studio export carry the user's image files; a user who later edits
    an exported image in place (Pillow's ``save`` to the same path truncates and rewrites the file) or changes
    its mode must not change their own data. Hard links did: the write and the chmod reached the originals."""
    from ogaudit.review.exports import _media_files

    image_dataset(tmp_path / "data", {"cat": ["a.png", "b.png"], "dog": ["c.png"]})
    manifest = tmp_path / "data" / "labels.csv"
    manifest.write_text("path,label\ncat/a.png,cat\ncat/b.png,cat\ndog/c.png,dog\n")
    originals = {p: (p.read_bytes(), p.stat().st_mode) for p in (tmp_path / "data").rglob("*.png")}
    folder = load_dataset(tmp_path / "data")
    export_split(folder, Ledger.for_dataset(tmp_path / "l1.sqlite", folder), tmp_path / "clean-folder")
    listed = load_dataset(manifest)
    export_split(listed, Ledger.for_dataset(tmp_path / "l2.sqlite", listed), tmp_path / "clean-manifest")
    _media_files(folder, tmp_path / "fiftyone" / "data", name="data")
    exported = [p for out in ("clean-folder", "clean-manifest", "fiftyone") for p in (tmp_path / out).rglob("*.png")]
    assert len(exported) == 9
    assert all(path.read_bytes() in {b for b, _ in originals.values()} for path in exported)  # the user's bytes
    for path in exported:
        Image.fromarray(np.full((6, 6), 255, dtype=np.uint8)).save(path)  # an edit in place
        path.chmod(0o600)
    assert {p: (p.read_bytes(), p.stat().st_mode) for p in originals} == originals


def test_a_split_into_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    """``ogaudit export split --out LINK`` where LINK is a symbolic link to an empty folder: refused like every
    other export's symlinked output (it was an internal error, NotADirectoryError, exit 70)."""
    npz = tmp_path / "feats.npz"
    np.savez(npz, x=np.zeros((4, 2), np.float32), y=np.array([0, 1, 0, 1]))
    dataset = load_dataset(npz)
    ledger = Ledger.for_dataset(tmp_path / "ledger.sqlite", dataset)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="symbolic link"):
        export_split(dataset, ledger, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and not any((tmp_path / "elsewhere").iterdir())
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
