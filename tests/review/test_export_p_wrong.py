"""Every export says what the review card says about P(wrong): its number, its 90% interval, and whether it reads
"not yet calibrated", with the review's decisions applied as the card applies them."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

import ogaudit
from ogaudit.project import Project
from ogaudit.review.calibration import EXPORT_WRONG_COLUMNS, reviewed_estimate
from ogaudit.review.decisions import EXPORT_COLUMNS, decisions_csv_bytes


@pytest.fixture
def card(finished_project, copy_of):
    """A copy of the shared project with decisions, and the cards of some decided and undecided samples:
    ``(project, ids, {sample_id: SampleEvidence})`` made as the review page makes them."""
    folder, result = finished_project
    project = Project(copy_of(folder))
    ids = result.scores["sample_id"].tolist()
    project.decide("remove", ids[:2], annotator="ana")
    project.decide("relabel", ids[2:4], annotator="ana", label="3")
    project.decide("keep", ids[4:6], annotator="bo")
    run = project.open_run()
    wrong = reviewed_estimate(run.table, project.ledger().state())  # what ogaudit/ui/review.py hands the cards
    shown = ids[:8] + run.table.sort_values("rank")["sample_id"].astype(str).tolist()[:8]
    items = project.open_evidence(run).explain([run.position[i] for i in shown], wrong=wrong)
    cards = dict(zip(shown, items, strict=True))
    assert any(not c.calibrated for c in cards.values()), "the fixture should show a not-yet-calibrated card"
    for c in cards.values():
        assert ("not yet calibrated" in c.wrong_text()) == (not c.calibrated)
    return project, ids, cards


def same_as_cards(rows: pd.DataFrame, cards: dict) -> None:
    """``rows`` (indexed by sample_id) carries each card's p_wrong, interval and calibrated mark."""
    for sample_id, c in cards.items():
        row = rows.loc[sample_id]
        assert row["p_wrong"] == pytest.approx(c.p_wrong, abs=1e-6), sample_id
        assert row["p_wrong_low"] == pytest.approx(c.p_wrong_low, abs=1e-6), sample_id
        assert row["p_wrong_high"] == pytest.approx(c.p_wrong_high, abs=1e-6), sample_id
        assert bool(row["p_wrong_calibrated"]) is c.calibrated, sample_id


def test_parquet_and_cleanlab_carry_the_cards_p_wrong(card, tmp_path):
    project, ids, cards = card
    table = pd.read_parquet(ogaudit.export(project, tmp_path / "r.parquet", format="parquet"))
    assert table["p_wrong_calibrated"].dtype == bool
    assert (table["p_wrong_low"] <= table["p_wrong"]).all() and (table["p_wrong"] <= table["p_wrong_high"]).all()
    same_as_cards(table.set_index("sample_id"), cards)
    issues = pd.read_csv(ogaudit.export(project, tmp_path / "issues.csv", format="cleanlab"))
    same_as_cards(issues.astype({"sample_id": str}).set_index("sample_id"), cards)


def test_hf_fiftyone_and_label_studio_carry_the_cards_p_wrong(card, tmp_path):
    datasets = pytest.importorskip("datasets")
    project, ids, cards = card
    loaded = datasets.load_from_disk(str(ogaudit.export(project, tmp_path / "hf", format="hf")))
    assert loaded.features["p_wrong_calibrated"].dtype == "bool"
    same_as_cards(loaded.remove_columns("image").to_pandas().set_index("sample_id"), cards)

    folder = ogaudit.export(project, tmp_path / "fo", format="fiftyone")
    labels = json.loads((folder / "labels.json").read_text())["labels"].values()
    same_as_cards(pd.DataFrame([t["attributes"] for t in labels]).set_index("sample_id"), cards)

    folder = ogaudit.export(project, tmp_path / "ls", format="label-studio")
    tasks = json.loads((folder / "tasks.json").read_text())
    same_as_cards(pd.DataFrame([t["data"] for t in tasks]).set_index("sample_id"), cards)
    interface_module = pytest.importorskip("label_studio_sdk.label_interface")
    interface = interface_module.LabelInterface((folder / "label_config.xml").read_text())
    for task in tasks[:50]:
        assert interface.validate_task({k: v for k, v in task.items() if k != "predictions"})


def test_the_decisions_csv_and_table_carry_the_cards_p_wrong(card, tmp_path):
    project, ids, cards = card
    decided = {i: c for i, c in cards.items() if i in ids[:6]}
    frame = project.decisions()
    assert list(frame.columns) == EXPORT_COLUMNS and set(EXPORT_WRONG_COLUMNS) <= set(frame.columns)
    same_as_cards(frame.set_index("sample_id"), decided)
    path = project.export_decisions(tmp_path / "decisions.csv")
    written = pd.read_csv(path, dtype={"sample_id": str})
    same_as_cards(written.set_index("sample_id"), decided)
    again = project.export_decisions(path)  # a decisions CSV replaces itself
    assert again == path
    assert project.import_decisions(path.read_bytes(), annotator="cy").rejected == []  # it imports back


def test_the_decisions_csv_without_a_run_leaves_p_wrong_empty(card):
    project, ids, cards = card
    rows = list(csv.reader(io.StringIO(decisions_csv_bytes(project.ledger()).decode())))
    header = rows[0]
    assert header == EXPORT_COLUMNS
    at = [header.index(c) for c in EXPORT_WRONG_COLUMNS]
    assert all(row[i] == "" for row in rows[1:] for i in at)


def test_the_cards_numbers_move_with_decisions(card, tmp_path):
    project, ids, cards = card
    run = project.open_run()
    before = reviewed_estimate(run.table, None)
    table = pd.read_parquet(ogaudit.export(project, tmp_path / "r.parquet", format="parquet"))
    after = reviewed_estimate(run.table, project.ledger().state())
    np.testing.assert_allclose(table["p_wrong_high"], after.high)
    np.testing.assert_array_equal(table["p_wrong_calibrated"], after.calibrated)
    assert not np.allclose(before.high, after.high) or not np.allclose(before.p, after.p)
